"""A tiny, untrained DiPro checkpoint for tests that exercise the pipeline, not the model."""

from __future__ import annotations

from pathlib import Path


def write_tiny_checkpoint(
    directory: Path, *, name: str = "dipro-test", version: str = "1", preprocessing: bool = True
) -> Path:
    """Save a small-config network (random weights) with or without its preprocessing record."""
    from dipro.checkpoint import save_checkpoint
    from dipro.config import DiproConfig
    from dipro.network import DiPro
    from dipro_fhir.scoring.preprocess import fit_preprocessing

    return save_checkpoint(
        DiPro(DiproConfig(d_model=16, heads=2, small_cnn_width=4)),
        directory,
        name=name,
        version=version,
        preprocessing=fit_preprocessing([]).to_json() if preprocessing else None,
    )
