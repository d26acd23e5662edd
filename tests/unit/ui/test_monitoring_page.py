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
from dipro_fhir.monitoring.view import load_view
from dipro_fhir.ui.app import create_app
from tests.html_tables import tables
from tests.unit.monitoring.openmetrics import parse
from tests.unit.monitoring.worlds import record_night, sqlite_store, uninformative_nights


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


def test_the_night_list_and_a_nights_page_show_the_monitor_night_that_judged_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world, night, store = uninformative_nights(tmp_path, monkeypatch)
    judged = record_night(store, world.view(night), night)  # tonight's nightly run
    as_of = night + timedelta(hours=4)
    assert main(["-q", "monitor", "--as-of", as_of.isoformat(), "--out", str(tmp_path / "r")]) == 1
    client = _client(store.engine.url.render_as_string(hide_password=False))
    ids = {p.patient_id for p in world.patients} | {p.stay.encounter_id for p in world.patients}

    head, *rows = tables(client.get("/dipro/").text)[0]
    monitor = head.index("Monitor")
    by_as_of = {row[0]: row[monitor] for row in rows}
    (seen,) = load_view(store.engine).versions
    known = seen.figure(30, "stays_known")
    assert known is not None
    assert by_as_of.pop(f"{night:%Y-%m-%d %H:%M} UTC") == (
        f"breach AUROC 0.50 (0.50–0.50) over 30 d, {known['value']:.0f} stays known;"
        f"drift flagged 0 of 0; alerts {len(seen.alerts)}"
    )
    assert set(by_as_of.values()) == {"—"}  # earlier runs: no monitor night judged them

    page = client.get(f"/dipro/runs/{judged}").text
    section = page.split("<h2 id='monitoring'>Monitoring</h2>", 1)[1]
    assert f"The dipro_monitor night of {as_of:%Y-%m-%d %H:%M} UTC judged this run" in section
    assert "discrimination: AUROC 0.500" in section  # that night's alert
    assert "Drift tonight" in section
    assert "Subgroups over 30 days" in section
    assert section.count("<svg") >= 3  # AUROC over the nights, calibration, drift
    assert not any(i in page for i in ids)
    earlier = record_night(store, world.view(night - timedelta(days=1)), night - timedelta(days=1))
    text = client.get(f"/dipro/runs/{earlier}").text
    assert "No monitored night has judged this run yet" in text
