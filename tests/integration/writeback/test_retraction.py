"""Retraction of a model version against HAPI and PostgreSQL: exactly that version's
RiskAssessments become ``entered-in-error`` (each with one retraction Provenance), its rows
are marked, a re-run of the night brings nothing back, and ``kill -9`` then re-run converges.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dipro_fhir.cli import main
from dipro_fhir.core.scores import ModelInfo
from dipro_fhir.core.timeline import RunId
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.store import ResultStore
from dipro_fhir.store.retractions import RetractionRequest, RetractionStore
from dipro_fhir.writeback import codes
from dipro_fhir.writeback.assessment import AssessmentOptions
from dipro_fhir.writeback.retract import retract
from dipro_fhir.writeback.sinks import FhirResultSink
from dipro_fhir.writeback.write import publish_chunk
from tests.integration.writeback.retract_child import REASON
from tests.integration.writeback.sources import load_sources
from tests.servers.fault_proxy import FaultProxy
from tests.unit.writeback.scores import AS_OF, MODEL, cohort_scores

pytestmark = pytest.mark.integration
N_PATIENTS = 4
PER_VERSION = 3 * N_PATIENTS
ROWS = 26 * N_PATIENTS
MODEL_2 = ModelInfo("dipro", "2.0.0", "b" * 64)
REPO = Path(__file__).resolve().parents[3]
OPTIONS = AssessmentOptions(transaction_size=5)


@pytest.fixture
def engine(migrated_pg_url: str) -> Iterator[sa.Engine]:
    result = sa.create_engine(migrated_pg_url)
    yield result
    result.dispose()


def _night(client: FhirClient, engine: sa.Engine, model: ModelInfo, run: str) -> Any:
    store = ResultStore(engine)
    store.start_run(RunId(run), as_of=AS_OF, model_name=model.name, model_version=model.version)
    scores = cohort_scores(N_PATIENTS, model=model, run_id=run)
    report, _ = publish_chunk(
        FhirResultSink(client), store, RunId(run), scores, model, options=OPTIONS
    )
    return report


def _statuses(client: FhirClient, model: ModelInfo) -> Counter[str]:
    device = f"Device/{codes.device_id(model.name, model.version)}"
    found = client.search("RiskAssessment", {"performer": device, "_count": "500"})
    return Counter(ra["status"] for ra in found)


def _versions(client: FhirClient, model: ModelInfo) -> dict[str, str]:
    device = f"Device/{codes.device_id(model.name, model.version)}"
    found = client.search("RiskAssessment", {"performer": device, "_count": "500"})
    return {ra["id"]: ra["meta"]["versionId"] for ra in found}


def _retraction_provenances(client: FhirClient) -> Counter[str]:
    return Counter(
        t["reference"]
        for p in client.search("Provenance", {"_count": "500"})
        if p["id"].startswith("retr-")
        for t in p["target"]
    )


def _retracted_rows(engine: sa.Engine) -> dict[str, int]:
    query = "SELECT model_version, count(*) FROM scores WHERE retracted_at IS NOT NULL GROUP BY 1"
    with engine.connect() as conn:
        return {v: int(n) for v, n in conn.execute(sa.text(query)).all()}


def test_retracting_a_version_changes_exactly_its_assessments_and_a_rerun_keeps_them(
    fhir_base_url: str,
    engine: sa.Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with FhirClient(fhir_base_url) as client:
        load_sources(client, cohort_scores(N_PATIENTS))
        _night(client, engine, MODEL, "night-v1")
        _night(client, engine, MODEL_2, "night-v2")
        before = (_statuses(client, MODEL), _statuses(client, MODEL_2))
        v2_versions = _versions(client, MODEL_2)
        report = retract(
            client, RetractionStore(engine), RetractionRequest("1.0.0", REASON), chunk_size=5
        )
        after = (_statuses(client, MODEL), _statuses(client, MODEL_2))
        provenances = _retraction_provenances(client)
        assert _versions(client, MODEL_2) == v2_versions  # the other version is untouched
        rows_after = _retracted_rows(engine)
        # The night again (same as-of, same version): nothing comes back.
        again = _night(client, engine, MODEL, "night-v1-again")
        after_rerun = _statuses(client, MODEL)
        rows_after_rerun = _retracted_rows(engine)
        second = retract(client, RetractionStore(engine), RetractionRequest("1.0.0", REASON))
        v1_versions = set(_versions(client, MODEL).values())
        # One patient of version 2, in an as-of range around the night: the command.
        for name, value in {
            "DIPRO_FHIR__BASE_URL": fhir_base_url,
            "DIPRO_STORE__URL": str(engine.url.render_as_string(hide_password=False)),
            "DIPRO_WRITEBACK__TARGET": "fhir",
            "DIPRO_MODEL__CHECKPOINT": str(tmp_path / "no-checkpoint"),
        }.items():
            monkeypatch.setenv(name, value)
        command = ["retract", "--model-version", "2.0.0", "--reason", "wrong patient linkage"]
        window = ["--since", (AS_OF - timedelta(hours=1)).isoformat()]
        window += ["--until", (AS_OF + timedelta(hours=1)).isoformat(), "--patient", "pat-0001"]
        capsys.readouterr()
        assert main([*command, *window]) == 0
        partial = json.loads(capsys.readouterr().out)
        v2_after = _statuses(client, MODEL_2)
    assert before == (Counter(final=PER_VERSION), Counter(final=PER_VERSION))
    assert after == (Counter({"entered-in-error": PER_VERSION}), Counter(final=PER_VERSION))
    assert (report.found, report.retracted, report.already) == (PER_VERSION, PER_VERSION, 0)
    assert report.provenances == 3  # 12 in transactions of 5
    assert len(provenances) == PER_VERSION
    assert set(provenances.values()) == {1}
    assert rows_after == {"1.0.0": ROWS}
    assert (again.written, again.retracted, again.failures) == (0, PER_VERSION, ())
    assert after_rerun == Counter({"entered-in-error": PER_VERSION})
    assert rows_after_rerun == {"1.0.0": ROWS}
    assert (second.retracted, second.already, second.provenances, second.rows_marked) == (
        0,
        PER_VERSION,
        0,
        0,
    )
    assert v1_versions == {"2"}  # one new version each, never more
    assert (partial["found"], partial["retracted"], partial["rows_marked"]) == (3, 3, 26)
    assert v2_after == Counter({"final": PER_VERSION - 3, "entered-in-error": 3})
    assert _retracted_rows(engine) == {"1.0.0": ROWS, "2.0.0": 26}
    store = RetractionStore(engine)
    assert store.withdrawn("1.0.0", AS_OF + timedelta(days=3))
    assert not store.withdrawn("2.0.0", AS_OF)
    with capsys.disabled():
        print(
            f"retraction on HAPI: before v1 {dict(before[0])} v2 {dict(before[1])}; after v1 "
            f"{dict(after[0])} v2 {dict(after[1])}; rows retracted {rows_after}; night re-run: "
            f"written {again.written}, kept retracted {again.retracted}; v1 after re-run "
            f"{dict(after_rerun)}; second retraction retracted {second.retracted}; one patient "
            f"of v2: {dict(v2_after)}"
        )


def test_kill_9_during_retraction_then_rerun_is_consistent(
    fhir_base_url: str,
    engine: sa.Engine,
    fault_proxy: Callable[[str], FaultProxy],
    migrated_pg_url: str,
) -> None:
    with FhirClient(fhir_base_url) as client:
        load_sources(client, cohort_scores(N_PATIENTS))
        _night(client, engine, MODEL, "night-v1")
    proxy = fault_proxy(fhir_base_url)
    # The second transaction is held (it reaches HAPI only at teardown, with a stale
    # If-Match, and is refused): the child dies with one chunk retracted.
    proxy.inject("delay", times=1, method="POST", skip=1, delay_s=600)
    command = [sys.executable, "-m", "tests.integration.writeback.retract_child"]
    child = subprocess.Popen(
        [*command, proxy.base_url, migrated_pg_url, "1.0.0", "4"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'model'}"},
    )
    try:
        deadline = time.monotonic() + 120
        while proxy.count(method="POST") < 2:
            assert time.monotonic() < deadline, "no second retraction transaction"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    with FhirClient(fhir_base_url) as client:
        at_kill = _statuses(client, MODEL)
        rows_at_kill = _retracted_rows(engine)
        report = retract(
            client, RetractionStore(engine), RetractionRequest("1.0.0", REASON), chunk_size=4
        )
        after = _statuses(client, MODEL)
        provenances = _retraction_provenances(client)
        versions = set(_versions(client, MODEL).values())
    assert at_kill == Counter({"entered-in-error": 4, "final": PER_VERSION - 4})
    assert report.already == 4
    assert report.retracted == PER_VERSION - 4
    assert after == Counter({"entered-in-error": PER_VERSION})
    assert len(provenances) == PER_VERSION
    assert set(provenances.values()) == {1}
    assert versions == {"2"}
    assert _retracted_rows(engine) == {"1.0.0": ROWS}
    with engine.connect() as conn:
        status = conn.execute(sa.text("SELECT status FROM retractions")).scalars().all()
    assert status == ["done"]
    print(
        f"kill -9 during retraction: at the kill {dict(at_kill)}, rows retracted "
        f"{rows_at_kill}; after re-run {dict(after)}, retraction Provenances per "
        f"RiskAssessment {set(provenances.values())}, rows retracted {_retracted_rows(engine)}"
    )
