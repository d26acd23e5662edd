"""Per-task metrics of held-out predictions (reference §4.2), as the trainer's history and
the CLI's ``metrics.json`` report them."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dipro.batch import DiproBatch, DiproTargets
from dipro.calibration import Calibration
from dipro.metrics import (
    ClassificationMetrics,
    binary_metrics,
    multiclass_metrics,
    progression_metrics,
)
from dipro.network import DiPro
from dipro.predictions import Predictions, predict

Example = tuple[DiproBatch, DiproTargets]


@dataclass(frozen=True, slots=True)
class EvaluationReport:
    """Metrics per configured task (None for tasks without a head or labels)."""

    progression: ClassificationMetrics | None
    mortality: ClassificationMetrics | None
    los: ClassificationMetrics | None

    def to_dict(self) -> dict[str, dict[str, float] | None]:
        """JSON-ready form."""
        return {
            task: None if m is None else dataclasses.asdict(m)
            for task, m in (
                ("progression", self.progression),
                ("mortality", self.mortality),
                ("los", self.los),
            )
        }


def report_of(pred: Predictions) -> EvaluationReport:
    """Each task's metrics (§4.2) from held-out predictions."""
    known = pred.los_labels >= 0
    has_pairs = pred.progression_labels.size > 0
    return EvaluationReport(
        progression=progression_metrics(pred.progression_labels, pred.progression)
        if pred.progression is not None and has_pairs
        else None,
        mortality=binary_metrics(pred.mortality_labels, pred.mortality)
        if pred.mortality is not None
        else None,
        los=multiclass_metrics(pred.los_labels[known], pred.los[known])
        if pred.los is not None
        else None,
    )


def evaluate(
    model: DiPro, data: Sequence[Example], calibration: Calibration | None = None
) -> EvaluationReport:
    """Score ``data`` and compute each configured task's metrics (§4.2).

    Args:
        model: The network (on its device).
        data: Batches with targets.
        calibration: Applied to the probabilities when given.
    """
    return report_of(predict(model, data, calibration))


def write_metrics_json(report: EvaluationReport, path: Path) -> None:
    """Write an evaluation report as JSON (NaN written as null)."""
    data = json.loads(json.dumps(report.to_dict()).replace("NaN", "null"))
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
