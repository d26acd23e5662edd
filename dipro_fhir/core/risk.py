"""Qualitative risk from a probability, with configurable thresholds.

The codes are those of ``http://terminology.hl7.org/CodeSystem/risk-probability`` (the
preferred binding of ``RiskAssessment.prediction.qualitativeRisk`` in FHIR R4): ``low``,
``moderate``, ``high``. The same level is stored in the results database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

RISK_PROBABILITY_SYSTEM: Final[str] = "http://terminology.hl7.org/CodeSystem/risk-probability"
RISK_DISPLAY: Final[dict[str, str]] = {
    "low": "Low likelihood",
    "moderate": "Moderate likelihood",
    "high": "High likelihood",
}


@dataclass(frozen=True, slots=True)
class RiskThresholds:
    """Probability fractions at and above which a prediction is moderate, then high risk."""

    moderate_at: float = 0.2
    high_at: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.moderate_at <= self.high_at <= 1.0:
            raise ValueError("thresholds must satisfy 0 <= moderate_at <= high_at <= 1")


def classify_risk(probability: float, thresholds: RiskThresholds) -> str:
    """Return ``low``, ``moderate`` or ``high`` for a probability fraction."""
    if probability >= thresholds.high_at:
        return "high"
    if probability >= thresholds.moderate_at:
        return "moderate"
    return "low"
