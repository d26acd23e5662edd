"""Checkpoints for tests that exercise the pipeline, not the model.

``write_tiny_checkpoint`` copies the demo checkpoint shipped with the package (trained and
validated, so the scoring gate lets it score) under the name and version a test asks for;
``write_untrained_checkpoint`` saves a freshly initialised network with no validation record,
which the gate must refuse.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path


def write_tiny_checkpoint(
    directory: Path, *, name: str = "dipro-test", version: str = "1", preprocessing: bool = True
) -> Path:
    """The shipped demo checkpoint as ``name`` ``version`` (without its preprocessing record
    when ``preprocessing`` is False)."""
    from dipro.checkpoint import read_card, write_card
    from dipro_fhir.training.demo_checkpoint import PACKAGED

    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(PACKAGED, directory)
    card = dataclasses.replace(read_card(directory), name=name, version=version)
    if not preprocessing:
        card = dataclasses.replace(card, preprocessing={})
    write_card(card, directory)
    return directory


def write_untrained_checkpoint(directory: Path, *, name: str = "dipro-untrained") -> Path:
    """A small network with random weights and no validation record."""
    from dipro.checkpoint import save_checkpoint
    from dipro.config import DiproConfig
    from dipro.network import DiPro
    from dipro_fhir.scoring.preprocess import fit_preprocessing

    return save_checkpoint(
        DiPro(DiproConfig(d_model=16, heads=2, small_cnn_width=4)),
        directory,
        name=name,
        version="0",
        preprocessing=fit_preprocessing([]).to_json(),
    )


def write_miscalibrated_checkpoint(directory: Path, *, shift: float = 2.5) -> Path:
    """The demo checkpoint whose mortality calibration is pushed ``shift`` logits up: it ranks
    patients as well as the demo, and overstates every risk (a deliberately miscalibrated
    model, for the monitor's calibration alert)."""
    from dipro.checkpoint import read_card, write_card

    write_tiny_checkpoint(directory, name="dipro-miscalibrated", version="9-miscalibrated")
    card = read_card(directory)
    calibration = dict(card.calibration)
    mortality = dict(calibration["mortality"])
    mortality["shift"] = float(mortality["shift"]) + shift
    calibration["mortality"] = mortality
    write_card(dataclasses.replace(card, calibration=calibration), directory)
    return directory
