"""Torch's threads follow the worker's share of the CPUs, or the setting."""

from __future__ import annotations

import torch

from dipro_fhir.core.threads import cpu_count, cpu_share, use_torch_threads


def test_the_share_is_the_cpus_over_the_load_and_at_least_one() -> None:
    cpus = cpu_count()
    assert cpus >= 1
    assert cpu_share(load=0.0) == cpus  # an idle machine: every CPU
    assert cpu_share(load=1.0) == cpus  # this process alone
    assert cpu_share(load=3.0 * cpus) == 1  # two busy processes per CPU beside it
    assert 1 <= cpu_share() <= cpus


def test_the_setting_wins_and_the_threads_are_set() -> None:
    before = torch.get_num_threads()
    try:
        assert use_torch_threads(3) == 3
        assert torch.get_num_threads() == 3
        share = use_torch_threads(None)
        assert torch.get_num_threads() == share
        assert 1 <= share <= cpu_count()
    finally:
        torch.set_num_threads(before)
