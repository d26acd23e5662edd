"""The DiPro page's Monitoring section shows what the monitor computed, and ``/metrics``
serves it as OpenMetrics text (issue 25, surfaces); before a night is monitored it says so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from dipro_fhir.cli.main import main
from dipro_fhir.core.settings import Settings, StoreSettings
from dipro_fhir.synth.stream import nightly_world, write_night
from dipro_fhir.ui.app import create_app
from tests.unit.monitoring.openmetrics import parse
from tests.unit.monitoring.worlds import record_night, sqlite_store

FIRST = datetime(2026, 7, 1, 2, tzinfo=UTC)


def _client(url: str) -> TestClient:
    settings = Settings(store=StoreSettings(url=SecretStr(url)))
    host = FastAPI()
    host.mount("/dipro", create_app(lambda: settings))
    return TestClient(host)


def test_the_monitoring_page_and_metrics_show_the_monitors_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = nightly_world(nights=8, first_night=FIRST, admissions_per_day=4, seed=8)
    store = sqlite_store(tmp_path)
    url = store.engine.url.render_as_string(hide_password=False)
    client = _client(url)
    empty = client.get("/dipro/monitoring")
    assert empty.status_code == 200
    assert "No night monitored yet" in empty.text
    assert parse(client.get("/dipro/metrics").text) == []

    for k in range(6):  # scores that say nothing: the same risk for everyone
        record_night(store, world.view(world.night(k)), world.night(k))
    night = world.night(6)
    write_night(world, night, tmp_path / "night")
    for name, value in {
        "DIPRO_STORE__URL": url,
        "DIPRO_FHIR__NDJSON_DIR": str(tmp_path / "night"),
        "DIPRO_MODEL__CHECKPOINT": str(tmp_path / "no-checkpoint"),
        "DIPRO_MONITOR__MIN_OUTCOMES": "5",
        "DIPRO_MONITOR__MIN_EVENTS": "1",
        "DIPRO_MONITOR__MIN_AUROC": "0.9",
    }.items():
        monkeypatch.setenv(name, value)
    as_of = (night + timedelta(hours=4)).isoformat()
    assert main(["-q", "monitor", "--as-of", as_of, "--out", str(tmp_path / "report")]) == 1

    page = client.get("/dipro/monitoring").text
    assert "No night monitored yet" not in page
    assert "discrimination: AUROC 0.500" in page  # the alert, as the report words it
    assert "Subgroups over 30 days" in page
    assert "<svg" in page
    samples = parse(client.get("/dipro/metrics").text)
    auroc = [v for n, labels, v in samples if n == "dipro_monitor_figure"
             and labels["metric"] == "auroc" and labels["window_days"] == "30"
             and labels["attribute"] == ""]  # fmt: skip
    assert auroc == [0.5]
    ids = {p.patient_id for p in world.patients} | {p.stay.encounter_id for p in world.patients}
    assert not any(i in page for i in ids)
