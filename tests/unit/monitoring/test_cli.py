"""``dipro-fhir monitor`` gathers, computes, prints the summary, writes the HTML report and
the OpenMetrics text, and exits 1 on a breach; the report and the metrics name no patient."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dipro_fhir.cli.main import main
from dipro_fhir.synth.stream import nightly_world, write_night
from tests.unit.monitoring.openmetrics import parse
from tests.unit.monitoring.worlds import record_night, sqlite_store

FIRST = datetime(2026, 7, 1, 2, tzinfo=UTC)


def test_the_monitor_command_reports_and_exits_1_on_a_breach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world = nightly_world(nights=8, first_night=FIRST, admissions_per_day=4, seed=8)
    store = sqlite_store(tmp_path)
    for k in range(6):  # scores that say nothing: the same risk for everyone
        record_night(store, world.view(world.night(k)), world.night(k))
    night = world.night(6)
    write_night(world, night, tmp_path / "night")
    for name, value in {
        "DIPRO_STORE__URL": store.engine.url.render_as_string(hide_password=False),
        "DIPRO_FHIR__NDJSON_DIR": str(tmp_path / "night"),
        "DIPRO_MODEL__CHECKPOINT": str(tmp_path / "no-checkpoint"),
        "DIPRO_MONITOR__MIN_OUTCOMES": "5",
        "DIPRO_MONITOR__MIN_EVENTS": "1",
        "DIPRO_MONITOR__MIN_AUROC": "0.9",
    }.items():
        monkeypatch.setenv(name, value)
    as_of = (night + timedelta(hours=4)).isoformat()
    out = tmp_path / "report"

    code = main(["-q", "monitor", "--as-of", as_of, "--out", str(out)])

    printed = capsys.readouterr().out
    assert code == 1
    assert "pending (stays still open)" in printed
    assert "ALERT discrimination: AUROC 0.500" in printed
    assert "breach: model version 1: discrimination: AUROC 0.500" in printed
    page = (out / "monitor.html").read_text()
    assert "<svg" in page
    assert "Subgroups over 30 days" in page
    assert "discrimination: AUROC 0.500" in page
    samples = parse((out / "metrics.txt").read_text())
    auroc = [v for n, labels, v in samples if n == "dipro_monitor_figure"
             and labels["metric"] == "auroc" and labels["window_days"] == "30"
             and labels["attribute"] == ""]  # fmt: skip
    assert auroc == [0.5]
    alerts = {labels["kind"]: v for n, labels, v in samples if n == "dipro_monitor_alerts"}
    assert alerts["discrimination"] >= 1.0  # in the 7- and the 30-day window
    assert alerts["calibration"] == 0.0
    ids = {p.patient_id for p in world.patients} | {p.stay.encounter_id for p in world.patients}
    for text in (page, (out / "metrics.txt").read_text(), printed):
        assert not any(i in text for i in ids)

    # The report alone, later: nothing gathered or computed, exit 0.
    assert main(["-q", "monitor", "--as-of", as_of, "--out", str(out), "--report-only"]) == 0
