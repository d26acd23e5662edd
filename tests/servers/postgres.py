"""PostgreSQL fixtures: the real server on loopback and a fresh database per test.

``pg_server`` (session) checks that PostgreSQL answers on 127.0.0.1:5432 as user ``postgres``
and starts the local cluster with ``pg_ctlcluster`` if it does not. ``fresh_pg_url``
(function) creates a uniquely named empty database, yields its SQLAlchemy URL and drops it
after the test, so every test starts from nothing (``alembic upgrade head`` is the test's
job, or use ``migrated_pg_url``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"


@dataclass(frozen=True, slots=True)
class PgServer:
    """A running PostgreSQL server reachable with trust auth."""

    host: str
    port: int
    user: str

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of ``database`` on this server (psycopg2 driver)."""
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{database}"


def answers(url: str) -> bool:
    """Whether the PostgreSQL server of ``url`` takes a connection and a ``SELECT 1``
    (the sandbox's probe too)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


def start_local_cluster(url: str, seconds: float = 15.0) -> str | None:
    """Start the machine's newest Debian cluster (``pg_ctlcluster``, through ``sudo`` when
    not root) and wait until ``url`` answers; its ``version/main``, or None if there is no
    cluster or it did not answer in ``seconds`` (the sandbox's start too)."""
    etc = Path("/etc/postgresql")
    versions = (
        sorted(
            (p.name for p in etc.iterdir() if p.name.replace(".", "").isdigit()),
            key=lambda v: [int(x) for x in v.split(".") if x],
        )
        if etc.is_dir()
        else []
    )
    if not versions:
        return None
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"]
    if os.geteuid() != 0 and shutil.which("sudo"):
        command.insert(0, "sudo")
    subprocess.run(command, check=False, capture_output=True, timeout=60)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if answers(url):
            return f"{versions[-1]}/main"
        time.sleep(0.2)
    return None


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


def _admin(server: PgServer, statement: str) -> None:
    engine = sa.create_engine(
        server.url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


@pytest.fixture
def fresh_pg_url(pg_server: PgServer) -> Iterator[str]:
    """A new empty database for this test; dropped (with any open sessions) afterwards."""
    name = f"dipro_test_{uuid.uuid4().hex[:16]}"
    _admin(pg_server, f'CREATE DATABASE "{name}"')
    try:
        yield pg_server.url(name)
    finally:
        _admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def migrated_pg_url(fresh_pg_url: str) -> str:
    """A fresh database brought to ``alembic upgrade head``."""
    from dipro_fhir.store import upgrade_database

    upgrade_database(fresh_pg_url)
    return fresh_pg_url
