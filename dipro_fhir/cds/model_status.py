"""The use the deployed checkpoint's model card allows, for the cards of its scores.

The results database records which model and version made a score, not its card. The
service reads the card of the checkpoint it is configured with (``DIPRO_MODEL__CHECKPOINT``)
and reads it again when the file changes (``dipro-fhir evaluate --record`` adds a validation
record to a deployed checkpoint). A score of another model or version gets "model card not
at hand": the service cannot say what that card allows, and says so.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from dipro.checkpoint import CARD_FILE
from dipro_fhir.core.errors import ModelContractError
from dipro_fhir.core.model_use import ModelUse, model_use
from dipro_fhir.scoring.card import read_model_card

_LOG = logging.getLogger(__name__)


class DeployedModelUse:
    """The model use of the checkpoint folder ``checkpoint`` (``None``: no checkpoint)."""

    def __init__(self, checkpoint: Path | None) -> None:
        self._checkpoint = checkpoint
        self._lock = threading.Lock()
        self._stamp: float | None = None
        self._use: ModelUse | None = None
        self._key: tuple[str, str] | None = None

    def _load(self) -> None:
        if self._checkpoint is None:
            return
        path = self._checkpoint / CARD_FILE
        try:
            stamp = path.stat().st_mtime
        except OSError:
            self._stamp, self._use, self._key = None, None, None
            return
        if stamp == self._stamp:
            return
        try:
            card = read_model_card(self._checkpoint)
        except ModelContractError as exc:
            _LOG.warning("CDS Hooks: the checkpoint's model card is unusable (%s)", exc)
            self._stamp, self._use, self._key = stamp, None, None
            return
        fields = json.loads(card.to_json())
        self._stamp, self._key = stamp, (card.name, card.version)
        self._use = model_use(fields, f"{card.name} {card.version}")

    def __call__(self, name: str, version: str) -> ModelUse:
        """The use allowed to scores of model ``name`` ``version``."""
        with self._lock:
            self._load()
            if self._use is not None and self._key == (name, version):
                return self._use
        return ModelUse(f"{name} {version}", card_at_hand=False)
