"""Checkpoints: a weights file plus a JSON model card that must match the code to load.

``weights.pt`` is ``torch.save`` of the state dict (safetensors is not available); it loads with
``weights_only=True`` (no pickled code) and ``mmap=True`` (fast, lazy). ``model_card.json``
holds the config, the vocabulary lists that fix every tensor axis, the tasks, free-form
training-data and intended-use text, metrics, the caller's ``preprocessing`` dict (e.g.
normalisation statistics), the ``calibration`` maps fitted on the validation split
(``dipro.calibration``), the ``validation`` figures measured on held-out patients, and the
SHA-256 of the weights file. Loading refuses a card whose lists, config fields or hash differ
from the code with ``CheckpointMismatch``; so does a card of an older format, which has no
calibration or validation record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import torch

from dipro.config import DiproConfig
from dipro.network import DiPro
from dipro.vocab import (
    DEMOGRAPHIC_COLUMNS,
    FINDINGS,
    LOS_BINS,
    PROGRESSION_CLASSES,
    REGIONS,
    VARIABLES,
)

WEIGHTS_FILE: Final[str] = "weights.pt"
CARD_FILE: Final[str] = "model_card.json"
CARD_FORMAT: Final[int] = 2

_VOCAB: Final[dict[str, tuple[str, ...]]] = {
    "variables": VARIABLES,
    "regions": REGIONS,
    "findings": FINDINGS,
    "progression_classes": PROGRESSION_CLASSES,
    "demographic_columns": DEMOGRAPHIC_COLUMNS,
    "los_bins": LOS_BINS,
}


class CheckpointMismatch(ValueError):
    """The checkpoint does not fit this code (vocabulary, config fields or weights hash)."""


@dataclass(frozen=True, slots=True)
class ModelCard:
    """The JSON card stored next to the weights.

    Attributes:
        name: Model name, e.g. ``dipro-demo``.
        version: Model version string.
        config: The network configuration.
        tasks: Tasks with a head (equals ``config.tasks``).
        variables, regions, findings, progression_classes, demographic_columns, los_bins:
            The axis vocabularies the weights were trained with.
        training_data: Free-form description of the training data.
        intended_use: Free-form intended use and limits.
        metrics: Metric name -> value (e.g. ``"progression/auroc"``).
        preprocessing: Caller's free-form preprocessing record (JSON values).
        calibration: ``dipro.calibration.Calibration.to_json()``; empty: uncalibrated.
        validation: The figures measured on held-out patients (the integration's
            evaluation record); empty: never validated.
        weights_sha256: Hex SHA-256 of the weights file.
        format_version: Card layout version.
    """

    name: str
    version: str
    config: DiproConfig
    tasks: tuple[str, ...]
    variables: tuple[str, ...] = VARIABLES
    regions: tuple[str, ...] = REGIONS
    findings: tuple[str, ...] = FINDINGS
    progression_classes: tuple[str, ...] = PROGRESSION_CLASSES
    demographic_columns: tuple[str, ...] = DEMOGRAPHIC_COLUMNS
    los_bins: tuple[str, ...] = LOS_BINS
    training_data: str = ""
    intended_use: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    format_version: int = CARD_FORMAT

    def to_json(self) -> str:
        """Serialise to indented JSON."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["config"] = self.config.to_dict()
        return json.dumps(data, indent=2, sort_keys=False) + "\n"


def hash_file(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(
    model: DiPro,
    directory: Path,
    *,
    name: str,
    version: str,
    training_data: str = "",
    intended_use: str = "",
    metrics: dict[str, float] | None = None,
    preprocessing: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
    validation: dict[str, Any] | None = None,
) -> Path:
    """Write ``weights.pt`` and ``model_card.json`` into ``directory`` (created if needed).

    Both files are written to temporary names and renamed, so a reader never sees half a
    checkpoint.

    Args:
        model: The network to save (its config goes into the card).
        directory: Destination folder.
        name: Model name.
        version: Model version.
        training_data: Description of the training data.
        intended_use: Intended use and limits.
        metrics: Evaluation metrics to record.
        preprocessing: The caller's preprocessing record (must be JSON-serialisable).
        calibration: The calibration maps (``Calibration.to_json()``).
        validation: Figures measured on held-out patients.

    Returns:
        The checkpoint directory.
    """
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS_FILE
    tmp = directory / (WEIGHTS_FILE + ".tmp")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, tmp)
    os.replace(tmp, weights)
    card = ModelCard(
        name=name,
        version=version,
        config=model.config,
        tasks=model.config.tasks,
        training_data=training_data,
        intended_use=intended_use,
        metrics=dict(metrics or {}),
        preprocessing=dict(preprocessing or {}),
        calibration=dict(calibration or {}),
        validation=dict(validation or {}),
        weights_sha256=hash_file(weights),
    )
    write_card(card, directory)
    return directory


def write_card(card: ModelCard, directory: Path) -> None:
    """Write ``card`` as ``model_card.json`` of ``directory``, atomically (temp + rename).

    Used by ``save_checkpoint`` and to record a later validation in an existing checkpoint
    (the weights, and so their hash, stay as they are).
    """
    tmp_card = directory / (CARD_FILE + ".tmp")
    tmp_card.write_text(card.to_json(), encoding="utf-8")
    os.replace(tmp_card, directory / CARD_FILE)


def read_card(directory: Path) -> ModelCard:
    """Read and check ``model_card.json`` against the code (not the weights hash).

    Args:
        directory: Checkpoint folder.

    Raises:
        CheckpointMismatch: On a missing card, a different vocabulary or config layout.
    """
    path = directory / CARD_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointMismatch(f"cannot read model card {path.name}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format_version") != CARD_FORMAT:
        found = data.get("format_version") if isinstance(data, dict) else None
        raise CheckpointMismatch(
            f"card format {found} != {CARD_FORMAT}: the checkpoint predates calibrated, "
            "validated checkpoints; train it again"
        )
    expected = {f.name for f in dataclasses.fields(ModelCard)}
    if set(data) != expected:
        raise CheckpointMismatch(
            f"model card fields differ: unknown {sorted(set(data) - expected)}, "
            f"missing {sorted(expected - set(data))}"
        )
    for key, code_list in _VOCAB.items():
        if tuple(data[key]) != code_list:
            raise CheckpointMismatch(f"model card '{key}' differs from dipro.vocab")
    try:
        config = DiproConfig.from_dict(data["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointMismatch(f"model card config does not fit DiproConfig: {exc}") from exc
    if tuple(data["tasks"]) != config.tasks:
        raise CheckpointMismatch("model card 'tasks' differs from its config")
    values = dict(data)
    values.update(config=config, tasks=config.tasks)
    for key in _VOCAB:
        values[key] = tuple(data[key])
    return ModelCard(**values)


def load_checkpoint(
    directory: Path, map_location: torch.device | str | None = None
) -> tuple[DiPro, ModelCard]:
    """Load a checkpoint written by ``save_checkpoint``, in eval mode.

    Args:
        directory: Checkpoint folder.
        map_location: Device for the weights (default: CPU).

    Raises:
        CheckpointMismatch: Card and code disagree, the hash differs, or the state dict
            does not fit the network the config describes.
    """
    card = read_card(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointMismatch(f"missing {WEIGHTS_FILE}")
    digest = hash_file(weights)
    if digest != card.weights_sha256:
        raise CheckpointMismatch(
            f"weights hash {digest[:12]}... differs from the card's {card.weights_sha256[:12]}..."
        )
    state = torch.load(weights, map_location=map_location or "cpu", weights_only=True, mmap=True)
    model = DiPro(card.config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointMismatch(f"weights do not fit the configured network: {exc}") from exc
    if map_location is not None:
        model = model.to(map_location)
    return model.eval(), card


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 hex digest of named tensors (names, dtypes, shapes and values, sorted by name).

    Used for ``DiPro.backbone_state()``: the digest of the weights a crop's backbone feature
    depends on, so retraining only the heads keeps cached features valid.
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def read_backbone_digest(directory: Path) -> str:
    """Digest (``state_digest``) of a checkpoint's backbone and padding weights.

    Reads the weights memory-mapped, without building the network (an extraction worker
    needs the digest to look up cached features, not the model).

    Raises:
        CheckpointMismatch: The weights file is missing or unreadable.
    """
    weights = directory / WEIGHTS_FILE
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
    except (OSError, RuntimeError) as exc:
        raise CheckpointMismatch(f"cannot read {WEIGHTS_FILE}: {exc}") from exc
    return state_digest({k: v for k, v in state.items() if k.startswith(("backbone.", "padding."))})
