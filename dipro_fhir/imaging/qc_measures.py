"""What region placement QC (:mod:`dipro_fhir.imaging.qc`) measures on the film itself,
independently of the locator: the body outline and the lung bases.

:func:`measure_film` downsamples and normalises the film and finds its body outline (the
pixels not connected to the outside air at the film border; the whole frame when the film
shows no outside air); :func:`inside_body` is how much of a box lies inside it.
:func:`lung_base` measures a lung's base in the lateral part of its box: the first row below
mid-lung from which the profile stays bright, or, for a registered placement, the steepest
dark-to-bright rise near the box; :func:`visible_dome` is that rise only where it is steep
(the dome plainly seen). :func:`reference_bases` decides which measured base each
lung is checked against (an opacity at one base only raises what is measured there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dipro_fhir.imaging.boxes import Box
from dipro_fhir.imaging.regions import _border_connected, _downsample, box_blur, otsu_threshold

Image = npt.NDArray[np.floating]

#: Outside air is darker than this (of the film's 1..99 % range) whatever Otsu's threshold
#: says: on hazy bedside films Otsu's threshold (0.4..0.7 on the development films) takes the
#: upper chest and the shoulders for air reaching in from the border.
AIR_MAX = 0.3
#: Below the base the profile stays bright for at least this fraction of the film height
#: (a nodule or a rib crossing is shorter).
BASE_RUN = 0.08
STAYS_BRIGHT = 0.7
#: The steepest-rise base of a registered placement: averaging run (fraction of the film
#: height), least rise (fraction of the normalised range), and how far below the box it looks.
RISE_RUN = 0.06
MIN_RISE = 0.05
BASE_SEARCH_BELOW = 0.3
#: The diaphragm is plainly seen (:func:`visible_dome`) where the steepest rise is at least
#: this (of the normalised range). On the development films the kept, plausible atlas angle
#: and lower-zone boxes had rises 0.04..0.41; 0.15 keeps the clear edges only (issue 23).
DOME_RISE = 0.15


@dataclass(frozen=True, slots=True)
class Film:
    """A film as the checks measure it: downsampled by ``f``, normalised to its 1..99 %
    range (``norm``), its body outline (``body``), and whether it shows no outside air."""

    norm: npt.NDArray[np.float64]
    body: npt.NDArray[np.bool_]
    f: int
    no_air: bool


def measure_film(image: Image) -> Film:
    """Downsample and normalise ``image`` (display-oriented ``[H, W]``) and find its body
    outline: the pixels not connected to the outside air at the film border."""
    small, f = _downsample(image, 160)
    lo, hi = np.percentile(small, [1.0, 99.0])
    norm = box_blur(np.clip((small - lo) / max(hi - lo, 1e-6), 0.0, 1.0), 1)
    air = _border_connected(norm < min(otsu_threshold(norm.ravel()), AIR_MAX))
    # The outline: per row, everything between the first and last pixel that is not outside
    # air (lungs reach the outside air through the neck on many films; they are inside).
    cols = np.arange(norm.shape[1])[None, :]
    solid = ~air
    first = np.where(solid.any(axis=1), solid.argmax(axis=1), norm.shape[1])[:, None]
    last = np.where(solid.any(axis=1), norm.shape[1] - 1 - solid[:, ::-1].argmax(axis=1), -1)
    body = (cols >= first) & (cols <= last[:, None])
    # Air must be a real margin: lung touching the frame edge is not outside air.
    no_air = bool(air.mean() < 0.03 or body.mean() < 0.3)
    if no_air:
        body = np.ones_like(body)
    return Film(norm=norm, body=body, f=f, no_air=no_air)


def _rise(profile: npt.NDArray[np.float64], start: int, run: int, level: float = 0.5) -> int | None:
    """First index >= ``start`` from which ``profile`` stays above ``level`` of the way
    from the lung (30th percentile before ``start``) to the bright side, for ``run``."""
    ahead = profile[start:]
    if ahead.size < 2 or start < 2:
        return None
    lung = float(np.percentile(profile[max(0, start - 3 * run) : start + 1], 30))
    bright = float(np.percentile(ahead, 95))
    if bright - lung < 0.08:
        return None  # no contrast: opacified base, nothing to measure
    above = ahead > lung + level * (bright - lung)
    for i in range(above.size):
        # Bright for a run, and mostly bright from there on (abdomen, or the chest wall and
        # beyond; bowel gas leaves dark patches), unlike a nodule or a rib.
        if above[i : i + run].all() and above[i:].mean() >= STAYS_BRIGHT:
            return start + i
    return None


def _steepest_rise(
    profile: npt.NDArray[np.float64], start: int, stop: int, run: int
) -> tuple[int, float] | None:
    """The row in ``[start, stop)`` where the mean of the next ``run`` rows exceeds the mean
    of the previous ``run`` the most (at least by :data:`MIN_RISE`): the diaphragm's edge,
    with that rise (of the normalised range)."""
    best, rise = None, MIN_RISE
    for row in range(max(start, run), min(stop, profile.size - run)):
        step = float(profile[row : row + run].mean() - profile[row - run : row].mean())
        if step > rise:
            best, rise = row, step
    return None if best is None else (best, rise)


def _strip_bases(
    film: Film, lung: Box, image_left: bool, near_box: bool
) -> list[tuple[int, float]]:
    """Per lateral strip of ``lung`` the base row (working pixels) and its rise (the first
    rule's rise is not measured: 0)."""
    f, n = film.f, film.norm
    x0, y0, x1, y1 = (v / f for v in lung)
    w, h = x1 - x0, y1 - y0
    strips = ((0.08, 0.4), (0.05, 0.22)) if image_left else ((0.6, 0.92), (0.78, 0.95))
    out = []
    for a, b in strips:  # the lateral third, and the outermost part of it
        c0, c1 = x0 + a * w, x0 + b * w
        cols = n[:, max(0, int(c0)) : max(int(c0) + 1, int(c1))]
        profile = box_blur(cols.mean(axis=1)[None, :], 2)[0]
        if near_box:
            run = max(2, int(RISE_RUN * n.shape[0]))
            found = _steepest_rise(profile, int(y0 + 0.5 * h), int(y1 + BASE_SEARCH_BELOW * h), run)
        else:
            row = _rise(profile, int(y0 + 0.5 * h), max(2, int(BASE_RUN * n.shape[0])))
            found = None if row is None else (row, 0.0)
        if found is not None:
            out.append(found)
    return out


def lung_base(film: Film, lung: Box, image_left: bool, *, near_box: bool = False) -> float | None:
    """Measured lung base (row, full-image pixels) under the lateral third of ``lung`` (an
    enlarged heart reaches into the medial part of the left lung box).

    By default the first row below mid-lung from which the profile stays bright; with
    ``near_box`` (a registered placement, whose box is near the anatomy) the steepest
    dark-to-bright rise between mid-lung and :data:`BASE_SEARCH_BELOW` of the box's height
    below it (on the development films: within 0.1 lung heights of the annotated base for
    73 % of the lungs, against 61 % for the first rule on the same boxes)."""
    found = _strip_bases(film, lung, image_left, near_box)
    # A heart or an opacity reaching into a strip only raises what that strip measures.
    return float(max(row for row, _ in found) * film.f) if found else None


def visible_dome(film: Film, lung: Box, image_left: bool) -> float | None:
    """The steepest-rise base of ``lung`` (:func:`lung_base` with ``near_box``), only where
    the diaphragm is plainly seen: the rise at that row is at least :data:`DOME_RISE`. None
    on a hazy base (opacified, a bedside film's haze): there nothing is measured."""
    found = _strip_bases(film, lung, image_left, near_box=True)
    if not found:
        return None
    row, rise = max(found)
    return float(row * film.f) if rise >= DOME_RISE else None


def inside_body(film: Film, box: Box) -> float:
    """The fraction of ``box`` (full-image pixels) inside the film's body outline."""
    f = film.f
    x0, y0 = max(0, int(box[0] / f)), max(0, int(box[1] / f))
    x1, y1 = max(x0 + 1, int(np.ceil(box[2] / f))), max(y0 + 1, int(np.ceil(box[3] / f)))
    part = film.body[y0:y1, x0:x1]
    return float(part.mean()) if part.size else 0.0


def reference_bases(
    measured: dict[str, float | None], apart: float, at_most: float
) -> tuple[dict[str, float | None], tuple[str, ...]]:
    """The base each lung is checked against, and the lungs that take the other's.

    An opacity at a lung base (effusion, consolidation, collapse) is as bright as the
    diaphragm below it, so the profile under that lung turns bright at the opacity's top: the
    measured base is too high, and a correctly placed lung box looks as if it reached below
    the diaphragm. That dropped the sickest films (issue 22: 2 % of the mildest films, 36 %
    of the most severe on the synthetic world, with placements that matched the true lungs
    better than the kept ones). The two hemidiaphragms lie close together, and an opacity
    only raises what is measured, so a lung whose measured base is higher than the other
    lung's is checked against the other's: the lower of the two. A box reaching below both
    measured bases still fails. Lungs measured more than ``apart`` rows above the other are
    reported (``PlacementQC.base_from_other_side``).

    Bases more than ``at_most`` rows apart are each kept: on two development films one base
    was measured in the abdomen (bowel gas keeps the profile dark), and taking it for both
    let two whole wrong placements through. With that bound the development films lose no
    flag (7 wrong regions unflagged before and after) and keep 2 more films; on the
    synthetic world the most severe tenth of films loses 15 % instead of 36 % (issue 22).
    """
    found = {side: row for side, row in measured.items() if row is not None}
    if len(found) < 2 or max(found.values()) - min(found.values()) > at_most:
        return measured, ()
    lower = max(found.values())
    raised = tuple(side for side, row in found.items() if row < lower - apart)
    return dict.fromkeys(measured, lower), raised
