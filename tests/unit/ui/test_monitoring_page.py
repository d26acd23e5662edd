"""The DiPro page's Monitoring section shows what the monitor computed, and ``/metrics``
serves it as OpenMetrics text (issue 25, surfaces); before a night is monitored it says so."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from dipro_fhir.cli.main import main
from dipro_fhir.core.settings import Settings, StoreSettings
from dipro_fhir.ui.app import create_app
from tests.unit.monitoring.openmetrics import parse
from tests.unit.monitoring.worlds import sqlite_store, uninformative_nights


def _client(url: str) -> TestClient:
    settings = Settings(store=StoreSettings(url=SecretStr(url)))
    host = FastAPI()
    host.mount("/dipro", create_app(lambda: settings))
    return TestClient(host)


def test_the_monitoring_page_and_metrics_show_the_monitors_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _client(sqlite_store(tmp_path).engine.url.render_as_string(hide_password=False))
    empty = client.get("/dipro/monitoring")
    assert empty.status_code == 200
    assert "No night monitored yet" in empty.text
    assert parse(client.get("/dipro/metrics").text) == []

    world, night, _store = uninformative_nights(tmp_path, monkeypatch)
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
