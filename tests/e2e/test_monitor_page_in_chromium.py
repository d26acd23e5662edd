"""The monitor's surfaces on a real Airflow 3 API server, in chromium (issue 25, surfaces).

Seven nights of a synthetic world are scored through the CLI's path into a PostgreSQL results
database, the monitor after each night (outcomes gathered as stays end); creatinine stops
arriving and temperature comes in °F under a new local code from night 4, and the first
three nights are the drift reference. The API server with the plugin reads that database
(tests/e2e/dipro_page.py); chromium logs in and opens:

* the DiPro night list in the Airflow UI: per night its status, data quality and the
  monitor's verdict on it (status, AUROC over the longest window, drift flagged, alerts);
* the last night's page: that night's own monitoring figures (alerts, the performance of the
  windows ending that night, length of stay and progression included, drift per variable
  against the reference, unusable films, unmapped codes, the score distribution's shift);
* ``/dipro/monitoring``: the report with its plots;

and ``/dipro/metrics`` is scraped as Prometheus would, with a token.

None shows a patient or encounter id. Screenshots: ``var/screenshots/monitor-*.png``.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from dipro_fhir.store.monitoring import (
    NightRecord,
    read_alerts,
    read_drift,
    read_figures,
    read_nights,
)
from dipro_fhir.synth.drift import Drift, LabStops, UnitSwitch
from dipro_fhir.synth.stream import NightlyWorld, night_start, nightly_world
from tests.checkpoints import write_tiny_checkpoint
from tests.e2e.conftest import REPO, AirflowEnv
from tests.e2e.dipro_page import ApiServer, page_api_server, results_database
from tests.e2e.sandbox_browser import AirflowUI, chromium, require_browser
from tests.servers.postgres import PgServer
from tests.unit.monitoring.nights import run_nights, world_settings
from tests.unit.monitoring.openmetrics import parse

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCREENSHOTS = REPO / "var" / "screenshots"
FIRST = datetime(2026, 9, 1, 2, tzinfo=UTC)
NIGHTS = 7
DRIFT_NIGHT = 4


@dataclass(frozen=True)
class Monitored:
    """The server, the world and the monitored nights (oldest first)."""

    server: ApiServer
    world: NightlyWorld
    nights: list[NightRecord]
    engine: sa.Engine

    def identifiers(self) -> set[str]:
        return {p.patient_id for p in self.world.patients} | {
            p.stay.encounter_id for p in self.world.patients
        }


@pytest.fixture(scope="module")
def monitored(
    airflow_env: AirflowEnv, pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Monitored]:
    plain = nightly_world(nights=NIGHTS, first_night=FIRST, admissions_per_day=5, seed=11)
    start = night_start(plain, DRIFT_NIGHT)
    drifts: list[Drift] = [LabStops(start, "creatinine"), UnitSwitch(start, "temperature")]
    world = nightly_world(nights=NIGHTS, first_night=FIRST, admissions_per_day=5, seed=11,
                          drifts=drifts)  # fmt: skip
    work = tmp_path_factory.mktemp("monitor-page")
    with results_database(pg_server, "dipro_monitor_page") as url:
        settings = world_settings(world, work, write_tiny_checkpoint, store_url=url)
        monitor = settings.monitor.model_copy(update={"reference_nights": 3})
        settings = settings.model_copy(update={"monitor": monitor})
        run_nights(world, settings, range(NIGHTS), work)
        environ = {
            "DIPRO_MODEL__CHECKPOINT": str(settings.model.checkpoint),
            "DIPRO_MONITOR__REFERENCE_NIGHTS": "3",
        }
        engine = sa.create_engine(url)
        try:
            with page_api_server(airflow_env, url, work, environ) as server:
                yield Monitored(server, world, read_nights(engine), engine)
        finally:
            engine.dispose()


def _shots(name: str, tmp_path: Path) -> tuple[Path, ...]:
    return (SCREENSHOTS / f"{name}.png", Path("/tmp/dipro-screens") / f"{name}.png",
            tmp_path / f"{name}.png")  # fmt: skip


def test_the_monitor_in_chromium_night_list_a_nights_figures_and_the_report(
    monitored: Monitored, tmp_path: Path
) -> None:
    require_browser()
    engine, nights = monitored.engine, monitored.nights
    assert len(nights) == NIGHTS
    assert all(n.run_id for n in nights)
    last = nights[-1]
    drift = read_drift(engine, [last.id])
    flagged = {(d["kind"], d["item"]) for d in drift if d["flagged"]}
    # The injected drifts are what the monitor found on the last night.
    assert ("coverage", "creatinine") in flagged
    assert any(kind == "new-unmapped-code" and item.endswith("|TEMP-F") for kind, item in flagged)
    alerts = read_alerts(engine, [last.id])
    ids = monitored.identifiers()

    with chromium() as browser:
        ui = AirflowUI(browser, monitored.server.stack.base_url)
        ui.login("admin", monitored.server.password)
        frame = ui.open_nav_entry("DiPro")
        listing = frame.locator("table").first
        listing.wait_for()
        head = listing.locator("th").all_inner_texts()
        monitor_col, status_col = head.index("Monitor"), head.index("Status")
        coverage_col = head.index("Coverage (Δ)")
        rows = [[" ".join(c.split()) for c in r.locator("td").all_inner_texts()]
                for r in listing.locator("tr:has(td)").all()]  # fmt: skip
        assert len(rows) == NIGHTS
        for row, night in zip(rows, reversed(nights), strict=True):  # newest first
            items = read_drift(engine, [night.id])
            assert row[status_col] == "success"
            assert row[coverage_col].endswith(("pp", "±0", "no baseline")), row
            assert row[monitor_col].startswith(f"{night.status} AUROC "), row
            judged = (f"drift flagged {sum(bool(d['flagged']) for d in items)} of {len(items)}; "
                      f"alerts {len(read_alerts(engine, [night.id]))}")  # fmt: skip
            assert judged in row[monitor_col], row
        text = frame.locator("body").inner_text()
        assert not [i for i in ids if i in text], "the night list names a patient"
        ui.screenshot(*_shots("monitor-nights", tmp_path))

        page = ui.open_alone(f"/dipro/runs/{last.run_id}")
        section = page.split('id="monitoring"', 1)[1]
        for alert in alerts:
            assert html.escape(alert["message"], quote=False) in section
        assert "Drift per variable tonight" in section
        assert "creatinine coverage" in section  # a flagged bar of the drift figure
        assert '<tr class="breach"><td>coverage</td><td>creatinine</td>' in section
        assert "unusable-films" in section
        assert "unmapped-share" in section
        assert ">scores<" in section  # the score distribution against the reference
        assert "1 days" in section
        assert "30 days" in section
        assert section.count("<svg") >= 3
        # Length of stay and progression beside mortality, per window ending that night.
        assert "Length of stay and progression" in section
        month = {f["metric"]: f["value"] for f in read_figures(engine, [last.id])
                 if (f["window_days"], f["attribute"]) == (30, "")}  # fmt: skip
        accuracy = month["los:accuracy"]
        assert accuracy is not None
        assert f"<td>30 days</td><td>{month['los:stays']:.0f}</td><td>{accuracy:.3f}" in section
        assert not [i for i in ids if i in page], "the night page names a patient"
        ui.screenshot(*_shots("monitor-night", tmp_path),
                      locator=ui.page.locator("section.dipro-monitor"))  # fmt: skip

        page = ui.open_alone("/dipro/monitoring")
        assert "Calibration over 30 days" in page
        assert "Mortality AUROC over the nights" in page
        assert not [i for i in ids if i in page], "the monitoring page names a patient"
        ui.screenshot(*_shots("monitor-page", tmp_path), full_page=True)


def test_the_metrics_endpoint_serves_the_last_nights_figures(monitored: Monitored) -> None:
    """What a site's Prometheus scrapes, through Airflow's auth: the last night's figures,
    length of stay, progression and the pending stays beyond the horizon among them."""
    answer = monitored.server.authed("/dipro/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    last = monitored.nights[-1]
    stored = {(f["window_days"], f["metric"]): f["value"]
              for f in read_figures(monitored.engine, [last.id]) if not f["attribute"]}  # fmt: skip
    scraped = {(int(labels["window_days"]), labels["metric"]): value
               for name, labels, value in parse(answer.text)
               if name == "dipro_monitor_figure" and not labels["attribute"]}  # fmt: skip
    for key in ((30, "los:accuracy"), (30, "progression:auroc"),
                (30, "stays_pending_beyond_horizon"), (30, "auroc")):  # fmt: skip
        assert stored[key] is not None, key
        assert scraped[key] == pytest.approx(stored[key]), key
    assert not [i for i in monitored.identifiers() if i in answer.text]
    assert monitored.server.get("/dipro/metrics").status_code == 401
