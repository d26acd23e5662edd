"""A night in a few lines for the terminal: who was scored, and how the risks spread per task.

One row per task and outcome (mortality; each length-of-stay bin; for progression, each
finding's probability of *worsened*): how many patients have it, the smallest, median and
largest probability, and how many fell in each ``qualitativeRisk`` band. A task whose risks
all lie within :data:`NARROW` of each other is named below the table: such a model barely
tells these patients apart, whatever its mean.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from statistics import median
from typing import Any

from dipro_fhir.store.results import StoredScore

#: A spread (largest minus smallest probability) below this is called narrow.
NARROW = 0.05
_BANDS = ("low", "moderate", "high")
_TASK_NAMES = {"mortality": "mortality", "los": "length of stay", "progression": "progression"}


def _row_key(score: StoredScore) -> tuple[str, str] | None:
    """(task, outcome) of a row, or None for rows not shown (progression's other classes)."""
    if score.task == "progression":
        finding, _, change = score.outcome.partition(":")
        return ("progression", f"{finding} worsened") if change == "worsened" else None
    return (_TASK_NAMES.get(score.task, score.task), score.outcome)


def risk_spread_table(scores: Sequence[StoredScore], counts: dict[str, Any]) -> str:
    """The lines: patients scored and failed, then the spread of each task's risks."""
    rows: dict[tuple[str, str], list[StoredScore]] = defaultdict(list)
    for score in scores:
        key = _row_key(score)
        if key is not None:
            rows[key].append(score)
    patients = len({s.patient_id for s in scores})
    failed = int(counts.get("failed_patients", 0))
    order = list(_TASK_NAMES.values())
    ranked = sorted(rows, key=lambda k: order.index(k[0]) if k[0] in order else len(order))
    width = max([len("outcome"), *(len(outcome) for _, outcome in ranked)])
    lines = [
        f"{patients} patients scored, {failed} failed",
        f"{'task':15s} {'outcome':{width}s} {'patients':>8s} {'min':>6s} {'median':>6s} "
        f"{'max':>6s}  low / moderate / high",
    ]
    narrow = []
    for task, outcome in ranked:  # tasks in a fixed order; outcomes as the model lists them
        group = rows[(task, outcome)]
        values = [s.probability for s in group]
        bands = [sum(1 for s in group if s.risk_level == band) for band in _BANDS]
        lines.append(
            f"{task:15s} {outcome:{width}s} {len(group):8d} {min(values):6.3f} "
            f"{median(values):6.3f} {max(values):6.3f}  {bands[0]} / {bands[1]} / {bands[2]}"
        )
        if len(values) > 1 and max(values) - min(values) < NARROW:
            narrow.append(f"{task} {outcome}")
    if narrow:
        lines.append(
            f"every risk within {NARROW} of the others (the model barely tells these patients "
            f"apart): {', '.join(narrow)}"
        )
    return "\n".join(lines)
