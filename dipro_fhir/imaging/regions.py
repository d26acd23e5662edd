"""Find the ten DiPro regions on a frontal chest radiograph without a trained detector.

The paper takes its boxes from Chest ImaGenome scene graphs, which exist only for MIMIC
(reference §1.6, §7.2). :class:`RegionLocator` is the seam where a trained detector (the
paper's DiPro⁻ uses RGRG) plugs in; :class:`GeometricRegionLocator` is the dependency-free
default:

1. downsample to about 160 px on the long side (area mean) and normalise to the 1st/99th
   percentiles;
   Images without large-scale structure (blank, pure noise) get no regions;
2. threshold dark pixels with Otsu's method and drop every dark component connected to the
   image border (air outside the body), leaving the lung fields; when that leaves no
   plausible pair of lungs, retry after eroding the dark mask by 1, 2, 3, 5 px, which cuts
   thin bridges from the apices to the outside air (neck, collimator bands). Opacified lungs
   (effusion, consolidation, edema) are darker than soft tissue but not than the outside
   air, so the same is then tried at thresholds from the body's own grey levels (Otsu inside
   the body, then its 60th..20th percentiles). A threshold at which a dark field crosses
   the body midline in many rows is skipped (there the mediastinum of a frontal film, or a
   white lung, is as dark as the lungs); the film is taken for a lateral one (no regions)
   only when that holds at the body's own Otsu threshold or at most thresholds
   (:func:`_lateral`);
3. take the mediastinal midline as the centre of the least-lung column band between the
   two lung-column peaks; split the lung mask there;
4. each lung's box is the extent of its rows/columns holding at least 5 % of the peak
   count (drops speckle); if one lung's base is much higher than the other's (effusion or
   collapse hides the costophrenic angle), its base is taken from the other lung;
5. the cardiac silhouette spans the gap between the two lungs' medial borders in the rows
   where that gap is wider than the upper mediastinum;
6. :func:`~dipro_fhir.imaging.boxes.place_regions` derives the ten boxes.

7. fallbacks, marked by ``RegionBoxes.method`` (``approximate`` is ``True``): when no pair
   is found but one lung field lies clearly on one side of the body midline, it is
   mirrored across that midline (``"mirrored"``, real and synthetic thoraces are roughly
   symmetric); else the lungs are placed by standard frontal-chest fractions of the body
   outline (``"template"``, constants ``_TEMPLATE_*``).

All ten regions are missing (``method == "none"``) for a blank or noise image, a lateral
film, or when no body outline is found. The image must be display-oriented (bright =
dense, patient's left on the image right), as :func:`~dipro_fhir.imaging.decode.
decode_radiograph` returns it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import numpy.typing as npt

from dipro_fhir.imaging.boxes import Box, RegionBoxes, ThoraxLandmarks, place_regions

Image = npt.NDArray[np.floating]
Mask = npt.NDArray[np.bool_]


class RegionLocator(Protocol):
    """Anything that places the ten regions on a display-oriented frontal image."""

    def locate(self, image: Image) -> RegionBoxes:
        """Return the ten region boxes in pixel coordinates of ``image`` (``[H, W]``)."""
        ...


def box_blur(img: npt.NDArray[np.float64], radius: int) -> npt.NDArray[np.float64]:
    """Separable box filter of half-width ``radius`` (edge-replicated), via cumulative sums."""
    out = np.asarray(img, dtype=np.float64)
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius + 1, radius)
        c = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis)
        n = out.shape[axis]
        hi = np.take(c, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
        lo = np.take(c, np.arange(0, n), axis=axis)
        out = (hi - lo) / (2 * radius + 1)
    return out


def otsu_threshold(values: npt.NDArray[np.float64], bins: int = 64) -> float:
    """Otsu's threshold of values in ``[0, 1]`` (maximises between-class variance)."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    p = hist.astype(np.float64) / max(1, hist.sum())
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(p)
    mu = np.cumsum(p * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * w0 - mu) ** 2 / (w0 * (1.0 - w0))
    return float(edges[1:][int(np.nanargmax(np.nan_to_num(between, nan=-1.0)))])


def _downsample(image: Image, target: int) -> tuple[npt.NDArray[np.float64], int]:
    f = max(1, round(max(image.shape) / target))
    h, w = (image.shape[0] // f) * f, (image.shape[1] // f) * f
    small = np.asarray(image[:h, :w], dtype=np.float64).reshape(h // f, f, w // f, f)
    return small.mean(axis=(1, 3)), f


def _border_connected(mask: Mask) -> Mask:
    """Pixels of ``mask`` 4-connected to the image border (geodesic reconstruction)."""
    reach = np.zeros_like(mask)
    reach[0, :], reach[-1, :], reach[:, 0], reach[:, -1] = (
        mask[0, :],
        mask[-1, :],
        mask[:, 0],
        mask[:, -1],
    )
    while True:
        grown = reach.copy()
        grown[1:, :] |= reach[:-1, :]
        grown[:-1, :] |= reach[1:, :]
        grown[:, 1:] |= reach[:, :-1]
        grown[:, :-1] |= reach[:, 1:]
        grown &= mask
        if np.array_equal(grown, reach):
            return reach
        reach = grown


# Erosion radii tried in turn (working-image pixels): lungs often touch the outside air
# through the neck or a dark collimator band; eroding first cuts such thin bridges.
_OPENING_RADII = (0, 1, 2, 3, 5)
# Opacified lungs are darker than the surrounding soft tissue but not than the outside air,
# so after Otsu on the whole image, thresholds from the body's own grey levels are tried,
# from high (large lung fields) to low (only the darkest, aerated parts).
_BODY_PERCENTILES = (60.0, 50.0, 40.0, 30.0, 20.0)
# A radiograph's variance is mostly large-scale (> 0.8 of it survives a 9 px box blur);
# white noise keeps ~0.01.
_MIN_STRUCTURE = 0.3


def _inner_dark(dark: Mask, radius: int) -> Mask:
    """Dark pixels not connected to the border once bridges under ``2*radius+1`` px wide
    are cut (erode, drop border-connected parts, grow back inside ``dark``)."""
    if radius == 0:
        return dark & ~_border_connected(dark)
    core = box_blur(dark.astype(np.float64), radius) > 1.0 - 1e-9
    inner = core & ~_border_connected(core)
    grown = box_blur(inner.astype(np.float64), radius + 1) > 1e-9
    return grown & dark


def _extent(counts: npt.NDArray[np.int64], fraction: float = 0.05) -> tuple[int, int] | None:
    idx = np.flatnonzero(counts >= max(1.0, fraction * float(counts.max(initial=0))))
    return (int(idx[0]), int(idx[-1]) + 1) if idx.size else None


def _lung_box(mask: Mask) -> Box | None:
    cols, rows = _extent(mask.sum(axis=0)), _extent(mask.sum(axis=1))
    if cols is None or rows is None:
        return None
    return (float(cols[0]), float(rows[0]), float(cols[1]), float(rows[1]))


def _midline(lungs: Mask) -> float | None:
    counts = box_blur(lungs.sum(axis=0, dtype=np.float64)[None, :], 1)[0]
    if counts.sum() <= 0:
        return None
    centre = int(np.average(np.arange(counts.size), weights=counts))
    if centre < 2 or centre > counts.size - 3:
        return None
    lp = int(np.argmax(counts[:centre]))
    rp = centre + int(np.argmax(counts[centre:]))
    valley = counts[lp : rp + 1]
    # A real mediastinum: the peaks are apart and the valley is far below both peaks.
    if rp - lp < 0.15 * counts.size or valley.min() > 0.35 * min(counts[lp], counts[rp]):
        return None
    low = np.flatnonzero(valley <= valley.min() + 0.05 * (valley.max() - valley.min()))
    return float(lp + low.mean() + 0.5)


@dataclass(frozen=True, slots=True)
class GeometricRegionLocator:
    """Threshold-and-projection lung finder plus fixed region fractions (module docstring).

    Attributes:
        target_px: Long side of the working image.
        min_lung_area: Smallest lung field, as a fraction of the image area.
        max_base_gap: Base difference (fraction of lung height) beyond which the higher
            base is replaced by the lower one.
    """

    target_px: int = 160
    min_lung_area: float = 0.02
    max_base_gap: float = 0.05

    def locate(self, image: Image) -> RegionBoxes:
        """Place the ten regions on ``image`` (``[H, W]``, bright = dense).

        ``RegionBoxes.method`` says how: ``"landmarks"`` (both lung fields found),
        ``"mirrored"`` or ``"template"`` (approximate, module docstring step 7), ``"none"``.
        """
        height, width = int(image.shape[0]), int(image.shape[1])
        small, f = _downsample(image, self.target_px)
        lo, hi = np.percentile(small, [1.0, 99.0])
        if not np.isfinite(hi - lo) or hi - lo <= 1e-6:
            return RegionBoxes.missing(width, height)
        raw = np.clip((small - lo) / (hi - lo), 0.0, 1.0)
        if np.var(box_blur(raw, 4)) < _MIN_STRUCTURE * np.var(raw):
            return RegionBoxes.missing(width, height)  # noise: no large-scale structure
        norm = box_blur(raw, 1)
        t_all = otsu_threshold(norm.ravel())
        body = ~_border_connected(norm < t_all)
        thresholds = [t_all]
        if body.sum() > 0.1 * body.size:
            inside = norm[body]
            thresholds.append(otsu_threshold(inside))
            thresholds += [float(q) for q in np.percentile(inside, _BODY_PERCENTILES)]
        outline = _body_columns(body)
        mid = 0.5 * (outline[0] + outline[1]) if outline else 0.5 * norm.shape[1]
        fields = [_inner_dark(norm < t, 0) for t in thresholds]
        crossing = [_crosses_midline(lungs, mid) for lungs in fields]
        if _lateral(crossing):
            return RegionBoxes.missing(width, height)  # a lateral, not a frontal film
        for t, lungs, crosses in zip(thresholds, fields, crossing, strict=True):
            if crosses:
                # At this threshold the mediastinum (or, on a white-out, a lung) is as dark as
                # the lungs: no pair can be split here, try the next threshold.
                continue
            for radius in _OPENING_RADII:
                marks = self._landmarks(lungs if radius == 0 else _inner_dark(norm < t, radius))
                if marks is not None:
                    return place_regions(_scale(marks, f), width, height)
        if outline is None:
            return RegionBoxes.missing(width, height)
        cols = np.arange(norm.shape[1])[None, :]
        for lungs in fields[1:]:
            for side in (lungs & (cols < mid), lungs & (cols >= mid)):
                marks = self._mirror(side, mid, norm.shape)
                if marks is not None:
                    boxes = place_regions(_scale(marks, f), width, height)
                    return replace(boxes, method="mirrored")
        boxes = place_regions(_scale(_template(outline, norm.shape), f), width, height)
        return replace(boxes, method="template")

    def _mirror(self, side: Mask, mid: float, shape: tuple[int, ...]) -> ThoraxLandmarks | None:
        """Both lung boxes from one lung field, reflected across the body midline."""
        box = _lung_box(side) if side.sum() >= self.min_lung_area * side.size else None
        h, w = shape[0], shape[1]
        if box is None or box[2] - box[0] < 0.06 * w or box[3] - box[1] < 0.15 * h:
            return None
        if box[0] < mid < box[2] + 0.02 * w or box[0] - 0.02 * w < mid < box[2]:
            return None  # touches the midline: not one lung field
        other = (2 * mid - box[2], box[1], 2 * mid - box[0], box[3])
        right, left = (box, other) if box[2] <= mid else (other, box)
        if right[0] < 0 or left[2] > w:
            return None
        return ThoraxLandmarks(right_lung=right, left_lung=left, midline_x=mid)

    def _landmarks(self, lungs: Mask) -> ThoraxLandmarks | None:
        mid = _midline(lungs)
        if mid is None:
            return None
        cols = np.arange(lungs.shape[1])[None, :]
        right_mask, left_mask = lungs & (cols < mid), lungs & (cols >= mid)
        min_area = self.min_lung_area * lungs.size
        if min(right_mask.sum(), left_mask.sum()) < min_area:
            return None
        if not _comparable(right_mask, left_mask):
            return None
        right, left = _lung_box(right_mask), _lung_box(left_mask)
        if right is None or left is None or not _plausible(right, left, lungs.shape):
            return None
        right, left = self._even_bases(right, left)
        heart = _heart_box(right_mask, left_mask, right, left)
        return ThoraxLandmarks(right_lung=right, left_lung=left, midline_x=mid, heart=heart)

    def _even_bases(self, right: Box, left: Box) -> tuple[Box, Box]:
        height = max(right[3] - right[1], left[3] - left[1])
        if abs(right[3] - left[3]) <= self.max_base_gap * height:
            return right, left
        base = max(right[3], left[3])
        return (right[0], right[1], right[2], base), (left[0], left[1], left[2], base)


def _plausible(right: Box, left: Box, shape: tuple[int, ...]) -> bool:
    h, w = shape[0], shape[1]
    for x0, y0, x1, y1 in (right, left):
        if x1 - x0 < 0.06 * w or y1 - y0 < 0.15 * h or y0 > 0.45 * h:
            return False  # too small, or apex in the lower half (not a lung field)
    hr, hl = right[3] - right[1], left[3] - left[1]
    return min(hr, hl) / max(hr, hl) > 0.4 and right[2] <= left[0] + 1


def _comparable(right_mask: Mask, left_mask: Mask) -> bool:
    """Two lungs of broadly similar area (a unilateral white-out still leaves > 25 %)."""
    a, b = int(right_mask.sum()), int(left_mask.sum())
    return min(a, b) > 0.25 * max(a, b)


def _heart_box(right_mask: Mask, left_mask: Mask, right: Box, left: Box) -> Box | None:
    """Gap between the medial lung borders, in the rows where it is wider than above."""
    top, bottom = int(min(right[1], left[1])), int(max(right[3], left[3]))
    gaps: list[tuple[int, float, float]] = []
    for row in range(top, bottom):
        r_cols, l_cols = np.flatnonzero(right_mask[row]), np.flatnonzero(left_mask[row])
        if r_cols.size and l_cols.size:
            gaps.append((row, float(r_cols[-1] + 1), float(l_cols[0])))
    if len(gaps) < 8:
        return None
    widths = np.array([g[2] - g[1] for g in gaps])
    rows = np.array([g[0] for g in gaps])
    upper = widths[(rows - top) < 0.4 * (bottom - top)]
    ref = float(np.median(upper)) if upper.size else float(np.median(widths))
    wide = [g for g in gaps if g[2] - g[1] > 1.3 * ref and g[0] - top > 0.3 * (bottom - top)]
    if len(wide) < 3:
        return None
    # 20th/80th percentiles of the medial borders: robust to rows where a lung base is
    # hidden (liver, effusion) and the "medial border" is really the lateral wall.
    x0 = float(np.percentile([g[1] for g in wide], 20))
    x1 = float(np.percentile([g[2] for g in wide], 80))
    mid, tw = 0.5 * (right[2] + left[0]), left[2] - right[0]
    # The right heart border rarely lies more than 30 % of the thorax width right of the
    # midline (image left); the left border can reach far out in cardiomegaly.
    x0, x1 = max(x0, mid - 0.30 * tw), min(x1, mid + 0.55 * tw)
    if x1 - x0 < 0.15 * tw:
        return None
    return (x0, float(wide[0][0]), x1, float(bottom))


def _scale(marks: ThoraxLandmarks, f: int) -> ThoraxLandmarks:
    def up(box: Box) -> Box:
        return (box[0] * f, box[1] * f, box[2] * f, box[3] * f)

    return ThoraxLandmarks(
        right_lung=up(marks.right_lung),
        left_lung=up(marks.left_lung),
        midline_x=marks.midline_x * f,
        heart=None if marks.heart is None else up(marks.heart),
    )


def _body_columns(body: Mask) -> tuple[float, float] | None:
    """Columns of the body outline (at least half the rows inside the body)."""
    cols = np.flatnonzero(body.mean(axis=0) >= 0.5)
    if cols.size == 0:
        return None
    x0, x1 = float(cols[0]), float(cols[-1] + 1)
    if not 0.35 * body.shape[1] <= x1 - x0 <= 0.98 * body.shape[1]:
        return None
    return x0, x1


def _lateral(crossing: list[bool]) -> bool:
    """A lateral film: dark across the midline at the body's own Otsu threshold (the second
    one; on a frontal film the mediastinum is brighter than that), at both lowest
    percentiles (a white-out lateral: only the retrosternal/retrocardiac air stays dark),
    or at most thresholds. Frontal films (bedside AP with white lungs included) cross at
    the high percentiles, where the mediastinum is as dark as the lungs, or at one."""
    if 2 * sum(crossing) > len(crossing):
        return True
    return len(crossing) == 2 + len(_BODY_PERCENTILES) and (
        crossing[1] or (crossing[-1] and crossing[-2])
    )


def _crosses_midline(lungs: Mask, mid: float) -> bool:
    """A dark field spans the midline in over 10 % of the rows, as on a lateral film (on a
    frontal one the mediastinum and spine separate the lungs in every row)."""
    m = int(mid)
    rows = lungs[:, max(0, m - 2) : m + 3].all(axis=1)
    return bool(int(rows.sum()) > 0.10 * lungs.shape[0])


# Template (last resort): standard frontal-chest fractions. The lung fields span 82 % of
# the body outline's width (soft tissue lateral to the ribs), the mediastinum 17 % of it
# around the midline; apices at 12 % and costophrenic angles at 79 % of the film height.
_TEMPLATE_THORAX = 0.82
_TEMPLATE_MEDIASTINUM = 0.17
_TEMPLATE_Y = (0.12, 0.79)


def _template(outline: tuple[float, float], shape: tuple[int, ...]) -> ThoraxLandmarks:
    mid = 0.5 * (outline[0] + outline[1])
    hw = 0.5 * _TEMPLATE_THORAX * (outline[1] - outline[0])
    mw = _TEMPLATE_MEDIASTINUM * hw
    y0, y1 = _TEMPLATE_Y[0] * shape[0], _TEMPLATE_Y[1] * shape[0]
    return ThoraxLandmarks(
        right_lung=(mid - hw, y0, mid - mw, y1),
        left_lung=(mid + mw, y0, mid + hw, y1),
        midline_x=mid,
    )
