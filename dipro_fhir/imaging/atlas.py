"""The ``atlas`` region locator: a site's annotated films registered onto each new film
(issue 11).

Multi-atlas transfer, the classical answer when a site has tens, not thousands, of annotated
films (Candemir et al., IEEE TMI 2014, did it for lung fields with non-rigid registration):

1. Every atlas film and the new film are cut to their content (:func:`content`: no flat
   bands at the edges), shrunk to ``S`` x ``S`` (aspect not kept) and
   histogram-equalised (rank-normalised), so exposure, AP/PA contrast and the 8/16-bit
   encoding do not matter.
2. Each atlas film is registered onto the new one by an axis-aligned affine map (scale and
   shift per axis, three starting scales) that maximises normalised cross-correlation, first
   at 32 px for all atlases, then at ``S`` px for the :data:`SHORTLIST` best.
3. The ten boxes of the :attr:`AtlasRegionLocator.top_k` best-matching atlases are mapped
   onto the new film. Each of these atlas films is registered once more inside the thorax
   (:func:`~dipro_fhir.imaging.registration.register_window`) and then around each lung
   base (:func:`~dipro_fhir.imaging.registration.refine_bases`), both at the finer thumbnail
   size, and the boxes are fused by their per-coordinate median; each costophrenic angle box
   is widened until it holds the recess its lung box places
   (:func:`~dipro_fhir.imaging.registration.hold_recess`).

Besides the boxes the locator reports, per region, how much the ``top_k`` atlases agree (the
mean IoU of each one's box with the fused box, :attr:`RegionBoxes.confidence`), and how much
the thorax looks like theirs (the median correlation inside the union of the lung boxes,
:attr:`RegionBoxes.match`), both of the whole-film fits; quality control fails a region on
which they disagree, and the film when its thorax is unlike theirs (a white-out, a strongly
rotated or lordotic film). A film that resembles no atlas film at all (best correlation of
the whole film under :data:`MIN_MATCH`: a lateral view, an abdomen, a film of something
else) gets no regions (``method="none"``).

The atlas is built from COCO boxes with ``dipro-fhir train-locator --kind atlas`` and stored
as an ``.npz`` file (thumbnails at 64 and 128 px as uint8, boxes as fractions, patient ids).
The shipped one, ``weights/region_atlas.npz``, holds the 64 annotated development films
(CC BY 3.0). For an honest measurement on films of an atlas patient,
:meth:`AtlasRegionLocator.leave_out` drops that patient's films (``dipro-fhir regions
--truth`` does so per film).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from dipro.vocab import REGIONS
from dipro_fhir.imaging.boxes import Box, RegionBoxes
from dipro_fhir.imaging.registration import (
    RECESS_MARGIN,
    box_iou,
    hold_recess,
    ncc,
    refine_bases,
    register,
    register_window,
    thorax_window,
    transfer,
    warp,
)

#: The shipped atlas: the annotated development films (CC BY 3.0).
SHIPPED_ATLAS = Path(__file__).resolve().parent / "weights" / "region_atlas.npz"
#: Thumbnail side of a new atlas.
DEFAULT_SIZE = 64
#: Atlases registered at full thumbnail size after the coarse pass.
SHORTLIST = 16
#: Best normalised cross-correlation of the whole film below which it resembles no atlas
#: film (measured: the development films 0.66..0.90 against other patients' films, a film
#: of noise far below).
MIN_MATCH = 0.6
#: Side of the fine thumbnails a new atlas keeps for :func:`~registration.refine_bases`.
DEFAULT_FINE_SIZE = 128
_STARTS = (0.0, 0.33, -0.33)  # the three starts: tanh(s) * MAX_LOG_SCALE of both axes
_COARSE = 32


def content(image: npt.NDArray[np.floating]) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of ``image`` without flat bands at its edges (collimator
    shadows, black or white padding): rows and columns whose spread is under 2 % of the
    range are cut from the outside in."""
    small = np.asarray(image, dtype=np.float32)
    step = max(1, max(small.shape) // 256)
    small = small[::step, ::step]
    lo, hi = np.percentile(small, [1.0, 99.0])
    flat = max(float(hi - lo), 1e-6) * 0.02

    def span(spread: npt.NDArray[np.floating], n: int) -> tuple[int, int]:
        live = np.flatnonzero(spread > flat)
        if live.size == 0 or live[-1] - live[0] < 0.5 * spread.size:
            return 0, n  # nothing sensible to cut
        return int(live[0] * step), min(n, int((live[-1] + 1) * step))

    y0, y1 = span(small.std(axis=1), int(image.shape[0]))
    x0, x1 = span(small.std(axis=0), int(image.shape[1]))
    return x0, y0, x1, y1


def equalise(image: npt.NDArray[np.floating], size: int) -> torch.Tensor:
    """``[1, 1, size, size]``: ``image`` area-resized, then rank-normalised to [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    t = F.interpolate(t, size=(size, size), mode="area")
    ranks = t.flatten().argsort().argsort().float() / max(t.numel() - 1, 1)
    return ranks.view_as(t)


@dataclass(frozen=True, slots=True)
class RegionAtlas:
    """Annotated films for :class:`AtlasRegionLocator`.

    Attributes:
        thumbs: ``[N, 1, S, S]`` equalised thumbnails (:func:`equalise`).
        boxes: ``[N, 10, 4]`` boxes ``(x0, y0, x1, y1)`` as fractions of width/height,
            ``dipro.vocab.REGIONS`` order.
        patients: The patient of each film (for leave-patient-out evaluation).
        names: Each film's file stem.
        note: Where the films and boxes come from, and their licence.
        fine: ``[N, 1, F, F]`` finer thumbnails for the base refinement, or None (an atlas
            written before it: its bases are not refined).
    """

    thumbs: torch.Tensor
    boxes: torch.Tensor
    patients: tuple[str, ...]
    names: tuple[str, ...]
    note: str = ""
    fine: torch.Tensor | None = None

    @property
    def size(self) -> int:
        """Thumbnail side ``S``."""
        return int(self.thumbs.shape[-1])

    def __len__(self) -> int:
        return int(self.thumbs.shape[0])

    @classmethod
    def from_films(
        cls,
        films: list[tuple[str, str, npt.NDArray[np.floating], dict[str, Box]]],
        size: int = DEFAULT_SIZE,
        note: str = "",
        fine_size: int = DEFAULT_FINE_SIZE,
    ) -> RegionAtlas:
        """An atlas of ``(name, patient, image, boxes in pixels)``; films without all ten
        regions are skipped."""
        kept = [f for f in films if set(f[3]) >= set(REGIONS)]
        if not kept:
            raise ValueError("no film has all ten regions annotated")
        crops = [content(image) for _, _, image, _ in kept]

        def thumbs(side: int) -> torch.Tensor:
            return torch.cat(
                [
                    equalise(image[y0:y1, x0:x1], side)
                    for (_, _, image, _), (x0, y0, x1, y1) in zip(kept, crops, strict=True)
                ]
            )

        fractions = [
            [
                [(b[0] - x0) / w, (b[1] - y0) / h, (b[2] - x0) / w, (b[3] - y0) / h]
                for b in (boxes[r] for r in REGIONS)
                for w, h in [(x1 - x0, y1 - y0)]
            ]
            for (_, _, _, boxes), (x0, y0, x1, y1) in zip(kept, crops, strict=True)
        ]
        return cls(
            thumbs=thumbs(size),
            boxes=torch.tensor(fractions, dtype=torch.float32),
            patients=tuple(p for _, p, _, _ in kept),
            names=tuple(n for n, _, _, _ in kept),
            note=note,
            fine=thumbs(fine_size),
        )

    def save(self, path: Path) -> None:
        """Write the atlas as ``.npz`` (thumbnails as uint8)."""
        arrays: dict[str, Any] = {
            "thumbs": _uint8(self.thumbs),
            "boxes": self.boxes.numpy(),
            "meta": np.array(
                json.dumps({"patients": self.patients, "names": self.names, "note": self.note})
            ),
        }
        if self.fine is not None:
            arrays["fine"] = _uint8(self.fine)
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> RegionAtlas:
        """Read an atlas written by :meth:`save`."""
        with np.load(path) as data:
            meta: dict[str, Any] = json.loads(str(data["meta"]))
            thumbs = _unit(data["thumbs"])
            fine = _unit(data["fine"]) if "fine" in data else None
            boxes = torch.from_numpy(data["boxes"].astype(np.float32))
        return cls(
            thumbs,
            boxes,
            tuple(meta["patients"]),
            tuple(meta["names"]),
            meta.get("note", ""),
            fine,
        )

    def without(self, patient: str) -> RegionAtlas:
        """The atlas without ``patient``'s films."""
        keep = [i for i, p in enumerate(self.patients) if p != patient]
        return replace(
            self,
            thumbs=self.thumbs[keep],
            boxes=self.boxes[keep],
            patients=tuple(self.patients[i] for i in keep),
            names=tuple(self.names[i] for i in keep),
            fine=None if self.fine is None else self.fine[keep],
        )


def _uint8(thumbs: torch.Tensor) -> npt.NDArray[np.uint8]:
    return (thumbs[:, 0].numpy() * 255).round().astype(np.uint8)


def _unit(thumbs: npt.NDArray[np.uint8]) -> torch.Tensor:
    return torch.from_numpy(thumbs.astype(np.float32) / 255.0)[:, None]


@dataclass(frozen=True, slots=True)
class AtlasRegionLocator:
    """Multi-atlas region placement (module docstring)."""

    atlas: RegionAtlas = field(repr=False)
    top_k: int = 5
    version: str = "unknown"  # the atlas file's digest: part of the feature-cache key
    recess_margin: tuple[float, float] = RECESS_MARGIN  # hold_recess; (0, 0): as annotated

    @classmethod
    def load(cls, path: Path = SHIPPED_ATLAS, top_k: int = 5) -> AtlasRegionLocator:
        """The atlas locator of an ``.npz`` atlas file."""
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        return cls(RegionAtlas.load(path), top_k, f"atlas-{digest}")

    def leave_out(self, patient: str) -> AtlasRegionLocator:
        """This locator without ``patient``'s atlas films (leave-patient-out evaluation)."""
        return replace(self, atlas=self.atlas.without(patient))

    def locate(self, image: npt.NDArray[np.floating]) -> RegionBoxes:
        """Place the ten regions on ``image`` (display-oriented ``[H, W]``)."""
        height, width = int(image.shape[0]), int(image.shape[1])
        cx0, cy0, cx1, cy1 = content(image)
        atlas = self.atlas
        n, k = len(atlas), len(_STARTS)
        film = equalise(image[cy0:cy1, cx0:cx1], atlas.size)
        start = torch.tensor([[a, a, 0.0, 0.0] for a in _STARTS]).repeat(n, 1)
        p, score = register(atlas.thumbs.repeat_interleave(k, 0), film, start, _COARSE)
        best_score, best = score.view(n, k).max(dim=1)  # the best start of each atlas film
        p = p.view(n, k, 4)[torch.arange(n), best]
        short = best_score.argsort(descending=True)[:SHORTLIST]
        p, score = register(atlas.thumbs[short], film, p[short], atlas.size)
        order = score.argsort(descending=True)[: self.top_k]
        if float(score[order[0]]) < MIN_MATCH:
            return RegionBoxes.missing(width, height)
        picked = short[order]
        candidates = transfer(atlas.boxes[picked], p[order]).clamp(0.0, 1.0)
        fused = candidates.median(dim=0).values
        # Agreement and thorax match judge the whole-film fits, before the bases are
        # refined: refined bases agree more, but not because they are more often right
        # (on the development films they then kept two angles placed too high).
        agreement = box_iou(candidates, fused[None]).mean(dim=0)
        thorax = _thorax_match(atlas.thumbs[picked], p[order], film, fused)
        if atlas.fine is not None:
            fine = equalise(image[cy0:cy1, cx0:cx1], int(atlas.fine.shape[-1]))
            p = register_window(atlas.fine[picked], fine, p[order], thorax_window(fused))
            candidates = transfer(atlas.boxes[picked], p).clamp(0.0, 1.0)
            fused = candidates.median(dim=0).values
            candidates = refine_bases(
                atlas.fine[picked], atlas.boxes[picked], fine, p, candidates, fused
            )
            fused = candidates.median(dim=0).values
        fused = hold_recess(fused, self.recess_margin)
        scale = torch.tensor([cx1 - cx0, cy1 - cy0] * 2, dtype=torch.float32)
        shift = torch.tensor([cx0, cy0] * 2, dtype=torch.float32)
        boxes: list[Box | None] = []
        for row in (fused * scale + shift).tolist():
            ok = row[2] - row[0] >= 2 and row[3] - row[1] >= 2
            boxes.append((row[0], row[1], row[2], row[3]) if ok else None)
        return RegionBoxes(
            boxes=tuple(boxes),
            width=width,
            height=height,
            method="atlas",
            confidence=tuple(round(float(v), 3) for v in agreement),
            match=round(thorax, 3),
        )


def _thorax_match(
    thumbs: torch.Tensor, p: torch.Tensor, film: torch.Tensor, fused: torch.Tensor
) -> float:
    """Median correlation, inside the fused thorax (union of the lung boxes), of the picked
    atlas films registered onto ``film``: how much the thorax looks like the atlas's."""
    size = film.shape[-1]
    lungs = fused[[REGIONS.index("right_lung"), REGIONS.index("left_lung")]]
    x0, y0 = (int(float(lungs[:, i].min()) * size) for i in (0, 1))
    x1, y1 = (int(float(lungs[:, i].max()) * size) + 1 for i in (2, 3))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return 0.0
    with torch.no_grad():
        warped = warp(thumbs, p)[..., y0:y1, x0:x1]
        return float(ncc(warped, film[..., y0:y1, x0:x1]).median())


def build_atlas(coco: Path, images: Path, out: Path, note: str = "") -> RegionAtlas:
    """Build an atlas from a COCO file of the ten region boxes (``images[].patient_id`` per
    film where present, else the file stem) and write it to ``out`` (``.npz``)."""
    from dipro_fhir.imaging.evaluate import load_coco, read_coco, read_training_film

    truth = load_coco(coco)
    films = []
    for entry in read_coco(coco)["images"]:
        name = Path(str(entry["file_name"])).stem
        if set(truth.get(name, {})) >= set(REGIONS):
            image = read_training_film(images / str(entry["file_name"]))
            patient = str(entry.get("patient_id") or name)
            films.append((name, patient, image, dict(truth[name])))
    atlas = RegionAtlas.from_films(films, note=note or f"COCO boxes {coco.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    atlas.save(out)
    return atlas
