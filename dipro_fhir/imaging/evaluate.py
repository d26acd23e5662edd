"""``dipro-fhir regions``: run a locator and quality control on a folder of films, draw them,
and measure them against annotated boxes (issue 11).

For every ``*.png`` / ``*.dcm`` under the folder: decode as the pipeline does
(:func:`~dipro_fhir.imaging.decode.decode_radiograph`; a PNG, 8/16-bit grayscale taken as
display-oriented, as a DICOM without display window), locate,
check (:mod:`dipro_fhir.imaging.qc`), time both, and write ``<out>/overlays/<name>.png``
(flagged regions drawn thin with ``!``), ``<out>/closeups/<name>.png`` (the hila and
costophrenic angles zoomed, with the annotated boxes in cyan when there is a truth file:
:func:`~dipro_fhir.imaging.overlay.closeups`) and ``<out>/regions.json``. ``<name>`` is the
film's path under the folder without its suffix, ``__`` for ``/``.

With a COCO truth file (``images[].file_name`` matched on the file stem, categories named as
``dipro.vocab.REGIONS``) it adds, per region, the IoU of every placed box with the truth and
the quality-control confusion: a placed box counts as *wrong* when its IoU with the truth is
under :data:`WRONG_IOU`, and as *flagged* when quality control failed it (or the film). A
film QC refused as a white lung's and placed again from its thorax outline
(:mod:`dipro_fhir.imaging.thorax`) is used: its record keeps the locator's boxes and IoUs
(``boxes``, ``iou``: the mean IoU per region is the locator's) and adds the boxes used
(``qc.thorax_boxes``, ``qc.thorax_iou``); the confusion counts the boxes used, each of
such a film flagged.
A locator that learnt from annotated films and can leave a patient out (``leave_out``, the
atlas locator) never sees the film's own patient (``images[].patient_id`` of the truth), so
the figures are leave-patient-out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from tqdm import tqdm

from dipro.vocab import REGIONS
from dipro_fhir.core.errors import ConfigError
from dipro_fhir.imaging.boxes import Box
from dipro_fhir.imaging.decode import (
    DECODE_ERRORS,
    CorruptImage,
    decode_png,
    decode_radiograph,
)
from dipro_fhir.imaging.overlay import closeups, overlay
from dipro_fhir.imaging.qc import check_placement
from dipro_fhir.imaging.regions import RegionLocator
from dipro_fhir.imaging.thorax import fallback_placement

#: A placed box whose IoU with the annotated one is below this counts as wrong. On the
#: development films, boxes judged wrong by eye had IoU 0.0..0.65 (90 % under 0.48), boxes
#: judged not wrong 0.36 or more in 90 % of cases: IoU is a coarse proxy for a look.
WRONG_IOU = 0.3


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def read_coco(path: Path) -> dict[str, Any]:
    """A COCO file's JSON.

    Raises:
        ConfigError: It cannot be read or has no ``images``, ``annotations`` and
            ``categories`` lists.
    """
    try:
        coco = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"COCO file {path}: {exc}") from exc
    if not isinstance(coco, dict) or not all(
        isinstance(coco.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise ConfigError(f"COCO file {path}: not COCO (images, annotations, categories)")
    return coco


def load_coco(path: Path) -> dict[str, dict[str, Box]]:
    """COCO boxes per image file stem and region name (``[x, y, w, h]`` -> corners).

    Raises:
        ConfigError: The file cannot be read, is not COCO, or an annotation names an image
            or category the file does not hold, or has no four-number ``bbox``.
    """
    coco = read_coco(path)
    try:
        names = {int(c["id"]): str(c["name"]) for c in coco["categories"]}
        stems = {int(im["id"]): Path(str(im["file_name"])).stem for im in coco["images"]}
        out: dict[str, dict[str, Box]] = {}
        for a in coco["annotations"]:
            x, y, w, h = (float(v) for v in a["bbox"])
            out.setdefault(stems[int(a["image_id"])], {})[names[int(a["category_id"])]] = (
                x,
                y,
                x + w,
                y + h,
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"COCO file {path}: {type(exc).__name__} {exc}") from exc
    return out


def load_patients(path: Path) -> dict[str, str]:
    """``images[].patient_id`` of a COCO file per image file stem (where present)."""
    return {
        Path(str(im["file_name"])).stem: str(im["patient_id"])
        for im in read_coco(path)["images"]
        if im.get("patient_id")
    }


def read_film(path: Path) -> npt.NDArray[np.float32]:
    """A PNG or DICOM film as a display image ``[H, W]`` in [0, 1], decoded as the pipeline
    decodes a film (:func:`~dipro_fhir.imaging.decode.decode_radiograph`; a PNG as a DICOM
    without display window, :func:`~dipro_fhir.imaging.decode.decode_png`).

    Raises:
        ValueError: The file cannot be read as a grayscale film.
    """
    try:
        if path.suffix.lower() == ".png":
            return decode_png(path)
        return decode_radiograph(pydicom.dcmread(path))
    except CorruptImage as exc:
        raise ValueError(str(exc)) from exc
    except DECODE_ERRORS as exc:  # dcmread: not DICOM, truncated
        raise ValueError(f"not a readable DICOM file: {type(exc).__name__}") from exc


def read_training_film(path: Path) -> npt.NDArray[np.float32]:
    """:func:`read_film` for a film a locator learns from: one that cannot be read stops the
    training with the file's name.

    Raises:
        ConfigError: The film cannot be read.
    """
    try:
        return read_film(path)
    except ValueError as exc:
        raise ConfigError(f"training film {path}: {exc}") from exc


def films(folder: Path) -> Iterator[Path]:
    """PNG and DICOM files under ``folder``, sorted."""
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in (".png", ".dcm"):
            yield path


_CONFUSION = ("wrong_flagged", "wrong_unflagged", "ok_flagged", "ok_unflagged")


#: Resamples of the patient bootstrap (:func:`patient_bootstrap`).
BOOTSTRAP_RESAMPLES = 2000


def patient_bootstrap(
    values: Sequence[float], patients: Sequence[str], resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, float] | None:
    """The 95 % interval of the mean of ``values`` when whole patients are resampled.

    Films of one patient are alike, so they are not independent evidence: resampling films
    would give an interval as if there were as many patients as films. Percentile interval
    over ``resamples`` draws of the patients with replacement (fixed seed: the same figures
    every run). None for fewer than two patients.
    """
    if len(values) != len(patients):
        raise ValueError("one patient per value")
    groups: dict[str, list[float]] = {}
    for value, patient in zip(values, patients, strict=True):
        groups.setdefault(patient, []).append(value)
    if len(groups) < 2:
        return None
    sums = np.array([sum(v) for v in groups.values()])
    counts = np.array([len(v) for v in groups.values()])
    draws = np.random.default_rng(0).integers(0, len(groups), size=(resamples, len(groups)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


@dataclass
class Evaluation:
    """What :func:`evaluate_folder` measured (see :meth:`summary`).

    ``ious`` holds, per region, ``(patient, IoU)`` of every placed box that has an annotated
    one (the patient is the film's own name when it is not known). A film that could not be
    read is a record with its ``error``.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    ious: dict[str, list[tuple[str, float]]] = field(
        default_factory=lambda: {r: [] for r in REGIONS}
    )
    confusion: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_CONFUSION, 0))
    seconds: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Films, unreadable films, films with an annotation, usable films, films with all ten
        regions kept, mean IoU per region (placed boxes, before quality control) with its
        95 % patient-bootstrap interval, the confusion, and seconds per film."""
        read = [r for r in self.records if "error" not in r]
        usable = [r for r in read if r["qc"]["film_ok"]]
        return {
            "films": len(self.records),
            "films_unreadable": len(self.records) - len(read),
            "films_with_truth": sum(1 for r in read if "iou" in r),
            "films_usable": len(usable),
            "films_all_ten_kept": sum(1 for r in usable if not r["qc"]["failed"]),
            "films_from_thorax": sum(1 for r in usable if r["qc"].get("from_thorax")),
            "mean_iou": {
                k: float(np.mean([v for _, v in pairs])) if pairs else None
                for k, pairs in self.ious.items()
            },
            "iou_ci95": {
                k: patient_bootstrap([v for _, v in pairs], [p for p, _ in pairs])
                for k, pairs in self.ious.items()
            },
            "patients": len({p for pairs in self.ious.values() for p, _ in pairs}),
            "qc_confusion": dict(self.confusion),
            "seconds_per_film": float(np.mean(self.seconds)) if self.seconds else None,
        }


def evaluate_folder(
    folder: Path,
    locator: RegionLocator,
    out: Path | None = None,
    truth: Mapping[str, Mapping[str, Box]] | None = None,
    patients: Mapping[str, str] | None = None,
    *,
    show_progress: bool = False,
) -> Evaluation:
    """Run ``locator`` and quality control on every film of ``folder`` (module docstring;
    ``patients``: the patient of each film stem, for leave-patient-out; ``show_progress``:
    a progress bar on stderr).

    Raises:
        ConfigError: ``folder`` is not a folder or holds no film. A film that cannot be read
            does not raise: it is recorded with its error, and the others go on.
    """
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder")
    paths = list(films(folder))
    if not paths:
        raise ConfigError(f"no PNG or DICOM film (*.png, *.dcm) under {folder}")
    ev = Evaluation()
    if out is not None:
        (out / "overlays").mkdir(parents=True, exist_ok=True)
        (out / "closeups").mkdir(exist_ok=True)
    for path in tqdm(paths, unit="film", disable=not show_progress):
        try:
            image = read_film(path)
        except ValueError as exc:
            ev.records.append({"file": str(path.relative_to(folder)), "error": str(exc)})
            continue
        film_locator = locator
        leave_out = getattr(locator, "leave_out", None)
        patient = (patients or {}).get(path.stem)
        if leave_out is not None and patient is not None:
            film_locator = leave_out(patient)
        started = time.perf_counter()
        boxes = film_locator.locate(image)
        located = time.perf_counter()
        qc = check_placement(image, boxes)
        # What is used: the placement, or for a white lung the one from the thorax outline.
        used, from_thorax = (boxes, qc), None
        fallback = fallback_placement(image, boxes, qc)
        if fallback is not None:
            used, from_thorax = fallback, qc.film_reason
        checked = time.perf_counter()
        ev.seconds.append(checked - started)
        qc = used[1]
        failed = set(qc.failed)
        record: dict[str, Any] = {
            "file": str(path.relative_to(folder)),
            "method": boxes.method,
            "match": boxes.match,
            "locator_confidence": (
                None
                if boxes.confidence is None
                else dict(zip(REGIONS, boxes.confidence, strict=True))
            ),
            "boxes": dict(zip(REGIONS, boxes.boxes, strict=True)),
            "qc": {
                "film_ok": qc.film_ok,
                "film_reason": qc.film_reason,
                "no_outside_air": qc.no_outside_air,
                # Why QC refused the locator's placement, when the film was placed again
                # from its thorax outline (``thorax_boxes``; ``boxes`` stay the locator's).
                "from_thorax": from_thorax,
                "failed": sorted(
                    failed & {r for r, b in zip(REGIONS, used[0].boxes, strict=True) if b}
                ),
                "regions": {
                    r.region: {"confidence": round(r.confidence, 3), "reasons": list(r.reasons)}
                    for r in qc.regions
                },
            },
            "seconds": {"locate": located - started, "qc": checked - located},
            "left_out_patient": patient is not None and film_locator is not locator,
        }
        if from_thorax:
            record["qc"]["thorax_boxes"] = dict(zip(REGIONS, used[0].boxes, strict=True))
        want = (truth or {}).get(path.stem)
        if want:
            record["iou"] = {}
            for region, box in zip(REGIONS, boxes.boxes, strict=True):
                if box is not None and region in want:
                    value = iou(box, want[region])
                    record["iou"][region] = round(value, 3)
                    ev.ious[region].append((patient or path.stem, value))
            if from_thorax:
                record["qc"]["thorax_iou"] = {
                    r: round(iou(b, want[r]), 3)
                    for r, b in zip(REGIONS, used[0].boxes, strict=True)
                    if b is not None and r in want
                }
            # The confusion is of the boxes used: from the thorax outline, each is flagged.
            used_iou = record["qc"]["thorax_iou"] if from_thorax else record["iou"]
            for region, value in used_iou.items():
                flagged = region in failed or from_thorax is not None
                key = ("wrong" if value < WRONG_IOU else "ok") + (
                    "_flagged" if flagged else "_unflagged"
                )
                ev.confusion[key] += 1
        ev.records.append(record)
        if out is not None:
            flags = [r in failed for r in REGIONS]
            title = f"{path.stem} {used[0].method} {'ok' if qc.film_ok else qc.film_reason}"
            if from_thorax:
                title += f" (locator: {from_thorax}; all flagged)"
            drawn = used[0].boxes
            # Films in subfolders may share a stem: their drawings must not overwrite.
            name = "__".join(path.relative_to(folder).with_suffix("").parts) + ".png"
            overlay(image, drawn, flagged=flags, title=title).save(out / "overlays" / name)
            closeups(image, drawn, truth=want, flagged=flags).save(out / "closeups" / name)
    if out is not None:
        payload = {"summary": ev.summary(), "films": ev.records}
        (out / "regions.json").write_text(json.dumps(payload, indent=1) + "\n")
    return ev


def render_summary(summary: Mapping[str, Any]) -> str:
    """The summary as a few lines of text for the terminal."""
    lines = [
        f"films {summary['films']}, unreadable {summary['films_unreadable']}, "
        f"usable {summary['films_usable']}, "
        f"all ten regions kept {summary['films_all_ten_kept']}, "
        f"placed from the thorax outline {summary.get('films_from_thorax', 0)}, "
        f"{1e3 * (summary['seconds_per_film'] or 0.0):.0f} ms per film (locate + QC)"
    ]
    ious = {k: v for k, v in summary["mean_iou"].items() if v is not None}
    if ious:
        lines.append(
            "mean IoU per region (placed boxes, before QC; 95 % interval resampling "
            f"{summary['patients']} patients, a film without patient_id counting as one):"
        )
        for k, v in ious.items():
            ci = summary["iou_ci95"].get(k)
            lines.append(f"  {k:26s} {v:.3f}" + (f"  ({ci[0]:.3f}-{ci[1]:.3f})" if ci else ""))
        c = summary["qc_confusion"]
        lines.append(
            f"QC confusion (wrong = IoU < {WRONG_IOU}): wrong flagged {c['wrong_flagged']}, "
            f"wrong NOT flagged {c['wrong_unflagged']}, ok flagged {c['ok_flagged']}, "
            f"ok kept {c['ok_unflagged']}"
        )
    return "\n".join(lines)
