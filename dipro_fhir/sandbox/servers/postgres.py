"""The machine's PostgreSQL on loopback, for the sandbox and the tests: is it there, start it,
run an administrative statement.

The server is the Debian cluster that ``scripts/install.sh`` installs, reached as user
``postgres`` on 127.0.0.1:5432 with trust authentication. The tests' fixtures
(``tests/servers/postgres.py``) build on these helpers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

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


def admin(server: PgServer, statement: str) -> None:
    """Run one statement (``CREATE DATABASE``...) outside a transaction as the superuser."""
    engine = sa.create_engine(
        server.url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()
