"""Named configs follow the paper's table and their JSON copies match the code."""

from __future__ import annotations

import dataclasses

import pytest

from dipro.config import CONFIG_DIR, DiproConfig, load_config_json, named_configs, paper_config


def test_json_copies_in_model_configs_equal_the_named_configs() -> None:
    for name, config in named_configs().items():
        assert load_config_json(CONFIG_DIR / f"{name}.json") == config


def test_paper_configs_follow_the_reference_table() -> None:
    dp, mort, los = (paper_config(t) for t in ("progression", "mortality", "los"))
    assert (dp.d_model, dp.local_fusion_layers, dp.learning_rate) == (256, 1, 1.6e-4)
    assert (mort.d_model, mort.local_fusion_layers, mort.learning_rate) == (256, 2, 1.6e-4)
    assert (los.d_model, los.local_fusion_layers, los.learning_rate) == (128, 1, 1.28e-4)
    assert dp.loss_weights.dynamic_order == 2.0
    assert mort.loss_weights.orthogonality == 0.1
    assert los.loss_weights.orthogonality == 0.001
    assert los.loss_weights.los == 10.0
    assert all(c.backbone == "resnet50" and c.crop_size == 224 for c in (dp, mort, los))


def test_dict_round_trip_and_unknown_fields_are_refused() -> None:
    config = paper_config("los")
    assert DiproConfig.from_dict(config.to_dict()) == config
    data = config.to_dict() | {"extra": 1}
    with pytest.raises(ValueError, match="extra"):
        DiproConfig.from_dict(data)


def test_invalid_tasks_are_refused() -> None:
    with pytest.raises(ValueError, match="tasks"):
        dataclasses.replace(paper_config("los"), tasks=("los", "mortality"))
    with pytest.raises(ValueError, match="tasks"):
        dataclasses.replace(paper_config("los"), tasks=("sepsis",))
