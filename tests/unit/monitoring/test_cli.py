"""``dipro-fhir monitor`` gathers, computes, prints the summary, writes the HTML report and
the OpenMetrics text, and exits 1 on a breach; the report and the metrics name no patient."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from dipro_fhir.cli.main import main
from tests.unit.monitoring.openmetrics import parse
from tests.unit.monitoring.worlds import uninformative_nights


def test_the_monitor_command_reports_and_exits_1_on_a_breach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world, night, _store = uninformative_nights(tmp_path, monkeypatch)
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
