"""PostgreSQL fixtures: the real server on loopback and a fresh database per test.

``pg_server`` (session) checks that PostgreSQL answers on 127.0.0.1:5432 as user ``postgres``
and starts the local cluster with ``pg_ctlcluster`` if it does not (the product's helpers in
:mod:`dipro_fhir.sandbox.servers.postgres`). ``fresh_pg_url`` (function) creates a uniquely
named empty database, yields its SQLAlchemy URL and drops it after the test, so every test
starts from nothing (``alembic upgrade head`` is the test's job, or use ``migrated_pg_url``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from dipro_fhir.sandbox.servers.postgres import (
    PG_HOST,
    PG_PORT,
    PG_USER,
    PgServer,
    admin,
    answers,
    start_local_cluster,
)

__all__ = ["PgServer", "admin", "fresh_pg_url", "migrated_pg_url", "pg_server"]


@pytest.fixture(scope="session")
def pg_server() -> PgServer:
    """The PostgreSQL server on loopback; started if it is down, skipped if it cannot be."""
    server = PgServer(PG_HOST, PG_PORT, PG_USER)
    if answers(server.url()) or start_local_cluster(server.url()):
        return server
    pytest.fail(
        "PostgreSQL does not answer on 127.0.0.1:5432 and could not be started: "
        "run scripts/install.sh"
    )


@pytest.fixture
def fresh_pg_url(pg_server: PgServer) -> Iterator[str]:
    """A new empty database for this test; dropped (with any open sessions) afterwards."""
    name = f"dipro_test_{uuid.uuid4().hex[:16]}"
    admin(pg_server, f'CREATE DATABASE "{name}"')
    try:
        yield pg_server.url(name)
    finally:
        admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def migrated_pg_url(fresh_pg_url: str) -> str:
    """A fresh database brought to ``alembic upgrade head``."""
    from dipro_fhir.store import upgrade_database

    upgrade_database(fresh_pg_url)
    return fresh_pg_url
