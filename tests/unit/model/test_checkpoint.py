"""Save/load round trips exactly; a card that does not match the code is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dipro import DiPro
from dipro.checkpoint import CheckpointMismatch, load_checkpoint, save_checkpoint
from dipro.scoring import score
from tests.unit.model.conftest import synthetic


def _save(model: DiPro, tmp_path: Path) -> Path:
    return save_checkpoint(
        model,
        tmp_path / "ckpt",
        name="dipro-test",
        version="0.0.1",
        training_data="synthetic",
        intended_use="tests",
        metrics={"progression/auroc": 0.5},
        preprocessing={"ehr_mean": [0.0] * 38},
    )


def test_round_trip_gives_identical_outputs(tiny_model: DiPro, tmp_path: Path) -> None:
    batch, _ = synthetic(3, min_cxrs=0, max_cxrs=3)
    before = score(tiny_model, batch)
    loaded, card = load_checkpoint(_save(tiny_model, tmp_path))
    after = score(loaded, batch)
    assert card.config == tiny_model.config
    assert card.preprocessing == {"ehr_mean": [0.0] * 38}
    assert card.metrics == {"progression/auroc": 0.5}
    for x, y in (
        (before.progression, after.progression),
        (before.mortality, after.mortality),
        (before.los, after.los),
    ):
        assert x is not None
        assert y is not None
        assert torch.equal(x, y)


def _edit_card(directory: Path, key: str, value: object) -> None:
    path = directory / "model_card.json"
    data = json.loads(path.read_text())
    data[key] = value
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("regions", ["left_lung"] * 10, "regions"),
        ("variables", ["heart_rate"], "variables"),
        ("findings", ["atelectasis"], "findings"),
        ("weights_sha256", "0" * 64, "hash"),
        ("unexpected", 1, "fields"),
    ],
)
def test_mismatched_card_is_refused(
    tiny_model: DiPro, tmp_path: Path, key: str, value: object, message: str
) -> None:
    directory = _save(tiny_model, tmp_path)
    _edit_card(directory, key, value)
    with pytest.raises(CheckpointMismatch, match=message):
        load_checkpoint(directory)


def test_config_with_unknown_field_is_refused(tiny_model: DiPro, tmp_path: Path) -> None:
    directory = _save(tiny_model, tmp_path)
    config = json.loads((directory / "model_card.json").read_text())["config"]
    config["rotary_embeddings"] = True
    _edit_card(directory, "config", config)
    with pytest.raises(CheckpointMismatch, match="rotary_embeddings"):
        load_checkpoint(directory)


def test_weights_changed_after_saving_are_refused(tiny_model: DiPro, tmp_path: Path) -> None:
    directory = _save(tiny_model, tmp_path)
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    state["class_tokens"] += 1
    torch.save(state, directory / "weights.pt")
    with pytest.raises(CheckpointMismatch, match="hash"):
        load_checkpoint(directory)
