"""Labelled examples staged on disk, split by patient into train / validation / test.

Training reads its patients several times (normalisation statistics, batches, the baseline,
the test figures), so the examples are extracted once and kept in a staging folder, one
``npz`` file of timelines per chunk (:func:`dipro_fhir.core.staging.save_timelines`) plus their
labels, never all in memory. A patient's split follows from a seeded hash of its id: the same
patient always lands in the same split, whatever order the source yields patients in, and no
patient is in two splits (patients, not stays or films, are the unit).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from dipro_fhir.core import staging
from dipro_fhir.evaluation.examples import LabelledTimeline
from dipro_fhir.mapping.labels import Labels

SPLITS: Final[tuple[str, ...]] = ("train", "validation", "test")
#: Patients per staged chunk file.
CHUNK: Final[int] = 64


def split_of(patient_id: str, seed: int, shares: tuple[float, float]) -> str:
    """The split of a patient: ``train``, ``validation`` (``shares[0]``) or ``test``
    (``shares[1]``), from a seeded SHA-256 of its id."""
    digest = hashlib.sha256(f"{seed}|{patient_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < shares[0]:
        return "validation"
    if u < shares[0] + shares[1]:
        return "test"
    return "train"


@dataclass(slots=True)
class ExampleStore:
    """The staged examples of one training run (folder ``root``, a subfolder per split)."""

    root: Path
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    _chunks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))

    def write(
        self, examples: Iterable[LabelledTimeline], seed: int, shares: tuple[float, float]
    ) -> None:
        """Stage ``examples`` (streamed), each into its patient's split."""
        pending: dict[str, list[LabelledTimeline]] = {s: [] for s in SPLITS}
        for example in examples:
            split = split_of(example.timeline.patient_id, seed, shares)
            pending[split].append(example)
            if len(pending[split]) == CHUNK:
                self._flush(split, pending[split])
                pending[split] = []
        for split, rest in pending.items():
            if rest:
                self._flush(split, rest)

    def _flush(self, split: str, examples: list[LabelledTimeline]) -> None:
        folder = self.root / split
        folder.mkdir(parents=True, exist_ok=True)
        index = self._chunks[split]
        staging.save_timelines(
            str(folder / f"chunk-{index:05d}.npz"), [e.timeline for e in examples]
        )
        labels = [
            [e.labels.mortality, e.labels.los_bin, list(e.labels.progression)] for e in examples
        ]
        (folder / f"chunk-{index:05d}.labels.json").write_text(json.dumps(labels))
        self._chunks[split] = index + 1
        self.counts[split] += len(examples)

    def read(self, split: str) -> Iterator[LabelledTimeline]:
        """The examples of one split, a chunk at a time."""
        for index in range(self._chunks[split]):
            folder = self.root / split
            timelines = staging.load_timelines(str(folder / f"chunk-{index:05d}.npz"))
            labels = json.loads((folder / f"chunk-{index:05d}.labels.json").read_text())
            for timeline, (mortality, los_bin, progression) in zip(timelines, labels, strict=True):
                yield LabelledTimeline(timeline, Labels(mortality, los_bin, tuple(progression)))
