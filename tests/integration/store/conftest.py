"""Registers pytest-alembic's ``alembic`` marker (``--strict-markers`` is on)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker that pytest-alembic's built-in tests carry."""
    config.addinivalue_line("markers", "alembic: pytest-alembic's built-in migration checks")
