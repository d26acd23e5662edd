"""The night's write-back lock: a PostgreSQL advisory lock that notices when it is lost.

Two runs of one night (same as-of and model) write back one after the other
(:meth:`~dipro_fhir.store.runs.RunStateStore.night_lock`). An advisory lock lives as long as
its database session: when the session dies (a database restart, a dropped connection), the
lock is gone while FHIR write-back goes on. :meth:`NightLock.check`, called before each
FHIR transaction, probes the session and, when it is dead, takes the lock again on a new
session (waiting, with the store's retries, for the database and for any run that took it
meanwhile), so at most one transaction is written outside the lock. When the database stays
unreachable the check raises :class:`~dipro_fhir.core.errors.SourceUnavailable` and the
write-back stops (the chunk is retried).
"""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from dipro_fhir.store.retry import StoreRetry, call_with_retry

_LOG = logging.getLogger(__name__)


class NightLock:
    """A held advisory lock on one key (PostgreSQL); see the module docstring."""

    def __init__(self, engine: Engine, key: str, retry: StoreRetry) -> None:
        self.engine, self.retry = engine, retry
        self.number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        self._conn: Connection | None = None
        self.retaken = 0

    def acquire(self) -> None:
        """Take the lock on a new session (waits for a run that holds it)."""

        def take() -> Connection:
            conn = self.engine.connect()
            try:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self.number})
                conn.commit()
            except BaseException:
                conn.close()
                raise
            return conn

        self._conn = call_with_retry(self.engine, self.retry, "night lock", take)

    def check(self) -> None:
        """Make sure the lock is still held: re-take it when its session died.

        Raises:
            SourceUnavailable: The database stayed unreachable (stop writing).
        """
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1")).scalar()
                return
            except DBAPIError:
                self._conn.invalidate()
                self._conn.close()
                self._conn = None
        _LOG.warning("the night lock's database session died; taking the lock again")
        self.retaken += 1
        self.acquire()

    def release(self) -> None:
        """Give the lock back (a dead session has given it back already)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.number})
            conn.commit()
        except DBAPIError:
            conn.invalidate()
        finally:
            conn.close()


class NoLock(NightLock):
    """SQLite (the embedded demo, one process): nothing to hold."""

    def __init__(self) -> None:
        self.retaken = 0

    def acquire(self) -> None:
        """Nothing to take."""

    def check(self) -> None:
        """Nothing to check."""

    def release(self) -> None:
        """Nothing to give back."""
