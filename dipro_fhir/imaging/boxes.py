"""Anatomical region boxes and where the ten DiPro regions sit inside a frontal chest film.

DiPro crops ten Chest ImaGenome regions (reference §1.6; order of ``dipro.vocab.REGIONS``).
A deployment has no ImaGenome scene graph (reference §7.2), so the regions are derived from
a few landmarks that an image-processing locator can find on any frontal radiograph: the
bounding boxes of the two lung fields, the midline and the cardiac silhouette.
:func:`place_regions` turns those landmarks into the ten boxes with fixed, documented
fractions. The synthetic renderer calls the same function with its ground-truth landmarks,
so a locator can be tested against exact expectations.

Orientation: images are displayed as the viewer faces the patient (DICOM PS3.3 C.7.6.1.1.1,
Patient Orientation ``L\\F`` for a PA film), so the patient's LEFT lung is on the image
RIGHT. Boxes are ``(x0, y0, x1, y1)`` in pixel coordinates of the full image, ``x1``/``y1``
exclusive, floats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dipro.vocab import REGIONS
from dipro_fhir.core.timeline import BoolArray

Box = tuple[float, float, float, float]
# RegionBoxes.method values whose boxes are placed by a fallback, not measured lung fields.
APPROXIMATE_METHODS = frozenset({"mirrored", "template"})


@dataclass(frozen=True, slots=True)
class RegionBoxes:
    """The ten region boxes of one image, in ``dipro.vocab.REGIONS`` order.

    Attributes:
        boxes: One ``(x0, y0, x1, y1)`` pixel box per region, ``None`` where the region
            could not be placed.
        width: Image width in pixels (boxes are clipped to it).
        height: Image height in pixels.
        method: How the boxes were derived: ``"landmarks"`` (from measured or known lung
            fields, the default of :func:`place_regions`), ``"mirrored"`` (one lung field
            measured, the other mirrored across the midline), ``"template"`` (standard
            frontal-chest fractions of the body outline), or ``"none"`` (nothing placed).
            ``"mirrored"`` and ``"template"`` boxes are approximate (:attr:`approximate`);
            ``"atlas"`` (registered annotated films, :mod:`dipro_fhir.imaging.atlas`) and
            ``"model"`` (a network) are placements by a trained locator.
        confidence: The locator's own confidence per region in [0, 1], when it has one
            (the atlas locator: how much its best-matching atlas films agree); quality
            control fails a region the locator is unsure of.
        match: How well the film matched what the locator knows (the atlas locator: the
            median correlation of its thorax with the registered atlas films'), ``None`` when
            it does not say.
    """

    boxes: tuple[Box | None, ...]
    width: int
    height: int
    method: str = "landmarks"
    confidence: tuple[float, ...] | None = None
    match: float | None = None

    def __post_init__(self) -> None:
        if len(self.boxes) != len(REGIONS):
            raise ValueError(f"expected {len(REGIONS)} boxes, got {len(self.boxes)}")
        if self.confidence is not None and len(self.confidence) != len(REGIONS):
            raise ValueError(f"expected {len(REGIONS)} confidences, got {len(self.confidence)}")

    def get(self, region: str) -> Box | None:
        """Return the box of ``region`` (a name from ``dipro.vocab.REGIONS``)."""
        return self.boxes[REGIONS.index(region)]

    @property
    def mask(self) -> BoolArray:
        """bool ``[R]``: ``True`` where the region has a box."""
        return np.array([b is not None for b in self.boxes], dtype=np.bool_)

    @property
    def approximate(self) -> bool:
        """``True`` when the boxes come from a fallback (mirrored lung or template)."""
        return self.method in APPROXIMATE_METHODS

    @classmethod
    def missing(cls, width: int, height: int) -> RegionBoxes:
        """All ten regions missing (no thorax found)."""
        return cls(boxes=(None,) * len(REGIONS), width=width, height=height, method="none")


@dataclass(frozen=True, slots=True)
class ThoraxLandmarks:
    """What a locator found (or the renderer knows) about one frontal film, in pixels.

    Attributes:
        right_lung: Box of the patient's right lung field (image LEFT).
        left_lung: Box of the patient's left lung field (image RIGHT).
        midline_x: Column of the mediastinal midline.
        heart: Box of the cardiac silhouette, or ``None`` to use the default fractions.
    """

    right_lung: Box
    left_lung: Box
    midline_x: float
    heart: Box | None = None


# Fractions of a lung box (width w, height h), chosen to match the typical extent of the
# Chest ImaGenome regions on frontal films: lower zone = lower third; hilum = medial 45 %
# between 30 % and 62 % of the height; costophrenic angle = lateral 35 % of the lowest 22 %,
# extended 4 % below the lung field so the angle itself is inside.
LOWER_ZONE_FROM = 2.0 / 3.0
HILUM_MEDIAL_FRACTION = 0.45
HILUM_Y = (0.30, 0.62)
CP_LATERAL_FRACTION = 0.35
CP_HEIGHT_FRACTION = 0.22
CP_BELOW_FRACTION = 0.04
# Cardiac silhouette default when no heart box is measured: fractions of the thorax width
# (tw) around the midline, heart displaced to the patient's left (image right).
HEART_X = (-0.17, 0.33)
HEART_Y_FROM = 0.45
# Mediastinum: the central column between the lungs, from the apices to 60 % of the height,
# at least 10 % of the thorax width each side of the midline.
MEDIASTINUM_HALF_MIN = 0.10
MEDIASTINUM_Y_TO = 0.60


def _clip(box: Box, width: int, height: int) -> Box | None:
    x0, y0, x1, y1 = box
    x0, x1 = max(0.0, x0), min(float(width), x1)
    y0, y1 = max(0.0, y0), min(float(height), y1)
    if x1 - x0 < 2.0 or y1 - y0 < 2.0:
        return None
    return (x0, y0, x1, y1)


def _lung_regions(lung: Box, *, image_left: bool) -> tuple[Box, Box, Box]:
    """Lower zone, hilum and costophrenic angle of one lung field."""
    x0, y0, x1, y1 = lung
    w, h = x1 - x0, y1 - y0
    lower = (x0, y0 + LOWER_ZONE_FROM * h, x1, y1)
    hy0, hy1 = y0 + HILUM_Y[0] * h, y0 + HILUM_Y[1] * h
    cy0, cy1 = y1 - CP_HEIGHT_FRACTION * h, y1 + CP_BELOW_FRACTION * h
    if image_left:  # patient's right lung: medial side is the image-right edge
        hilum = (x1 - HILUM_MEDIAL_FRACTION * w, hy0, x1, hy1)
        cp = (x0 - 0.03 * w, cy0, x0 + CP_LATERAL_FRACTION * w, cy1)
    else:
        hilum = (x0, hy0, x0 + HILUM_MEDIAL_FRACTION * w, hy1)
        cp = (x1 - CP_LATERAL_FRACTION * w, cy0, x1 + 0.03 * w, cy1)
    return lower, hilum, cp


def place_regions(marks: ThoraxLandmarks, width: int, height: int) -> RegionBoxes:
    """Place the ten DiPro regions from thorax landmarks.

    Args:
        marks: Lung boxes, midline and (optionally) the heart box, in pixels.
        width: Image width in pixels.
        height: Image height in pixels.

    Returns:
        Boxes in ``dipro.vocab.REGIONS`` order, clipped to the image; a region whose clipped
        box is degenerate (under 2 px a side) is ``None``.
    """
    r, lft, m = marks.right_lung, marks.left_lung, marks.midline_x
    tw = lft[2] - r[0]
    top, bottom = min(r[1], lft[1]), max(r[3], lft[3])
    th = bottom - top
    r_lower, r_hilum, r_cp = _lung_regions(r, image_left=True)
    l_lower, l_hilum, l_cp = _lung_regions(lft, image_left=False)
    heart = marks.heart or (
        m + HEART_X[0] * tw,
        top + HEART_Y_FROM * th,
        m + HEART_X[1] * tw,
        bottom,
    )
    half = MEDIASTINUM_HALF_MIN * tw
    mediastinum = (min(r[2], m - half), top, max(lft[0], m + half), top + MEDIASTINUM_Y_TO * th)
    by_name: dict[str, Box] = {
        "left_lung": lft,
        "right_lung": r,
        "left_lower_lung_zone": l_lower,
        "right_lower_lung_zone": r_lower,
        "left_hilar_structures": l_hilum,
        "right_hilar_structures": r_hilum,
        "left_costophrenic_angle": l_cp,
        "right_costophrenic_angle": r_cp,
        "cardiac_silhouette": heart,
        "mediastinum": mediastinum,
    }
    return RegionBoxes(
        boxes=tuple(_clip(by_name[name], width, height) for name in REGIONS),
        width=width,
        height=height,
    )
