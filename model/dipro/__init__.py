"""DiPro: multimodal disease-progression modelling from sequential chest X-rays and EHR.

Pure PyTorch re-implementation of Liu et al., NeurIPS 2025 (arXiv 2510.11112); see
``model/MODEL_CARD.md`` and ``shared/dipro_reference.md``. Imports only torch, numpy and the
standard library.
"""

from __future__ import annotations

from dipro.batch import DiproBatch, DiproTargets
from dipro.config import DiproConfig, LossWeights, default_config, paper_config
from dipro.network import DiPro, DiproOutput

__all__ = [
    "DiPro",
    "DiproBatch",
    "DiproConfig",
    "DiproOutput",
    "DiproTargets",
    "LossWeights",
    "default_config",
    "paper_config",
]
