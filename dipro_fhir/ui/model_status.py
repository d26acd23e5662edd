"""A night's model and its validation status, from the configured checkpoint's model card.

The results database holds a run's model name and version only; the card (intended use,
validation record) is the checkpoint's (``DIPRO_MODEL__CHECKPOINT``). It is shown for a night
only when the card is of that night's name and version; otherwise the page says whose card
is configured. The status is the validation gate's own verdict
(:func:`~dipro_fhir.scoring.gate.validation_problems` with the site's minimums), so the page
and the scoring tasks never disagree. Cards are read once per file change (reading one imports
torch: :mod:`dipro.checkpoint`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dipro_fhir.core.errors import ModelContractError
from dipro_fhir.core.settings import ModelSettings

if TYPE_CHECKING:
    from dipro.checkpoint import ModelCard

#: Words in a card's intended use that mark a model as not for clinical use.
NOT_CLINICAL = "not for clinical use"


@dataclass(frozen=True, slots=True)
class ModelStatus:
    """What the page says about a night's model.

    Attributes:
        name, version: The night's model (from the runs table).
        card: Whether the configured checkpoint's card is this model's.
        note: Why there is no card to show (empty when ``card``).
        problems: The validation gate's objections (empty: it passes).
        validated_patients: Held-out patients of the validation record, if any.
        validation_source: Where they came from (the record's ``patients.source.site``).
        intended_use: The card's intended use, as written.
        record: The card's validation record (for its figures table).
    """

    name: str
    version: str
    card: bool
    note: str = ""
    problems: tuple[str, ...] = ()
    validated_patients: int | None = None
    validation_source: str = ""
    intended_use: str = ""
    record: dict[str, Any] | None = None

    @property
    def validated(self) -> bool:
        return self.card and not self.problems

    @property
    def clinical_use(self) -> bool:
        """False when the card says the model is not for clinical use."""
        return NOT_CLINICAL not in self.intended_use.lower()


_CARDS: dict[tuple[str, int], ModelCard] = {}


def _card(checkpoint: Path) -> ModelCard:
    from dipro.checkpoint import CARD_FILE
    from dipro_fhir.scoring.card import read_model_card

    key = (str(checkpoint.resolve()), (checkpoint / CARD_FILE).stat().st_mtime_ns)
    if key not in _CARDS:
        _CARDS[key] = read_model_card(checkpoint)
    return _CARDS[key]


def model_status(model: ModelSettings, name: str, version: str) -> ModelStatus:
    """The status of model ``name`` ``version`` as the configured checkpoint's card tells it."""
    from dipro_fhir.scoring.gate import validation_problems

    try:
        card = _card(model.checkpoint)
    except (OSError, ModelContractError) as exc:
        note = f"the configured checkpoint's model card cannot be read ({type(exc).__name__})"
        return ModelStatus(name, version, card=False, note=note)
    if (card.name, card.version) != (name, version):
        note = (
            f"the configured checkpoint is {card.name} {card.version}; the card of "
            f"{name} {version} is not at hand (DIPRO_MODEL__CHECKPOINT)"
        )
        return ModelStatus(name, version, card=False, note=note)
    record = card.validation or None
    patients = (record or {}).get("patients", {})
    return ModelStatus(
        name,
        version,
        card=True,
        problems=tuple(validation_problems(card, model)),
        validated_patients=patients.get("examples"),
        validation_source=str(patients.get("source", {}).get("site", "")),
        intended_use=card.intended_use,
        record=record,
    )
