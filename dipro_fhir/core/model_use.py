"""What a model card says about the use of its scores: clinical use excluded, validated or not.

Everyone who shows a score to a person needs the same two answers from the checkpoint's
``model_card.json`` (``dipro.checkpoint.ModelCard``):

* **Intended use** (card field ``intended_use``, free text): a card whose text excludes
  clinical use ("not for clinical use", "research use only", ...; the shipped demo card says
  "NOT FOR CLINICAL USE") makes every score a demonstration; a card that states no
  intended use at all is treated with the same caution.
* **Validation** (card field ``validation``, the evaluation record of
  :mod:`dipro_fhir.evaluation.evaluate`): a record of these weights (its
  ``checkpoint.weights_sha256`` is the card's) says on how many held-out patients, from
  which source and when; no record, or one of other weights, is "not validated". Whether
  the figures pass the site's minimums is the scoring gate's question
  (:mod:`dipro_fhir.scoring.gate`), asked before any score is made.

The RiskAssessment (a ``note`` and its narrative), the model's ``Device`` (``safety``, an
element the AI Transparency IG's AI-Device profile marks must-support) and the CDS Hooks
cards all say what :func:`model_use` finds, in the words of :meth:`ModelUse.cautions`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

#: Phrases of an intended-use text that exclude clinical use (matched case-insensitively).
NOT_CLINICAL: Final[re.Pattern[str]] = re.compile(
    r"not\s+for\s+clinical\s+use|not\s+(intended\s+)?for\s+(clinical|diagnostic)|"
    r"research\s+use\s+only|for\s+research\s+only|demonstration\s+(and\s+[\w\s]+\s+)?only",
    re.IGNORECASE,
)
NOT_FOR_CLINICAL_USE: Final[str] = "NOT FOR CLINICAL USE"
NOT_VALIDATED: Final[str] = "NOT VALIDATED"
USE_UNSTATED: Final[str] = "INTENDED USE NOT STATED"
CARD_MISSING: Final[str] = "MODEL CARD NOT AT HAND"


@dataclass(frozen=True, slots=True)
class ModelUse:
    """The use a model card allows its scores.

    Attributes:
        model: ``name version`` of the model.
        card_at_hand: Whether the card was read (``False``: nothing is known).
        intended_use: The card's intended-use text (``""``: not stated).
        clinical_use_excluded: The intended use excludes clinical use.
        validated: The card holds a validation record of these weights.
        validation_patients: Held-out patients of that record (``None``: not validated).
        validation_source: Where they came from, as the record says (``""``: not said).
        validation_date: The record's date, ``YYYY-MM-DD`` (``""``: not said).
    """

    model: str
    card_at_hand: bool
    intended_use: str = ""
    clinical_use_excluded: bool = False
    validated: bool = False
    validation_patients: int | None = None
    validation_source: str = ""
    validation_date: str = ""

    @property
    def cautions(self) -> tuple[str, ...]:
        """The markings a reader must see, most serious first (empty: none)."""
        if not self.card_at_hand:
            return (CARD_MISSING,)
        found = []
        if self.clinical_use_excluded:
            found.append(NOT_FOR_CLINICAL_USE)
        elif not self.intended_use:
            found.append(USE_UNSTATED)
        if not self.validated:
            found.append(NOT_VALIDATED)
        return tuple(found)

    @property
    def validation_text(self) -> str:
        """One line on the validation: on how many patients, from where, when."""
        if not self.card_at_hand:
            return "validation unknown (the model card was not at hand)"
        if not self.validated:
            return "not validated (the model card holds no validation record of these weights)"
        where = f" ({self.validation_source})" if self.validation_source else ""
        when = f", recorded {self.validation_date}" if self.validation_date else ""
        return f"validated on {self.validation_patients} held-out patients{where}{when}"

    def statement(self) -> str:
        """The whole finding in a few sentences, cautions first: what a note or a card says."""
        sentences = [f"{'; '.join(self.cautions)}."] if self.cautions else []
        sentences.append(f"Model {self.model}.")
        if self.intended_use:
            sentences.append(f"Intended use (model card): {_sentence(self.intended_use)}")
        elif self.card_at_hand:
            sentences.append("The model card states no intended use.")
        sentences.append(f"Validation: {self.validation_text}.")
        return " ".join(sentences)


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else f"{text}."


def model_use(card: Mapping[str, Any] | None, model: str = "") -> ModelUse:
    """Read the use of a model from its card (the ``model_card.json`` fields).

    Args:
        card: The card's JSON fields; ``None`` or a card without ``weights_sha256`` (only
            a name and version known): the card was not at hand.
        model: ``name version``, when the card does not say.
    """
    label = model or f"{(card or {}).get('name', '?')} {(card or {}).get('version', '?')}"
    if not card or not card.get("weights_sha256") or "intended_use" not in card:
        return ModelUse(label, card_at_hand=False)
    intended = " ".join(str(card.get("intended_use") or "").split())
    record = card.get("validation")
    record = record if isinstance(record, Mapping) else {}
    checkpoint = record.get("checkpoint")
    of_these = isinstance(checkpoint, Mapping) and (
        checkpoint.get("weights_sha256") == card.get("weights_sha256")
    )
    patients = record.get("patients")
    patients = patients if isinstance(patients, Mapping) else {}
    source = patients.get("source")
    site = str(source.get("site") or "") if isinstance(source, Mapping) else ""
    examples = patients.get("examples")
    validated = bool(record) and of_these and isinstance(examples, int) and examples > 0
    return ModelUse(
        model=label,
        card_at_hand=True,
        intended_use=intended,
        clinical_use_excluded=bool(NOT_CLINICAL.search(intended)),
        validated=validated,
        validation_patients=examples if validated and isinstance(examples, int) else None,
        validation_source=site if validated else "",
        validation_date=str(record.get("created") or "")[:10] if validated else "",
    )
