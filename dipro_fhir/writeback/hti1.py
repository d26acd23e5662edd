"""The model card mapped to the source attributes US HTI-1 asks of predictive DSIs.

45 CFR 170.315(b)(11)(iv)(B) (ONC HTI-1 final rule, 2024) lists source attributes a
predictive decision support intervention must make available to users, in nine groups.
This module maps what the DiPro model card (``dipro.checkpoint.ModelCard``) records onto
them. Attributes the card cannot answer are listed with ``value`` ``None`` and
``source`` ``"site"``: the deploying site completes them (for example external validation,
which a checkpoint cannot know). Nothing is invented: every non-empty value is a card field
or a fact computed from one (which protected-characteristic variables are input features).

The table is documented in ``docs/governance.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

REGULATION: Final[str] = "45 CFR 170.315(b)(11)(iv)(B)"
#: Prefixes of ``ModelCard.demographic_columns`` that are (b)(11)(iv)(A)(5)-(13) data.
_PROTECTED_PREFIXES: Final[dict[str, str]] = {
    "race_": "race",
    "ethnicity_": "ethnicity",
    "language_": "language",
    "gender_": "sex",
    "sex_": "sex",
    "age": "date of birth (as age)",
}

#: (group, attribute, card field or None). ``None``: the site must complete it.
ATTRIBUTES: Final[tuple[tuple[str, str, str | None], ...]] = (
    ("details", "name and contact of the developer", None),
    ("details", "funding source of the intervention's development", None),
    ("details", "description of the value the intervention produces as an output", "tasks"),
    ("purpose", "intended use of the intervention", "intended_use"),
    ("purpose", "intended patient population", "intended_use"),
    ("purpose", "intended user", "intended_use"),
    ("purpose", "intended decision-making role", "intended_use"),
    ("out-of-scope", "tasks, situations or populations where use is cautioned", "intended_use"),
    ("out-of-scope", "known risks, inappropriate settings and uses", None),
    ("out-of-scope", "known limitations", "intended_use"),
    ("development", "exclusion and inclusion criteria of the training data", "training_data"),
    ("development", "use of (A)(5)-(13) variables as input features", "demographic_columns"),
    ("development", "demographic representativeness of the training data", None),
    ("development", "relevance of training data to the intended deployed setting", None),
    ("fairness", "approach to ensure the intervention is fair", None),
    ("fairness", "approaches to manage, reduce or eliminate bias", None),
    ("external-validation", "data source, clinical setting or environment of validation", None),
    ("external-validation", "party that conducted the external testing", None),
    ("external-validation", "demographic representativeness of the external data", None),
    ("external-validation", "description of the external validation process", None),
    ("performance", "validity of prediction in test data", "metrics"),
    ("performance", "fairness of prediction in test data", None),
    ("performance", "validity of prediction in external data", None),
    ("performance", "fairness of prediction in external data", None),
    ("performance", "references to evaluation of use on outcomes", None),
    ("maintenance", "update and continued validation or fairness assessment schedule", None),
    ("maintenance", "validity of prediction in local data", None),
    ("maintenance", "fairness of prediction in local data", None),
    (
        "identity",
        "model version and weights digest (not an HTI-1 item; for traceability)",
        "version",
    ),
)


def protected_inputs(columns: Any) -> list[str]:
    """Return which (b)(11)(iv)(A)(5)-(13) characteristics the input columns carry."""
    found: list[str] = []
    for column in columns or ():
        for prefix, label in _PROTECTED_PREFIXES.items():
            if str(column).startswith(prefix) and label not in found:
                found.append(label)
    return found


def _value(card: Mapping[str, Any], field: str | None) -> Any:
    if field is None:
        return None
    if field == "demographic_columns":
        if "demographic_columns" not in card:
            return None
        return {"characteristics": protected_inputs(card["demographic_columns"])}
    if field == "version":
        return {"version": card.get("version"), "weights_sha256": card.get("weights_sha256")}
    value = card.get(field)
    return value if value not in (None, "", [], {}) else None


def source_attributes(card: Mapping[str, Any]) -> dict[str, Any]:
    """Map a model card (its JSON fields) to the HTI-1 source attributes.

    Returns:
        ``{"regulation", "model", "attributes": [{"group", "attribute", "card_field",
        "value", "source"}]}``; ``source`` is ``"model-card"`` when the card answers,
        ``"site"`` when the deploying site must.
    """
    rows = []
    for group, attribute, field in ATTRIBUTES:
        value = _value(card, field)
        rows.append(
            {
                "group": group,
                "attribute": attribute,
                "card_field": field,
                "value": value,
                "source": "model-card" if value is not None else "site",
            }
        )
    return {
        "regulation": REGULATION,
        "model": f"{card.get('name', '?')} {card.get('version', '?')}",
        "attributes": rows,
    }
