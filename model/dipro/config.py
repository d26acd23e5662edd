"""DiPro's configuration: one frozen dataclass stored inside every checkpoint.

The per-task configurations are the ones the paper ran (reference §2.1, the run script that
matches Table 16), not the YAML defaults the official repository ships. ``default_config`` is a
small network for CPU work (tests, the synthetic demo). Each named config is also stored as JSON
in ``model/configs/`` so a reviewer can read it without running Python.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from dipro.vocab import DEMOGRAPHIC_COLUMNS, FINDINGS, LOS_BINS, REGIONS, TASKS, VARIABLES

BACKBONES: Final[tuple[str, ...]] = ("small_cnn", "resnet50")

#: Folder with the JSON copies of the named configs (``model/configs``).
CONFIG_DIR: Final[Path] = Path(__file__).resolve().parent.parent / "configs"


#: Fields added after checkpoints were shipped, with the value that rebuilds the network those
#: checkpoints were trained with; a card without such a field loads with this value.
_ADDED_LATER: Final[dict[str, Any]] = {"summary_path": False}


@dataclass(frozen=True, slots=True)
class LossWeights:
    """Weights of the loss terms (reference §2.8, code form of the total loss).

    Attributes:
        progression: λ_CE for the disease-progression head.
        mortality: λ_CE for the mortality head.
        los: λ_CE for the length-of-stay head.
        orthogonality: λ_orth, static vs dynamic cosine² (§2.3).
        temporal_consistency: λ_cons / λ_temp, static features of adjacent pairs (§2.3).
        static_order: λ_static_order, static features unchanged under reversal (§2.4).
        dynamic_order: λ_dynamic_order / λ_PAE, region dynamics flip under reversal (§2.4).
    """

    progression: float = 2.0
    mortality: float = 6.0
    los: float = 10.0
    orthogonality: float = 1.0
    temporal_consistency: float = 1.0
    static_order: float = 0.5
    dynamic_order: float = 0.1


@dataclass(frozen=True, slots=True)
class DiproConfig:
    """Every hyperparameter of the network and of its training (nanoGPT-style, in the checkpoint).

    Attributes:
        name: Name of this configuration (e.g. ``paper-progression``).
        tasks: Heads to build, a subset of ``vocab.TASKS`` in that order.
        backbone: ``"small_cnn"`` (CPU default) or ``"resnet50"`` (paper, §2.2).
        crop_size: Side of a square region crop in pixels (paper: 224).
        in_channels: Channels of the crops given to the model (1 = grayscale).
        d_model: Width D of every token (§2.1).
        local_fusion_layers: Region-aware attention layers (§2.6c; code's layers // 2).
        heads: Attention heads everywhere (§2.1: 8).
        ffn_mult: Feed-forward width as a multiple of D (§2.1: 4).
        group_num: Prototype count K of the group embedding (§2.5: 8).
        max_cxrs: Most CXRs per patient the network accepts (§1.3: at most 6 in 48 h).
        num_regions: Anatomical regions R (``vocab.REGIONS``).
        num_variables: EHR variables V (``vocab.VARIABLES``).
        num_demographics: Demographic columns (``vocab.DEMOGRAPHIC_COLUMNS``).
        num_findings: Findings of the progression task (``vocab.FINDINGS``).
        num_los_bins: Length-of-stay classes (``vocab.LOS_BINS``).
        ehr_mask_channels: Feed the observation mask next to the values (the paper's code
            does not, reference §7.1.5; our default CPU config does).
        region_embedding: Add a learned per-region embedding to the dynamic region tokens so
            class tokens can tell regions apart by position, not only by appearance (not in
            the paper; the paper configs leave it off for parameter fidelity).
        summary_path: Add linear logits from per-variable window statistics and the
            demographics to every head (``dipro.summary``; not in the paper, off in the paper
            configs and by default; the demo checkpoint turns it on).
        small_cnn_width: Channels of the first small-CNN stage (unused by ResNet-50).
        dropout: Dropout everywhere (§2.1: 0.1).
        loss_weights: Weights of the loss terms.
        learning_rate: AdamW learning rate (the paper's effective lr, §2.1 and §7.1.13).
        weight_decay: AdamW weight decay (§4.1: torch default 0.01).
        batch_size: Batch size the paper used (micro-batch; effective batch is x4).
    """

    name: str = "default"
    tasks: tuple[str, ...] = TASKS
    backbone: str = "small_cnn"
    crop_size: int = 32
    in_channels: int = 1
    d_model: int = 32
    local_fusion_layers: int = 1
    heads: int = 4
    ffn_mult: int = 4
    group_num: int = 8
    max_cxrs: int = 6
    num_regions: int = len(REGIONS)
    num_variables: int = len(VARIABLES)
    num_demographics: int = len(DEMOGRAPHIC_COLUMNS)
    num_findings: int = len(FINDINGS)
    num_los_bins: int = len(LOS_BINS)
    ehr_mask_channels: bool = True
    region_embedding: bool = True
    direct_demographics: bool = True
    summary_path: bool = False
    small_cnn_width: int = 16
    dropout: float = 0.1
    loss_weights: LossWeights = field(default_factory=LossWeights)
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 16

    def __post_init__(self) -> None:
        if not self.tasks or any(t not in TASKS for t in self.tasks):
            raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {self.tasks}")
        if tuple(t for t in TASKS if t in self.tasks) != self.tasks:
            raise ValueError(f"tasks must follow the order of {TASKS}, got {self.tasks}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.d_model % self.heads != 0:
            raise ValueError("d_model must be divisible by heads")
        if self.max_cxrs < 2:
            raise ValueError("max_cxrs must be at least 2 (one pair)")
        if self.in_channels not in (1, 3):
            raise ValueError("in_channels must be 1 (grayscale) or 3")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiproConfig:
        """Build a config from ``to_dict`` output; unknown or missing fields raise ``ValueError``
        (except the fields of ``_ADDED_LATER``, which older cards lack).

        Args:
            data: The mapping read from a JSON model card or config file.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        data = {**{k: v for k, v in _ADDED_LATER.items() if k not in data}, **data}
        if set(data) != names:
            raise ValueError(
                f"config fields differ from the code: unknown {sorted(set(data) - names)}, "
                f"missing {sorted(names - set(data))}"
            )
        weights = dict(data["loss_weights"])
        weight_names = {f.name for f in dataclasses.fields(LossWeights)}
        if set(weights) != weight_names:
            raise ValueError(f"loss_weights fields differ from the code: {sorted(weights)}")
        values = dict(data)
        values["tasks"] = tuple(values["tasks"])
        values["loss_weights"] = LossWeights(**weights)
        return cls(**values)


def default_config(tasks: tuple[str, ...] = TASKS) -> DiproConfig:
    """Return the small CPU configuration (small CNN, D=32, 32 px crops).

    Args:
        tasks: Heads to build.
    """
    return DiproConfig(name="default", tasks=tasks)


_PAPER: Final[dict[str, dict[str, Any]]] = {
    # Reference §2.1 table: D, code layers // 2, batch, effective lr, λs.
    "progression": {
        "d_model": 256,
        "local_fusion_layers": 1,
        "batch_size": 8,
        "learning_rate": 1.6e-4,
        "loss_weights": LossWeights(2.0, 6.0, 10.0, 1.0, 0.0, 0.5, 2.0),
    },
    "mortality": {
        "d_model": 256,
        "local_fusion_layers": 2,
        "batch_size": 4,
        "learning_rate": 1.6e-4,
        "loss_weights": LossWeights(2.0, 6.0, 10.0, 0.1, 1.0, 0.5, 0.1),
    },
    "los": {
        "d_model": 128,
        "local_fusion_layers": 1,
        "batch_size": 4,
        "learning_rate": 1.28e-4,
        "loss_weights": LossWeights(2.0, 6.0, 10.0, 0.001, 0.1, 0.5, 0.1),
    },
}


def paper_config(task: str) -> DiproConfig:
    """Return the configuration the paper ran for one task (ResNet-50, 224 px, §2.1).

    The three λ_CE values sit side by side so a multi-task network can reuse them; in the
    paper's single-task run only the matching one has an effect.

    Args:
        task: One of ``vocab.TASKS``.
    """
    if task not in _PAPER:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    return DiproConfig(
        name=f"paper-{task}",
        tasks=(task,),
        backbone="resnet50",
        crop_size=224,
        in_channels=1,
        heads=8,
        ffn_mult=4,
        group_num=8,
        ehr_mask_channels=False,  # §7.1.5: the paper's network never sees the mask
        region_embedding=False,
        direct_demographics=False,
        dropout=0.1,
        **_PAPER[task],
    )


def named_configs() -> dict[str, DiproConfig]:
    """Return every named configuration by name (the JSON files in ``model/configs``)."""
    configs = [default_config(), *(paper_config(t) for t in TASKS)]
    return {c.name: c for c in configs}


def load_config_json(path: Path) -> DiproConfig:
    """Read a config JSON file written by ``write_config_json``.

    Args:
        path: File to read.
    """
    return DiproConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))


def write_config_json(config: DiproConfig, path: Path) -> None:
    """Write ``config`` as indented JSON.

    Args:
        config: The configuration.
        path: Destination file.
    """
    path.write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
