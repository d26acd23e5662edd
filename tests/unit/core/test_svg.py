"""The bar chart of the monitor's drift shows the flagged items first: ten bars of larger,
unflagged values never hide a flagged one."""

from __future__ import annotations

from dipro_fhir.core.svg import horizontal_bars


def test_flagged_bars_come_first_whatever_their_size() -> None:
    rows = [(f"var{i} PSI", 5.0 + i, False) for i in range(12)]
    rows.append(("creatinine coverage", -0.9, True))
    chart = horizontal_bars(rows, "Drift")
    labels = [part.split("</text>")[0] for part in chart.split('text-anchor="end">')[1:]]
    assert labels[0] == "creatinine coverage"
    assert labels[1:10] == [f"var{i} PSI" for i in range(11, 2, -1)]  # then the largest
    assert chart.count('fill="#c0504d"') == 1  # the flagged bar, red
    assert chart.count('fill="#4a78b5"') == 9
