"""The paper configuration's size matches the official DiPro (reference §2.9, Table 9)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from dipro import DiPro, paper_config
from dipro.backbone import ResNet50, load_imagenet_weights
from dipro.network import count_parameters
from tests.unit.model.conftest import synthetic

#: Official DP model (§2.9): 31,064,172. Ours: -1 unused interval ``sigma``, -1 unused STD
#: ``temperature`` (MODEL_CARD.md, "Parameter count").
OFFICIAL_DP = 31_064_172
OURS_DP = OFFICIAL_DP - 1 - 1

EXPECTED_DP_MODULES = {
    "backbone": 23_508_032,
    "padding": 1_505_280,
    "adapter": 525_056,
    "std": 1_576_448,
    "pae_heads": 465_941,
    "ehr_encoder": 800_512,
    "interval_encoder": 296_705 - 1,
    "region_layers": 592_640,
    "ehr_cross": 263_680,
    "final_layer": 789_760,
    "heads": 465_941,
    "static_fusion": 274_176 - 7 * 256,  # class tokens are counted separately below
}


@pytest.fixture(scope="module")
def paper_dp() -> DiPro:
    torch.manual_seed(0)
    return DiPro(paper_config("progression"))


def test_progression_paper_config_has_31_06_million_parameters(paper_dp: DiPro) -> None:
    assert count_parameters(paper_dp) == OURS_DP
    assert round(count_parameters(paper_dp) / 1e6, 2) == 31.06


def test_each_module_matches_the_official_count(paper_dp: DiPro) -> None:
    counts = {name: count_parameters(child) for name, child in paper_dp.named_children()}
    assert counts == EXPECTED_DP_MODULES
    assert paper_dp.class_tokens.numel() == 7 * 256
    assert paper_dp.region_embedding is None  # off in the paper configs


def test_mortality_and_los_paper_configs_match_the_official_counts() -> None:
    assert count_parameters(DiPro(paper_config("mortality"))) == 31_255_384 - 2
    assert count_parameters(DiPro(paper_config("los"))) == 26_568_667 - 2


def test_resnet50_uses_torchvision_parameter_names(paper_dp: DiPro, tmp_path: Path) -> None:
    keys = list(paper_dp.backbone.state_dict())
    assert len(keys) == 318  # torchvision resnet50 has 320 with fc.weight and fc.bias
    for key in (
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.downsample.0.weight",
        "layer3.5.conv2.weight",
        "layer4.2.bn3.running_var",
    ):
        assert key in keys
    state = {
        k: torch.randn_like(v.float()).to(v.dtype)
        for k, v in paper_dp.backbone.state_dict().items()
    }
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    torch.save(state, tmp_path / "resnet50.pth")
    fresh = ResNet50()
    assert load_imagenet_weights(fresh, tmp_path / "resnet50.pth") == ["fc.weight", "fc.bias"]
    assert torch.equal(fresh.layer2[1].conv1.weight, state["layer2.1.conv1.weight"])
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match=r"extra\.weight"):
        load_imagenet_weights(ResNet50(), tmp_path / "bad.pth")


def test_resnet50_network_runs_on_small_grayscale_crops() -> None:
    config = dataclasses.replace(paper_config("progression"), crop_size=32)
    model = DiPro(config).eval()
    batch, _ = synthetic(1, min_cxrs=2, max_cxrs=2)
    crops = torch.nn.functional.interpolate(batch.cxr_crops.flatten(0, 2), size=32)
    batch = dataclasses.replace(batch, cxr_crops=crops.reshape(1, 2, 10, 1, 32, 32))
    out = model(batch)
    assert out.progression is not None
    assert out.progression.shape == (1, 7, 3)
    assert bool(torch.isfinite(out.progression).all())
