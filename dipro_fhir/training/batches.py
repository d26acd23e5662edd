"""Collated training batches on disk: a ``Sequence`` of ``(DiproBatch, DiproTargets)`` that
the trainer indexes in a new order every epoch, each batch read back when it is needed.

A batch is a ``torch.save`` file of plain tensors, loaded with ``weights_only=True`` (no
pickled code) and memory-mapped; the page cache keeps a small training set in memory
anyway, while a large one never has to fit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import overload

import torch

from dipro.batch import DiproBatch, DiproTargets
from dipro.config import DiproConfig
from dipro_fhir.evaluation.evaluate import targets_of
from dipro_fhir.evaluation.examples import LabelledTimeline
from dipro_fhir.scoring.preprocess import Preprocessing, collate

Example = tuple[DiproBatch, DiproTargets]


class DiskBatches(Sequence[Example]):
    """The batches ``batch-00000.pt`` ... of a folder."""

    def __init__(self, folder: Path, count: int) -> None:
        self.folder = folder
        self.size = count

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> Example: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Example]: ...

    def __getitem__(self, index: int | slice) -> Example | Sequence[Example]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.size))]
        if not -self.size <= index < self.size:
            raise IndexError(index)
        path = self.folder / f"batch-{index % self.size:05d}.pt"
        data = torch.load(path, weights_only=True, mmap=True)
        batch = DiproBatch(
            **{k.removeprefix("b."): v for k, v in data.items() if k.startswith("b.")}
        )
        targets = DiproTargets(
            **{k.removeprefix("t."): v for k, v in data.items() if k.startswith("t.")}
        )
        return batch, targets


def write_batches(
    examples: Iterable[LabelledTimeline],
    prep: Preprocessing,
    config: DiproConfig,
    folder: Path,
) -> DiskBatches:
    """Collate ``examples`` into batches of ``config.batch_size`` under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    group: list[LabelledTimeline] = []

    def flush() -> None:
        nonlocal count
        batch = collate(
            [g.timeline for g in group], prep, max_cxrs=config.max_cxrs, crop_size=config.crop_size
        )
        targets = targets_of(group)
        tensors = {f"b.{k}": getattr(batch, k) for k in batch.__dataclass_fields__}
        tensors |= {
            f"t.{k}": getattr(targets, k)
            for k in targets.__dataclass_fields__
            if getattr(targets, k) is not None
        }
        torch.save(tensors, folder / f"batch-{count:05d}.pt")
        count += 1
        group.clear()

    for example in examples:
        group.append(example)
        if len(group) == config.batch_size:
            flush()
    if group:
        flush()
    return DiskBatches(folder, count)
