"""The recipe of the demo checkpoint: cohort sizes, seeds, epochs and network settings.

Kept apart from :mod:`dipro_fhir.training.demo_checkpoint` so the command line can show the
defaults without importing torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dipro.config import DiproConfig


@dataclass(frozen=True, slots=True)
class DemoTraining:
    """How the demo checkpoint is made (the defaults are the shipped one's).

    Attributes:
        patients: Synthetic patients of the training cohort (split by the trainer into
            train / validation / test).
        heldout: Patients of the held-out cohort (a seed never used in training), whose
            evaluation becomes the card's validation record.
        epochs: Most training epochs; patience: epochs without improvement before stopping.
        train_seed, heldout_seed: Seeds of the two cohorts.
        seed: Seed of the split, the network and the batch order.
        d_model, dropout, weight_decay, learning_rate, summary_path: Changes to the small
            default network (``dipro.config.default_config``), chosen on the validation
            split of the training cohort (docs/models.md).
    """

    patients: int = 3000
    heldout: int = 1000
    epochs: int = 40
    patience: int = 12
    train_seed: int = 1007
    heldout_seed: int = 4242
    seed: int = 23
    d_model: int = 64
    dropout: float = 0.3
    weight_decay: float = 0.1
    learning_rate: float = 5e-4
    summary_path: bool = True

    def config(self) -> DiproConfig:
        """The network configuration of the demo checkpoint."""
        from dipro.config import default_config

        return dataclasses.replace(
            default_config(),
            name="demo",
            d_model=self.d_model,
            dropout=self.dropout,
            weight_decay=self.weight_decay,
            learning_rate=self.learning_rate,
            summary_path=self.summary_path,
        )
