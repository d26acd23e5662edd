"""The DiPro page against a real PostgreSQL results database, mounted as Airflow mounts it.

Three runs are recorded through the store (tests/ui_nights.py); the app is mounted under
``/dipro`` in a parent FastAPI app, like Airflow's API server does, and read over ASGI. Every
figure a test expects is computed from what was recorded, never from the page's own code.
The host's auth is a dependency the test passes in; Airflow's own is tested in
tests/e2e/test_dipro_plugin.py.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import create_engine

from dipro.vocab import VARIABLES
from dipro_fhir.core.risk import RiskThresholds, classify_risk
from dipro_fhir.core.settings import ModelSettings, Settings, StoreSettings
from dipro_fhir.store import ResultStore
from dipro_fhir.ui.app import create_app
from tests.checkpoints import write_tiny_checkpoint
from tests.html_tables import tables
from tests.ui_nights import MARKUP, MODEL_NAME, MODEL_VERSION, SeededRun, seed_nights

pytestmark = pytest.mark.integration


@pytest.fixture
def seeded(migrated_pg_url: str, tmp_path: Path) -> tuple[Settings, list[SeededRun]]:
    engine = create_engine(migrated_pg_url)
    runs = seed_nights(ResultStore(engine))
    engine.dispose()
    checkpoint = write_tiny_checkpoint(tmp_path / "ckpt", name=MODEL_NAME, version=MODEL_VERSION)
    settings = Settings(
        store=StoreSettings(url=SecretStr(migrated_pg_url)),
        model=ModelSettings(checkpoint=checkpoint, min_validation_patients=10),
    )
    return settings, runs


def _client(settings: Settings, **kwargs: object) -> TestClient:
    host = FastAPI()
    host.mount("/dipro", create_app(lambda: settings, **kwargs))  # type: ignore[arg-type]
    return TestClient(host)


@pytest.fixture
def client(seeded: tuple[Settings, list[SeededRun]]) -> TestClient:
    return _client(seeded[0])


def _coverage(run: SeededRun) -> float:
    q = run.quality
    return sum(q.variable_patients.get(v, 0) for v in VARIABLES) / (len(VARIABLES) * q.patients)


def _patients(runs: list[SeededRun]) -> set[str]:
    return {p for r in runs for p in r.patients}


def test_night_list_shows_counts_and_quality_change_newest_first(
    client: TestClient, seeded: tuple[Settings, list[SeededRun]]
) -> None:
    runs = seeded[1]
    first, second, _manual = runs
    page = client.get("/dipro/")
    assert page.status_code == 200
    head, *rows = tables(page.text)[0]
    assert head[:4] == ["As of", "Kind", "Mode", "Status"]
    assert [r[1] for r in rows] == ["manual", "nightly", "nightly"]
    assert rows[0][2] == "shadow"
    night = rows[1]
    assert night[3:7] == ["partial", "7", "5", "2"]
    # Against the first night (the latest successful nightly run before it).
    points = round((_coverage(second) - _coverage(first)) * 100)
    assert night[7] == f"{_coverage(second):.0%} " + (f"{points:+d} pp" if points else "±0")
    assert night[8] == f"{9} {9 - 4:+d}"
    assert night[9] == f"{4} {4 - 1:+d}"
    assert rows[2][9] == "1 no baseline"
    assert f'href="/dipro/runs/{second.run_id}"' in page.text
    assert not any(p in page.text for p in _patients(runs)), "the list names a patient"


def test_night_list_pages_and_filters_by_pipeline(client: TestClient) -> None:
    one = client.get("/dipro/", params={"per_page": 2})
    assert len(tables(one.text)[0]) == 1 + 2
    assert "page 1 of 2 (3 runs)" in one.text
    assert 'href="/dipro/?page=2&amp;per_page=2"' not in one.text  # per_page is not carried
    assert 'href="/dipro/?page=2"' in one.text
    two = client.get("/dipro/", params={"per_page": 2, "page": 2})
    assert len(tables(two.text)[0]) == 1 + 1
    other = client.get("/dipro/", params={"pipeline": "dipro_retract"})
    assert "No run is recorded" in other.text
    assert client.get("/dipro/", params={"page": 0}).status_code == 422


def test_night_page_shows_failures_films_risks_and_the_model_status(
    client: TestClient, seeded: tuple[Settings, list[SeededRun]]
) -> None:
    settings, (first, second, _manual) = seeded
    page = client.get(f"/dipro/runs/{second.run_id}")
    assert page.status_code == 200
    text = page.text
    found = tables(text)
    failures = next(t for t in found if t[0][:3] == ["Class", "Stage", "Reason"])
    expected = {
        ("retriable" if why[2] else "data", why[0], why[1]) for why in second.failed.values()
    }
    assert {(r[0], r[1], r[2]) for r in failures[1:]} == expected
    assert all(r[3] == "1" for r in failures[1:])
    films = next(t for t in found if t[0] == ["Reason", "Films", "Δ"])
    assert films[1:] == [["corrupt-dicom", "1", "+1"], ["regions-not-found", "3", "+2"]]
    # One figure per task; the bands of the mortality scores as recorded.
    assert text.count("<svg") == 3
    bands = Counter(
        classify_risk(s.probability, RiskThresholds())
        for s in second.scores
        if s.task == "mortality"
    )
    band_table = next(t for t in found if t[0] == ["Task", "Patients per band"])
    mortality = next(r for r in band_table if r[0] == "mortality")
    assert mortality[1] == ", ".join(
        f"{b} {bands[b]}" for b in ("low", "moderate", "high") if bands[b]
    )
    assert f"{MODEL_NAME} <b>{MODEL_VERSION}</b>" in text
    assert "Validated: passes the validation gate" in text
    assert "Not for clinical use" in text
    assert "<h2 id='monitoring'>Monitoring</h2>" in text
    assert "No monitored night has judged this run yet" in text
    dag_run = second.dag_run_id.replace(":", "%3A").replace("+", "%2B")
    assert f'href="/dags/dipro_nightly/runs/{dag_run}" target="_top"' in text
    assert not any(p in text for p in _patients([first, second])), "the night page names a patient"
    assert settings.model.checkpoint.exists()


def test_markup_from_the_source_data_is_shown_as_text(client: TestClient) -> None:
    page = client.get("/dipro/runs/run-ui-second").text
    assert MARKUP not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    patient = client.get("/dipro/patients/<b onmouseover=alert(2)>x")
    assert patient.status_code == 200
    assert "<b onmouseover" not in patient.text
    assert "&lt;b onmouseover=alert(2)&gt;x" in patient.text


def test_patient_view_shows_the_latest_assessment_per_task(
    client: TestClient, seeded: tuple[Settings, list[SeededRun]]
) -> None:
    _, (first, second, manual) = seeded
    patient = second.scored[2]  # scored on both nights, not in the manual run
    page = client.get(f"/dipro/patients/{patient}")
    assert page.status_code == 200
    death = next(s for s in second.scores if s.patient_id == patient and s.task == "mortality")
    assert f"<b>{death.probability:.1%}</b> death in hospital" in page.text
    assert second.as_of.strftime("%Y-%m-%d %H:%M UTC") in page.text
    assert first.as_of.strftime("%Y-%m-%d %H:%M UTC") not in page.text
    los = [s for s in second.scores if s.patient_id == patient and s.task == "los"]
    likeliest = max(los, key=lambda s: s.probability)
    assert f"<b>{likeliest.probability:.1%}</b> stay {likeliest.outcome}" in page.text
    assert page.text.count("<h2>") == 3
    assert "Data problems" not in page.text
    # The first patient's latest assessment is the manual shadow run's, with a data problem.
    assert manual.scored[0] == second.scored[0]
    noted = client.get(f"/dipro/patients/{manual.scored[0]}").text
    assert manual.as_of.strftime("%Y-%m-%d %H:%M UTC") in noted
    assert "Shadow run" in noted
    assert "Data problems in that run: regions-not-found × 1." in noted
    assert "No assessment" in client.get("/dipro/patients/nobody").text


def test_airflow_run_link_leads_to_its_night_and_unknown_runs_are_404(
    client: TestClient, seeded: tuple[Settings, list[SeededRun]]
) -> None:
    second = seeded[1][1]
    found = client.get(
        f"/dipro/airflow-runs/dipro_nightly/{second.dag_run_id}", follow_redirects=False
    )
    assert found.status_code == 303
    assert found.headers["location"] == f"/dipro/runs/{second.run_id}"
    assert client.get("/dipro/airflow-runs/dipro_nightly/manual__never").status_code == 404
    assert client.get("/dipro/runs/run-never").status_code == 404
    assert "No night monitored yet" in client.get("/dipro/monitoring").text


def test_a_request_the_host_refuses_never_reaches_the_database(
    seeded: tuple[Settings, list[SeededRun]],
) -> None:
    def refuse(request: Request) -> None:
        if request.headers.get("authorization") != "Bearer good":
            raise HTTPException(401, "Not authenticated")

    client = _client(
        seeded[0], dependencies=[Depends(refuse)], login_url=lambda n: f"/login?next={n}"
    )
    assert client.get("/dipro/").status_code == 401
    browser = client.get("/dipro/runs/x", headers={"accept": "text/html"}, follow_redirects=False)
    assert browser.status_code == 303
    assert re.fullmatch(r"/login\?next=http://testserver/dipro/runs/x", browser.headers["location"])
    allowed = client.get("/dipro/", headers={"authorization": "Bearer good"})
    assert allowed.status_code == 200


def test_an_unreachable_database_is_a_503_page_without_the_url(tmp_path: Path) -> None:
    url = "postgresql+psycopg2://nobody:secret-pw@127.0.0.1:9/none"
    client = _client(Settings(store=StoreSettings(url=SecretStr(url))))
    page = client.get("/dipro/")
    assert page.status_code == 503
    assert "secret-pw" not in page.text
    assert "OperationalError" in page.text
