"""A subgroup gap is judged against everyone else only when everyone else has enough outcomes
too: an AUROC of 1.000 from two deaths is no yardstick (seen on a 7-day window)."""

from __future__ import annotations

from dipro_fhir.core.settings import MonitorSettings
from dipro_fhir.monitoring.alerts import performance_alerts
from dipro_fhir.monitoring.performance import Figure


def _figures(rest_deaths: int) -> list[Figure]:
    group_stays, group_deaths = 40, 8
    rest_stays = 30
    return [
        Figure(7, "", "", "stays_known", group_stays + rest_stays),
        Figure(7, "", "", "deaths", group_deaths + rest_deaths),
        Figure(7, "", "", "auroc", 0.85, 0.8, 0.9),
        Figure(7, "path", "cxr_pairs", "stays", group_stays),
        Figure(7, "path", "cxr_pairs", "deaths", group_deaths),
        Figure(7, "path", "cxr_pairs", "auroc", 0.80, 0.69, 0.95),
        Figure(7, "path", "cxr_pairs", "auroc_rest", 1.0, 1.0, 1.0),
    ]


def test_a_gap_needs_enough_deaths_among_everyone_else() -> None:
    limits = MonitorSettings()
    gaps = [a for a in performance_alerts(_figures(5), limits) if a.kind == "subgroup-gap"]
    assert [a.subject for a in gaps] == ["path=cxr_pairs"]
    few = [a for a in performance_alerts(_figures(2), limits) if a.kind == "subgroup-gap"]
    assert few == []
