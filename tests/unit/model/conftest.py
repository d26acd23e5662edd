"""Fixtures for the DiPro network tests: a tiny config and small synthetic batches."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
import torch

from dipro import DiPro, DiproBatch, DiproConfig, DiproTargets, default_config
from dipro.synthetic import SyntheticSpec, make_synthetic


@pytest.fixture(autouse=True)
def _seeded() -> Iterator[None]:
    """Every model test starts from the same RNG state with few threads (shared CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_config() -> DiproConfig:
    """A 3-task network small enough for sub-second forwards (8 px crops, D=16)."""
    return dataclasses.replace(
        default_config(), crop_size=8, d_model=16, heads=2, small_cnn_width=4
    )


@pytest.fixture
def tiny_model(tiny_config: DiproConfig) -> DiPro:
    """The tiny network in eval mode."""
    return DiPro(tiny_config).eval()


def synthetic(patients: int, seed: int = 0, **kwargs: int) -> tuple[DiproBatch, DiproTargets]:
    """A small synthetic cohort with 8 px crops."""
    spec = SyntheticSpec(patients=patients, crop_size=8, hours=12, **kwargs)  # type: ignore[arg-type]
    return make_synthetic(spec, seed)
