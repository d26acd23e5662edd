"""The checkpoint's model card, for the steps that need only its name, version, tasks or
config (planning, extraction, the run's end, bulk runs, retraction, ``check``): what
``dipro.checkpoint.read_card`` reads, with this package's error and the setting to fix."""

from __future__ import annotations

from pathlib import Path

from dipro.checkpoint import CheckpointMismatch, ModelCard, read_card
from dipro_fhir.core.errors import ModelContractError


def read_model_card(checkpoint: Path) -> ModelCard:
    """The model card of the checkpoint folder ``checkpoint``, checked against the code.

    Raises:
        ModelContractError: The card is missing, unreadable, or does not fit this code.
    """
    try:
        return read_card(checkpoint)
    except CheckpointMismatch as exc:
        raise ModelContractError(
            f"checkpoint {checkpoint}: {exc} (DIPRO_MODEL__CHECKPOINT names the folder)"
        ) from exc
