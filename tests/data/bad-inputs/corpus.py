"""The bad-input corpus: a clean synthetic cohort, then one damage per kind (README.md).

:func:`build` writes a cohort of ``BASE_PATIENTS`` patients as NDJSON and DICOM files (the
real file sources), keeps a pristine copy, and applies every kind of :data:`KINDS` to the
damaged copy. Each kind damages one patient of its own (or adds a line that belongs to no
patient) and says which problem codes may record it, and whether its patient still gets
scores. Patients no kind touches are the *good* patients: their scores must not change.

Used by ``tests/e2e/test_bad_input_corpus.py`` (CLI and DAG, on PostgreSQL). The folder
name has a hyphen, so the module is loaded by path (:func:`load`).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

AS_OF = datetime(2026, 2, 1, 2, tzinfo=UTC)
BASE_PATIENTS = 52
#: Limits the corpus runs under (small, so that small files can breach them).
LIMITS = {
    "max_json_depth": 100,
    "max_resource_bytes": 256 * 1024,
    "max_image_pixels": 40_000,
    "max_image_bytes": 100_000,
}


@dataclass(frozen=True, slots=True)
class Damage:
    """What one kind did: to whom, and which codes may record it."""

    kind: str
    patient: str | None  # None: the item belongs to no patient that can be told
    codes: frozenset[str]
    scored: bool  # whether the damaged patient is still scored


@dataclass
class Cohort:
    """The files of one corpus, and the patients' roles."""

    clean: Path
    damaged: Path
    patients: list[str]
    damages: list[Damage]

    @property
    def good(self) -> list[str]:
        touched = {d.patient for d in self.damages}
        return [p for p in self.patients if p not in touched]


class _Files:
    """Line-level edits of the NDJSON files and the DICOM folder of one cohort."""

    def __init__(self, root: Path, truth: dict[str, Any]) -> None:
        self.root, self.truth = root, truth

    def lines(self, rtype: str) -> list[dict[str, Any]]:
        text = (self.root / f"{rtype}.ndjson").read_text().splitlines()
        return [json.loads(line) for line in text if line.strip()]

    def rewrite(
        self, rtype: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> None:
        kept = [r for r in map(change, self.lines(rtype)) if r is not None]
        (self.root / f"{rtype}.ndjson").write_text("".join(json.dumps(r) + "\n" for r in kept))

    def append_raw(self, rtype: str, raw: str) -> None:
        with (self.root / f"{rtype}.ndjson").open("a") as out:
            out.write(raw + "\n")

    def append(self, rtype: str, resource: dict[str, Any]) -> None:
        self.append_raw(rtype, json.dumps(resource))

    def newest_image(self, patient: str) -> Path:
        """The DICOM file of the patient's newest radiograph before the as-of time."""
        images = [i for i in self.truth[patient]["images"] if _time(i["acquired"]) < AS_OF]
        newest = max(images, key=lambda i: i["acquired"])
        return self.root / "dicom" / newest["study_uid"] / f"{newest['instance_uid']}.dcm"


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _observation(patient: str, oid: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": (AS_OF - timedelta(hours=3)).isoformat(),
        "issued": (AS_OF - timedelta(hours=2)).isoformat(),
        "valueQuantity": {"value": 80, "unit": "/min", "system": "http://unitsofmeasure.org"}
        | {"code": "/min"},
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"e": [value]}
    return value


def build(out: Path, kinds: ModuleType) -> Cohort:
    """Write the clean and the damaged cohort under ``out``; return their roles."""
    from dipro_fhir.synth import generate_cohort
    from dipro_fhir.synth.load import write_files

    clean = out / "clean"
    if not (clean / "Patient.ndjson").is_file():
        people = generate_cohort(
            BASE_PATIENTS,
            seed=11,
            start=AS_OF - timedelta(days=3),
            admission_span_days=2,
            reference_time=AS_OF,
        )
        write_files(people, clean, image_size=(96, 96))
    damaged = out / "damaged"
    shutil.rmtree(damaged, ignore_errors=True)
    shutil.copytree(clean, damaged)
    truth = {
        row["patient_id"]: row
        for row in map(json.loads, (clean / "truth.jsonl").read_text().splitlines())
    }
    patients = sorted(truth)
    files = _Files(damaged, truth)
    with_images = [
        p for p in patients if any(_time(i["acquired"]) < AS_OF for i in truth[p]["images"])
    ]
    plain = [p for p in patients if p not in with_images]
    image_kinds = [k for k in kinds.KINDS if k.needs_image]
    other_kinds = [k for k in kinds.KINDS if not k.needs_image]
    if len(image_kinds) > len(with_images) or len(other_kinds) > len(patients) - len(image_kinds):
        raise ValueError("the base cohort is too small for the corpus")
    damages: list[Damage] = []
    pool = with_images[len(image_kinds) :] + plain
    for kind, patient in zip(image_kinds, with_images, strict=False):
        damages.append(kind.apply(files, patient))
    for kind, patient in zip(other_kinds, pool, strict=False):
        damages.append(kind.apply(files, patient))
    return Cohort(clean, damaged, patients, damages)


def load(name: str = "kinds") -> ModuleType:
    """Import a module of this folder by path (its name has a hyphen): ``corpus`` itself
    as ``bad_inputs_corpus``, ``kinds`` as ``bad_inputs_kinds``."""
    if name != "corpus" and "bad_inputs_corpus" not in sys.modules:
        load("corpus")
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"bad_inputs_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
