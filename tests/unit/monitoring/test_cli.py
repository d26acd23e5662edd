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


def test_the_summary_counts_stays_open_beyond_the_horizon_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world, night, _store = uninformative_nights(tmp_path, monkeypatch)
    monkeypatch.setenv("DIPRO_MONITOR__PENDING_HORIZON_DAYS", "3")
    as_of = night + timedelta(hours=4)

    main(["-q", "monitor", "--as-of", as_of.isoformat(), "--out", str(tmp_path / "report")])

    # Scored on nights 0-5 (uninformative_nights), still open on the monitored night.
    scored = {p.patient_id for k in range(6) for p in world.view(world.night(k))
              if not p.stay.finished}  # fmt: skip
    pending = [p for p in world.view(night) if p.patient_id in scored and not p.stay.finished]
    beyond = [p for p in pending if as_of - p.stay.admitted > timedelta(days=3)]
    assert 0 < len(beyond) < len(pending)
    printed = capsys.readouterr().out
    assert "30 days: " in printed
    line = next(x for x in printed.splitlines() if x.strip().startswith("30 days:"))
    assert f"{len(pending)} pending ({len(beyond)} open beyond the 3-day horizon)" in line
    page = (tmp_path / "report" / "monitor.html").read_text()
    assert "<th>pending (beyond 3 days)</th>" in page
    assert f"<td>{len(pending)} <small>({len(beyond)} beyond)</small></td>" in page
