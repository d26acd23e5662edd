"""Exactly once across a ``kill -9``: a write-back worker dies mid-chunk, a re-run completes.

The worker runs in its own process against HAPI through the fault proxy, which holds the
first Provenance write for a while: the worker is killed while its RiskAssessments are on
the server and their Provenance is not. The re-run (another process's view: a fresh client
and store) must leave exactly one RiskAssessment per patient and task, each in exactly one
Provenance, and one database row per score.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from dipro_fhir.core.timeline import RunId
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.store import ResultStore
from dipro_fhir.writeback import codes
from dipro_fhir.writeback.assessment import AssessmentOptions
from dipro_fhir.writeback.sinks import FhirResultSink
from dipro_fhir.writeback.write import publish_chunk
from tests.integration.writeback.sources import load_sources, provenance_count_per_target
from tests.servers.fault_proxy import FaultProxy
from tests.unit.writeback.scores import AS_OF, MODEL, cohort_scores

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[3]
N_PATIENTS = 12
WAIT_S = 120.0


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_kill_9_during_writeback_then_rerun_converges_to_exactly_once(
    fhir_base_url: str, fault_proxy: Callable[[str], FaultProxy], migrated_pg_url: str
) -> None:
    scores = cohort_scores(N_PATIENTS)
    with FhirClient(fhir_base_url) as client:
        load_sources(client, scores)
    engine = sa.create_engine(migrated_pg_url)
    store = ResultStore(engine)
    store.start_run(RunId("run-1"), as_of=AS_OF, model_name="dipro", model_version="1.0.0")
    proxy = fault_proxy(fhir_base_url)
    proxy.inject("delay", times=1, match=r"/Provenance/", method="PUT", delay_s=60)
    command = [sys.executable, "-m", "tests.integration.writeback.write_child"]
    child = subprocess.Popen(
        [*command, proxy.base_url, migrated_pg_url, str(N_PATIENTS), "run-1"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        _wait_for(lambda: proxy.count(path="/Provenance/", method="PUT") >= 1, "a Provenance PUT")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    with FhirClient(fhir_base_url) as client:
        held_before = len(list(client.search("RiskAssessment", {"_count": "500"})))
        report, _ = publish_chunk(
            FhirResultSink(client),
            store,
            RunId("run-1"),
            scores,
            MODEL,
            options=AssessmentOptions(transaction_size=5),
        )
        assessments = list(client.search("RiskAssessment", {"_count": "500"}))
        per_target = provenance_count_per_target(client)
    assert 0 < held_before < 3 * N_PATIENTS  # killed mid-chunk, with assessments written
    assert report.failures == ()
    per_identifier = Counter(
        i["value"]
        for ra in assessments
        for i in ra["identifier"]
        if i["system"] == codes.ASSESSMENT_ID_SYSTEM
    )
    per_patient = Counter(ra["subject"]["reference"] for ra in assessments)
    assert set(per_identifier.values()) == {1}
    assert per_patient == {f"Patient/pat-{i:04d}": 3 for i in range(N_PATIENTS)}
    assert sorted(per_target) == sorted(f"RiskAssessment/{ra['id']}" for ra in assessments)
    assert set(per_target.values()) == {1}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT patient_id, count(*) FROM scores GROUP BY patient_id")
        ).all()
    engine.dispose()
    assert {p: n for p, n in rows} == {f"pat-{i:04d}": 26 for i in range(N_PATIENTS)}
    print(
        f"kill -9 then re-run on HAPI: {held_before} of {3 * N_PATIENTS} RiskAssessments held "
        f"at the kill; after: RiskAssessments/patient {set(per_patient.values())}, "
        f"Provenances/RiskAssessment {set(per_target.values())}, rows/patient "
        f"{ {n for _, n in rows} }"
    )
