"""The Alembic migrations and the ORM agree, and the schema goes up, down and up again."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pytest_alembic import Config as PytestAlembicConfig
from pytest_alembic.plugin.fixtures import alembic_runner
from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)

from dipro_fhir.store import downgrade_database, upgrade_database
from dipro_fhir.store.migrate import DEFAULT_SCRIPT_LOCATION, table_names
from dipro_fhir.store.models import Base

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
TABLES = {
    "runs",
    "scores",
    "patient_failures",
    "data_problems",
    "data_quality",
    "feature_cache",
    "retractions",
    "watermarks",
    "input_profiles",
    "outcomes",
    "monitor_nights",
    "monitor_figures",
    "monitor_drift",
    "monitor_alerts",
}

# pytest-alembic's built-in checks, bound here with its runner fixture (the plugin's own
# entry point is not loaded in every environment).
__all__ = [
    "alembic_runner",
    "test_model_definitions_match_ddl",
    "test_single_head_revision",
    "test_up_down_consistency",
    "test_upgrade",
]


@pytest.fixture
def alembic_config() -> PytestAlembicConfig:
    """pytest-alembic: the repository's migrations."""
    return PytestAlembicConfig(config_options={"script_location": str(DEFAULT_SCRIPT_LOCATION)})


@pytest.fixture
def alembic_engine(fresh_pg_url: str) -> Iterator[sa.Engine]:
    """pytest-alembic: a fresh PostgreSQL database per check."""
    engine = sa.create_engine(fresh_pg_url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


def test_upgrade_downgrade_upgrade_on_fresh_database(fresh_pg_url: str) -> None:
    engine = sa.create_engine(fresh_pg_url, poolclass=sa.pool.NullPool)
    upgrade_database(engine)
    assert table_names(engine) >= TABLES
    downgrade_database(engine, "base")
    assert table_names(engine) & TABLES == set()
    upgrade_database(engine)
    assert table_names(engine) >= TABLES
    engine.dispose()


def test_migrated_schema_matches_orm_by_compare_metadata(migrated_pg_url: str) -> None:
    engine = sa.create_engine(migrated_pg_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    engine.dispose()
    assert diff == []


def test_alembic_command_line_upgrades_from_repo_root(fresh_pg_url: str) -> None:
    alembic = Path(sys.executable).with_name("alembic")
    done = subprocess.run(
        [str(alembic), "-x", f"url={fresh_pg_url}", "upgrade", "head"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    engine = sa.create_engine(fresh_pg_url, poolclass=sa.pool.NullPool)
    assert table_names(engine) >= TABLES
    engine.dispose()


def test_sqlite_database_upgrades_for_the_embedded_demo(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    upgrade_database(url)
    engine = sa.create_engine(url)
    assert table_names(engine) >= TABLES
    downgrade_database(engine, "base")
    assert table_names(engine) & TABLES == set()
    engine.dispose()
