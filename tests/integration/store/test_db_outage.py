"""The results database gets what FHIR and DICOMweb have: retries (issue 23, item 14).

PostgreSQL behind a TCP proxy that stages outages (every connection cut, new ones refused
for a while), as a restart or a failover looks to the product. Before, an outage of 20 s
during write-back failed a chunk 3 ms later at its heartbeat, ``finalize`` raised out of the
data-quality write, the run stayed ``running`` with no failure rows, and the night's lock
died with its session while FHIR write-back went on.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from dipro_fhir.core.errors import SourceUnavailable
from dipro_fhir.core.settings import Settings, StoreSettings, embedded_settings
from dipro_fhir.core.timeline import RunId
from dipro_fhir.run import connections
from dipro_fhir.store import ResultStore
from dipro_fhir.store.retry import StoreRetry
from tests.checkpoints import write_tiny_checkpoint
from tests.servers.tcp_proxy import TcpProxy
from tests.unit.writeback.scores import AS_OF, cohort_scores

pytestmark = pytest.mark.integration
FAST = StoreRetry(window_s=20.0, first_delay_s=0.2, max_delay_s=1.0)


def _through(proxy: TcpProxy, url: str) -> str:
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:{proxy.port}"))


def _proxy_for(url: str) -> TcpProxy:
    parts = urlsplit(url)
    return TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)


def _store(url: str, retry: StoreRetry = FAST) -> ResultStore:
    settings = Settings(store=StoreSettings(url=SecretStr(url)))
    return ResultStore(connections.engine(settings), retry=retry)


def test_store_operations_ride_out_an_outage_and_give_up_past_the_window(
    migrated_pg_url: str,
) -> None:
    proxy = _proxy_for(migrated_pg_url)
    try:
        store = _store(_through(proxy, migrated_pg_url))
        run = RunId("run-outage")
        store.start_run(run, as_of=AS_OF, model_name="dipro", model_version="1")
        proxy.outage(2.0)  # the pooled connection is cut; new ones refused for 2 s
        started = time.monotonic()
        store.heartbeat(run)
        counts = store.record_chunk(run, cohort_scores(3))
        assert time.monotonic() - started >= 1.5  # it waited for the database
        assert proxy.refused >= 1
        assert counts.scores == len(cohort_scores(3))
        direct = _store(migrated_pg_url)
        assert {s.patient_id for s in direct.scores()} == {s.patient_id for s in cohort_scores(3)}

        impatient = _store(_through(proxy, migrated_pg_url), StoreRetry(window_s=1.0))
        proxy.outage(5.0)
        with pytest.raises(SourceUnavailable, match="stayed unreachable"):
            impatient.finish_run(run, status="success", counts={}, timings_s={})
    finally:
        proxy.close()


def test_the_night_lock_is_taken_again_when_its_session_dies(migrated_pg_url: str) -> None:
    proxy = _proxy_for(migrated_pg_url)
    observer = sa.create_engine(migrated_pg_url)
    try:
        store = _store(_through(proxy, migrated_pg_url))
        with store.night_lock("2026-01-01T02:00:00+00:00|1") as lock:

            def held_elsewhere() -> bool:
                with observer.connect() as conn:
                    got = conn.execute(
                        sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": lock.number}
                    ).scalar()
                    if got:
                        conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": lock.number})
                    return not got

            assert held_elsewhere()
            proxy.outage(1.0)  # the lock's session dies: PostgreSQL releases the lock
            deadline = time.monotonic() + 10
            while held_elsewhere() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not held_elsewhere(), "the lock should have died with its session"
            lock.check()  # before the next write: taken again on a new session
            assert lock.retaken == 1
            assert held_elsewhere()
            lock.check()  # alive: nothing to do
            assert lock.retaken == 1
        assert not held_elsewhere()  # released at the end
    finally:
        observer.dispose()
        proxy.close()


@pytest.mark.slow
def test_a_run_through_a_database_outage_records_every_patient(
    migrated_pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from dipro_fhir.run.pipeline import RunRequest, run_locally
    from dipro_fhir.synth import generate_cohort
    from dipro_fhir.synth.load import write_files

    as_of = datetime(2026, 4, 1, 2, tzinfo=UTC)
    cohort = tmp_path / "cohort"
    people = generate_cohort(
        8, seed=21, start=as_of - timedelta(days=3), admission_span_days=2, reference_time=as_of
    )
    write_files(people, cohort, image_size=(96, 96))
    proxy = _proxy_for(migrated_pg_url)
    base = embedded_settings(tmp_path)
    settings = base.model_copy(
        update={
            "fhir": base.fhir.model_copy(update={"ndjson_dir": cohort}),
            "store": StoreSettings(url=SecretStr(_through(proxy, migrated_pg_url)), retry_s=30.0),
            "run": base.run.model_copy(update={"chunk_size": 2, "max_failed_share": 1.0}),
        }
    )
    write_tiny_checkpoint(settings.model.checkpoint, name="outage", version="1")
    observer = sa.create_engine(migrated_pg_url)

    def cut_once_scores_arrive() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with observer.connect() as conn:
                if conn.execute(sa.text("SELECT count(*) FROM scores")).scalar():
                    proxy.outage(3.0)
                    return
            time.sleep(0.05)

    cutter = threading.Thread(target=cut_once_scores_arrive, daemon=True)
    try:
        cutter.start()
        with caplog.at_level(logging.WARNING, logger="dipro_fhir.store"):
            summary: dict[str, Any] = run_locally(
                settings, RunRequest(as_of=as_of, dag_run_id="outage")
            )
        cutter.join(timeout=5)
        assert proxy.cuts == 1, "the outage never happened"
        retries = [r for r in caplog.records if "results database" in r.getMessage()]
        assert retries, "no store operation met the outage: the test proved nothing"
        with observer.connect() as conn:
            status = conn.execute(sa.text("SELECT status FROM runs")).scalar()
            scored = conn.execute(sa.text("SELECT count(DISTINCT patient_id) FROM scores")).scalar()
            failed = conn.execute(
                sa.text("SELECT count(DISTINCT patient_id) FROM patient_failures")
            ).scalar()
        assert status == summary["status"] != "running"
        assert scored == summary["scored"] > 0
        assert scored + failed == summary["patients"]  # every patient has a record
        assert "source-unavailable" not in summary["failure_reasons"]
    finally:
        observer.dispose()
        proxy.close()
