"""Seeded synthetic chest radiographs (frontal and lateral) with region-level findings.

The synthetic world needs images whose *anatomy* is stable per patient and whose *findings*
change between studies in the regions DiPro looks at (reference §1.6, §3.1). This renderer
draws a schematic but radiograph-like film: dark lung fields inside brighter soft tissue, a
bright mediastinum and spine, a cardiac silhouette displaced to the patient's left (image
right, DICOM PS3.3 C.7.6.1.1.1), diaphragm domes with sharp costophrenic angles, ribs and
noise. Findings are opacities painted into the ten ``dipro.vocab.REGIONS`` at the boxes that
:func:`dipro_fhir.imaging.boxes.place_regions` gives for the true landmarks, which is where
:class:`dipro_fhir.imaging.regions.GeometricRegionLocator` finds them.

Display convention of the output: float32 ``[H, W]`` in ``[0, 1]``, bright = dense
(MONOCHROME2). :func:`true_regions` returns the ground-truth region boxes for tests.
DICOM encoding lives in :mod:`dipro_fhir.imaging.encode` and is re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from dipro.vocab import FINDINGS, REGIONS
from dipro_fhir.imaging.boxes import Box, RegionBoxes, ThoraxLandmarks, place_regions
from dipro_fhir.imaging.encode import to_dicom, write_dicom
from dipro_fhir.imaging.regions import box_blur

__all__ = [
    "Anatomy",
    "random_anatomy",
    "render_chest",
    "to_dicom",
    "true_landmarks",
    "true_regions",
    "write_dicom",
]

Grid = npt.NDArray[np.float64]
VIEWS = ("PA", "AP", "LATERAL", "LL", "RL")


@dataclass(frozen=True, slots=True)
class Anatomy:
    """Static anatomy of one synthetic patient; fractions of the image size unless noted.

    Attributes:
        center_x: Mediastinal midline (fraction of width).
        top: Lung apices (fraction of height).
        bottom: Costophrenic angles (fraction of height).
        half_width: Half the thorax (lung-to-lung) width (fraction of width).
        mediastinum_half: Half the mediastinum width, as a fraction of ``half_width``.
        heart_ratio: Cardiothoracic ratio of a normal heart (heart width / thorax width).
        heart_height: Heart half-height as a fraction of the lung height.
        heart_shift: Heart centre offset to the patient's left, fraction of ``half_width``.
        dome: Height of the diaphragm domes, fraction of the lung height.
        rotation_deg: In-plane rotation of the patient.
        lung_density: How much darker the aerated lung is than soft tissue.
        soft_tissue: Soft-tissue grey level.
        brightness: Global offset after contrast.
        contrast: Global gain around 0.5.
        gamma: Display gamma.
        rib_spacing: Posterior rib spacing, fraction of the lung height.
        rib_phase: Rib pattern phase in ``[0, 1)``.
        rib_strength: Rib brightness.
        noise: Quantum-noise standard deviation.
    """

    center_x: float
    top: float
    bottom: float
    half_width: float
    mediastinum_half: float
    heart_ratio: float
    heart_height: float
    heart_shift: float
    dome: float
    rotation_deg: float
    lung_density: float
    soft_tissue: float
    brightness: float
    contrast: float
    gamma: float
    rib_spacing: float
    rib_phase: float
    rib_strength: float
    noise: float


def random_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw one patient's anatomy; values vary strongly between patients."""
    u = rng.uniform
    return Anatomy(
        center_x=u(0.46, 0.54),
        top=u(0.08, 0.17),
        bottom=u(0.72, 0.86),
        half_width=u(0.30, 0.40),
        mediastinum_half=u(0.13, 0.20),
        heart_ratio=u(0.38, 0.48),
        heart_height=u(0.19, 0.25),
        heart_shift=u(0.15, 0.28),
        dome=u(0.08, 0.16),
        rotation_deg=u(-3.0, 3.0),
        lung_density=u(0.26, 0.40),
        soft_tissue=u(0.48, 0.60),
        brightness=u(-0.05, 0.05),
        contrast=u(0.85, 1.15),
        gamma=u(0.85, 1.2),
        rib_spacing=u(0.075, 0.1),
        rib_phase=u(0.0, 1.0),
        rib_strength=u(0.03, 0.07),
        noise=u(0.006, 0.018),
    )


def _heart_scale(severity: Mapping[str, Mapping[str, float]], view: str) -> float:
    enlarged = max(severity.get("enlarged_cardiac_silhouette", {}).values(), default=0.0)
    return (1.0 + 0.45 * enlarged) * (1.1 if view == "AP" else 1.0)


def true_landmarks(
    anatomy: Anatomy, size: tuple[int, int], *, heart_scale: float = 1.0
) -> ThoraxLandmarks:
    """Ground-truth lung boxes, midline and heart box in pixels (rotation ignored).

    Args:
        anatomy: The patient.
        size: ``(height, width)`` in pixels.
        heart_scale: Factor on the heart width (enlarged silhouette, AP magnification).
    """
    h, w = size
    a = anatomy
    cx, hw, mw = a.center_x, a.half_width, a.half_width * a.mediastinum_half
    lh = a.bottom - a.top
    right = (w * (cx - hw), h * a.top, w * (cx - mw), h * a.bottom)
    left = (w * (cx + mw), h * a.top, w * (cx + hw), h * a.bottom)
    hcx, hcy, hrx, hry = _heart_ellipse(a, heart_scale)
    heart = (w * (hcx - hrx), h * (hcy - hry), w * (hcx + hrx), h * min(hcy + hry, a.bottom))
    del lh
    return ThoraxLandmarks(right_lung=right, left_lung=left, midline_x=w * cx, heart=heart)


def true_regions(
    anatomy: Anatomy,
    severity: Mapping[str, Mapping[str, float]] | None = None,
    *,
    view: str = "PA",
    size: tuple[int, int] = (512, 512),
) -> RegionBoxes:
    """Ground-truth boxes of the ten regions on a frontal image from :func:`render_chest`."""
    scale = _heart_scale(severity or {}, view)
    return place_regions(true_landmarks(anatomy, size, heart_scale=scale), size[1], size[0])


def _heart_ellipse(a: Anatomy, scale: float) -> tuple[float, float, float, float]:
    """Heart centre and radii (normalised): it sits on the left hemidiaphragm."""
    lh = a.bottom - a.top
    rx = a.heart_ratio * a.half_width * scale
    ry = a.heart_height * lh * math.sqrt(scale)
    cx = a.center_x + a.heart_shift * a.half_width
    cy = a.bottom - 0.04 * lh - ry
    return cx, cy, rx, ry


def _grid(a: Anatomy, size: tuple[int, int]) -> tuple[Grid, Grid]:
    """Normalised (x, y) of every pixel, rotated about the thorax centre."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y = (x + 0.5) / w, (y + 0.5) / h
    cy = 0.5 * (a.top + a.bottom)
    th = math.radians(a.rotation_deg)
    dx, dy = x - a.center_x, y - cy
    return a.center_x + dx * math.cos(th) - dy * math.sin(th), cy + dx * math.sin(
        th
    ) + dy * math.cos(th)


def _lung_masks(a: Anatomy, x: Grid, y: Grid) -> tuple[Grid, Grid, Grid, Grid]:
    """Right (image-left) and left lung masks, plus the medial-lateral and top-bottom
    coordinates ``t`` and ``s`` in ``[0, 1]`` of whichever lung a pixel is in."""
    mw = a.half_width * a.mediastinum_half
    s = (y - a.top) / (a.bottom - a.top)
    t_right = ((a.center_x - mw) - x) / (a.half_width - mw)
    t_left = (x - (a.center_x + mw)) / (a.half_width - mw)
    masks = []
    for t in (t_right, t_left):
        apex = 0.30 * ((t - 0.45) / 0.55) ** 2
        floor = 1.0 - a.dome * np.sin(np.pi * np.clip(t, 0.0, 1.0))
        masks.append(((t >= 0) & (t <= 1) & (s >= apex) & (s <= floor)).astype(np.float64))
    t = np.where(x < a.center_x, t_right, t_left)
    return masks[0], masks[1], np.clip(t, 0.0, 1.0), s


def _render_frontal(
    rng: np.random.Generator,
    a: Anatomy,
    severity: Mapping[str, Mapping[str, float]],
    view: str,
    size: tuple[int, int],
) -> Grid:
    x, y = _grid(a, size)
    right, left, t, s = _lung_masks(a, x, y)
    lungs = np.maximum(right, left)
    body_hw = a.half_width * 1.22 * np.where(y < a.top, 0.75 + 0.25 * y / a.top, 1.0)
    body = (np.abs(x - a.center_x) <= body_hw).astype(np.float64)
    img = 0.04 + body * (a.soft_tissue - 0.04)
    img += body * 0.08 * (1.0 - np.abs(x - a.center_x) / (a.half_width * 1.22)).clip(0, 1)
    below = (s > 1.0 - a.dome * np.sin(np.pi * t)) & (s > 0.5)
    img = np.where(below & (body > 0), a.soft_tissue + 0.15, img)
    img -= a.lung_density * lungs
    ribs = np.sin(2 * np.pi * ((s - 0.25 * t**2) / a.rib_spacing + a.rib_phase))
    img += a.rib_strength * lungs * np.clip(ribs, 0.0, 1.0) ** 2
    marks = true_landmarks(a, size, heart_scale=_heart_scale(severity, view))
    regions = place_regions(marks, size[1], size[0])
    img += _paint_findings(rng, a, severity, regions, (right, left, t, s))
    mw = a.half_width * a.mediastinum_half
    spine = np.exp(-(((x - a.center_x) / (0.9 * mw)) ** 4)) * (y < a.bottom + 0.05)
    img = np.maximum(img, (a.soft_tissue + 0.2) * spine)
    hcx, hcy, hrx, hry = _heart_ellipse(a, _heart_scale(severity, view))
    heart = (((x - hcx) / hrx) ** 2 + ((y - hcy) / hry) ** 2) <= 1.0
    return np.where(heart, np.maximum(img, a.soft_tissue + 0.14), img)


# Shape of each blob-like finding: (sigma_x, sigma_y) as fractions of the region box and
# the peak opacity. Edema is a broad perihilar haze, consolidation and pneumonia dense
# patches (pneumonia mottled), atelectasis a thin linear band, lung opacity a fainter patch.
_BLOBS: dict[str, tuple[float, float, float]] = {
    "pulmonary_edema": (0.50, 0.50, 0.22),
    "consolidation": (0.28, 0.28, 0.34),
    "pneumonia": (0.32, 0.32, 0.30),
    "lung_opacity": (0.30, 0.30, 0.22),
    "atelectasis": (0.45, 0.07, 0.30),
}
_UNMASKED = ("cardiac_silhouette", "mediastinum")


def _blob(rng: np.random.Generator, box: Box, sev: float, finding: str, shape: Grid) -> Grid:
    sx_f, sy_f, amp = _BLOBS[finding]
    h, w = shape.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    bw, bh = box[2] - box[0], box[3] - box[1]
    cx = 0.5 * (box[0] + box[2]) + rng.uniform(-0.1, 0.1) * bw
    cy = 0.5 * (box[1] + box[3]) + rng.uniform(-0.1, 0.1) * bh
    grow = 0.6 + 0.4 * sev
    g = np.exp(
        -0.5 * (((xx - cx) / (sx_f * bw * grow)) ** 2 + ((yy - cy) / (sy_f * bh * grow)) ** 2)
    )
    if finding == "consolidation":
        g = np.clip(1.6 * g - 0.25, 0.0, 1.0)
    if finding == "pneumonia":
        g *= 0.6 + 0.8 * box_blur(rng.uniform(0.0, 1.0, g.shape), max(2, w // 100))
    return np.asarray(amp * sev**0.7 * g, dtype=np.float64)


def _effusion(side: Grid, sev: float, density: float, t: Grid, s: Grid) -> Grid:
    """Fluid in the lowest part of one pleural space, meniscus higher laterally."""
    level = 1.0 - (0.10 + 0.35 * sev) * (0.55 + 0.45 * t)
    return np.asarray(side * 0.85 * density / (1.0 + np.exp(-(s - level) / 0.015)))


def _paint_findings(
    rng: np.random.Generator,
    a: Anatomy,
    severity: Mapping[str, Mapping[str, float]],
    regions: RegionBoxes,
    masks: tuple[Grid, Grid, Grid, Grid],
) -> Grid:
    """Opacity to add for every (finding, region, severity) on a frontal film."""
    right, left, t, s = masks
    lungs = np.maximum(right, left)
    out = np.zeros_like(lungs)
    sides = {"right": 0.0, "left": 0.0}
    for finding, by_region in sorted(severity.items()):
        for region, sev in sorted(by_region.items()):
            box = regions.get(region)
            if sev <= 0.0 or box is None:
                continue
            if finding == "pleural_effusion":
                for side in sides:
                    if region.startswith(side) or region in _UNMASKED:
                        sides[side] = max(sides[side], sev)
            elif finding in _BLOBS:
                g = _blob(rng, box, sev, finding, lungs)
                out += g if region in _UNMASKED else g * box_blur(lungs, 3)
    for side, mask in (("right", right), ("left", left)):
        if sides[side] > 0.0:
            out += _effusion(mask, sides[side], a.lung_density, t, s)
    return out


def _render_lateral(
    rng: np.random.Generator,
    a: Anatomy,
    severity: Mapping[str, Mapping[str, float]],
    size: tuple[int, int],
) -> Grid:
    """A schematic lateral film: anterior on the image left, spine on the image right."""
    x, y = _grid(a, size)
    s = (y - a.top) / (a.bottom - a.top)
    t = (x - 0.22) / 0.56  # 0 = anterior, 1 = posterior
    body = (np.abs(x - 0.5) < 0.36).astype(np.float64)
    lung = (
        (t >= 0) & (t <= 1) & (s >= 0.3 * (t - 0.5) ** 2) & (s <= 1.0 - a.dome * np.sin(np.pi * t))
    )
    img = 0.04 + body * (a.soft_tissue + 0.06 - 0.04) - 0.7 * a.lung_density * lung
    img = np.maximum(img, (a.soft_tissue + 0.2) * (np.abs(x - 0.8) < 0.05) * body)
    heart = ((x - 0.36) / 0.13) ** 2 + ((y - (a.bottom - 0.13)) / 0.12) ** 2 <= 1.0
    img = np.where(heart, a.soft_tissue + 0.12, img)
    total = {f: max(v.values(), default=0.0) for f, v in severity.items()}
    if total.get("pleural_effusion", 0.0) > 0.0:
        img += _effusion(lung.astype(np.float64), total["pleural_effusion"], a.lung_density, t, s)
    h, w = size
    centre = (0.4 * w, h * (a.top + 0.45 * (a.bottom - a.top)), 0.7 * w, h * a.bottom)
    for finding, sev in sorted(total.items()):
        if finding in _BLOBS and sev > 0.0:
            img += _blob(rng, centre, sev, finding, img) * lung
    return np.asarray(img, dtype=np.float64)


def render_chest(
    rng_seed: int,
    anatomy: Anatomy,
    severity: Mapping[str, Mapping[str, float]],
    *,
    view: str = "PA",
    size: tuple[int, int] = (512, 512),
) -> npt.NDArray[np.float32]:
    """Render one chest radiograph.

    Args:
        rng_seed: Seed of the noise and of the finding textures; same inputs, same image.
        anatomy: The patient's static anatomy (:func:`random_anatomy`).
        severity: finding -> region -> severity in ``[0, 1]``; findings from
            ``dipro.vocab.FINDINGS``, regions from ``dipro.vocab.REGIONS``.
        view: ``PA`` or ``AP`` (frontal), ``LATERAL``/``LL``/``RL`` (lateral).
        size: ``(height, width)`` in pixels.

    Returns:
        float32 ``[H, W]`` in ``[0, 1]``, bright = dense.

    Raises:
        ValueError: Unknown view, finding or region, or a severity outside ``[0, 1]``.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
    for finding, by_region in severity.items():
        if finding not in FINDINGS:
            raise ValueError(f"unknown finding {finding!r}")
        for region, value in by_region.items():
            if region not in REGIONS or not 0.0 <= value <= 1.0:
                raise ValueError(f"bad region/severity {region!r}={value!r} for {finding}")
    rng = np.random.default_rng(rng_seed)
    if view in ("PA", "AP"):
        a = anatomy if view == "PA" else replace(anatomy, lung_density=anatomy.lung_density * 0.9)
        img = _render_frontal(rng, a, severity, view, size)
    else:
        img = _render_lateral(rng, anatomy, severity, size)
    img = box_blur(img, max(1, round(0.003 * max(size))))
    img += rng.normal(0.0, anatomy.noise, size)
    img = np.clip((img - 0.5) * anatomy.contrast + 0.5 + anatomy.brightness, 0.0, 1.0)
    return np.asarray(img**anatomy.gamma, dtype=np.float32)
