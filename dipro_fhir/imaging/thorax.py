"""Regions from the thorax outline when the lung fields cannot be measured (issue 22).

A white lung (ARDS, bilateral effusion, consolidation) is as bright as the soft tissue and
the abdomen: a locator that looks for dark lung fields finds only the apices, or nothing,
and the bases it would be checked against are hidden. Quality control then refused such
films (``thorax-size``, ``regions-template``, ``lung-failed``), and they are exactly the
films of the sickest patients: missing not at random.

What stays visible on such a film is the thorax outline: the body's edges against the
outside air, and the spine and mediastinum, a bright column in the middle of it.
:func:`thorax_landmarks` places the two lung fields from it:

* the lungs span :data:`LUNG_SPAN` of the outline's width around its centre, the
  mediastinum :data:`MEDIASTINUM_SPAN` of it (the frontal-chest proportions of the geometric
  locator's template: soft tissue lateral to the ribs);
* they reach from the apices the locator found (both of its lung boxes starting above
  :data:`MAX_APEX_Y` of the film height), else from :data:`APEX_Y`, down to the bases the
  locator found where its lung boxes lie over the outline's lung fields and end below
  :data:`MIN_BASE_Y` (QC refused them because the bases are hidden, not because they are
  wrong), else to :data:`BASE_Y`. The diaphragm's steepest rise
  (:func:`~dipro_fhir.imaging.qc_measures.visible_dome`) was tried for the bases and not
  taken: on a white lung it is the opacity's edge (synthetic films: bases 0.15-0.2 lung
  heights too high).

It applies only where the outline itself is found and plausible (:func:`thorax_outline`):
outside air in the frame; the outline inside the frame on both sides, or on one side with
the other mirrored across the midline between the lung fields the locator measured when
that lies in the outline's middle third (never across a template's or a mirrored
placement's midline, which is the outline's own centre); a trunk at least
:data:`MIN_TRUNK_ROWS` of the film high; and a bright central column (the columns within
:data:`MAX_OFF_CENTRE` of the outline's width from its centre: spine and mediastinum) at
least :data:`MIN_SPINE_CONTRAST` brighter than the chest wall (:data:`CHEST_WALL`). A blank
film, noise, a lateral film (the geometric locator places nothing on those: no refusal to
undo) or a shape without a spine gets nothing, and QC's refusal stands.

The placement is marked (``RegionBoxes.method == "thorax"``); quality control checks it
like any other (body outline, sizes, sides, heart) except against the film-measured lung
base (the base is what could not be seen; a lower zone or angle far below a plainly seen
dome still fails, ``below-dome``), and caps every region's confidence at
``THORAX_CONFIDENCE`` (:mod:`dipro_fhir.imaging.qc`). The pipeline reports each such film
(``regions-from-thorax``, :mod:`dipro_fhir.imaging.events`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from dipro_fhir.imaging.boxes import (
    APPROXIMATE_METHODS,
    Box,
    RegionBoxes,
    ThoraxLandmarks,
    place_regions,
)
from dipro_fhir.imaging.qc import THORAX_METHOD, PlacementQC, check_placement
from dipro_fhir.imaging.qc_measures import Film, Image, measure_film
from dipro_fhir.imaging.regions import _body_columns, box_blur

#: QC film reasons after which the film is placed from its thorax outline instead: the
#: lung fields were not found (only the apices, or nothing) or their bases are hidden.
FALLBACK_REASONS = frozenset({"thorax-size", "regions-template", "lung-failed"})
#: The lungs span this fraction of the body outline's width, the mediastinum this
#: (``regions._TEMPLATE_THORAX`` / ``_TEMPLATE_MEDIASTINUM``: soft tissue lateral to the ribs).
LUNG_SPAN = 0.82
MEDIASTINUM_SPAN = 0.17
#: Apices and bases as fractions of the film height when they are not seen.
APEX_Y = 0.12
BASE_Y = 0.79
#: A locator's lung tops are taken for the apices when they lie above this (film height),
#: its bases when its lungs lie over the outline's and end below this.
MAX_APEX_Y = 0.4
MIN_BASE_Y = 0.6
#: The trunk (rows where the outline is at least 80 % of its full width) must cover this
#: much of the film height.
MIN_TRUNK_ROWS = 0.4
#: The bright central column (spine, mediastinum) may lie this far (outline widths) from
#: the outline's centre, and must be this much brighter (normalised range) than the
#: chest wall.
MAX_OFF_CENTRE = 0.1
MIN_SPINE_CONTRAST = 0.05
#: The chest wall: the outline's outermost columns, outside the lung fields (which span
#: :data:`LUNG_SPAN` of it; an opacified lung may be as bright as the spine, the chest wall's
#: soft tissue is not).
CHEST_WALL = 0.43
#: Pixels (working image) of the body's edge left out of the chest wall: the film's blur
#: darkens them, which would make any bright shape look brighter in its middle.
EDGE_PX = 2


def thorax_outline(film: Film, midline: float | None = None) -> tuple[float, float] | None:
    """``(x0, x1)``, the thorax outline's columns in working pixels of ``film``, or ``None``
    when no plausible outline is found (module docstring). Where the outline runs out of
    the frame on one side only, a ``midline`` (working pixels: the mediastinum between the
    lung fields the locator found) mirrors the seen side's edge across it."""
    if film.no_air:
        return None  # no outside air in the frame: the chest wall is not seen
    body, norm = film.body, film.norm
    h, w = body.shape
    cols = _body_columns(body)
    if cols is None:
        return None
    x0, x1 = cols
    cut = (x0 < 1, x1 > w - 1)
    if all(cut):
        return None  # the outline runs out of the frame on both sides
    if any(cut):
        # One side runs out of the frame: mirror the other edge across the locator's midline,
        # if there is one in the outline's middle third.
        if midline is None or abs(midline - 0.5 * (x0 + x1)) > (x1 - x0) / 6:
            return None
        x0, x1 = (2 * midline - x1, x1) if cut[0] else (x0, 2 * midline - x0)
    visible = min(x1, w) - max(x0, 0)
    trunk = np.flatnonzero(body.sum(axis=1) >= 0.8 * visible)
    if trunk.size < MIN_TRUNK_ROWS * h:
        return None
    rows = slice(int(trunk[0]), int(trunk[-1]) + 1)
    # Inside the body, off its edge (blurred into the air): the chest wall's own grey.
    inside = (box_blur(body.astype(np.float64), EDGE_PX) > 1 - 1e-9)[rows]
    profile = (norm[rows] * inside).sum(axis=0) / np.maximum(inside.sum(axis=0), 1)
    profile = np.where(inside.any(axis=0), profile, np.nan)
    cols_x = np.arange(w) + 0.5
    offset = (cols_x - 0.5 * (x0 + x1)) / (x1 - x0)  # -0.5 .. 0.5 across the outline
    centre = profile[(np.abs(offset) <= MAX_OFF_CENTRE) & np.isfinite(profile)]
    lateral = profile[(np.abs(offset) >= CHEST_WALL) & np.isfinite(profile)]
    if centre.size == 0 or lateral.size == 0:
        return None
    if float(centre.mean()) - float(lateral.mean()) < MIN_SPINE_CONTRAST:
        return None  # no bright central column: not a frontal chest
    return x0, x1


def _agrees(found: Box | None, lung: Box) -> bool:
    """A placed lung box over the outline's lung field: most of either's width shared."""
    if found is None:
        return False
    shared = min(found[2], lung[2]) - max(found[0], lung[0])
    return shared >= 0.7 * max(found[2] - found[0], lung[2] - lung[0])


def thorax_landmarks(image: Image, placed: RegionBoxes | None = None) -> ThoraxLandmarks | None:
    """The two lung fields from the thorax outline of ``image`` (module docstring), in full
    pixels, or ``None`` when the outline is not found. ``placed`` (the refused placement)
    lends its lung tops as the apices, and its bases where its lungs lie over the outline's
    lung fields and end in the lower part of the film (their bases were not checkable)."""
    film = measure_film(image)
    midline = None
    if placed is not None and placed.method not in APPROXIMATE_METHODS:
        # A midline between lung fields the locator measured (a template's is the outline's
        # own centre: mirroring across it would take a cut-off outline for a whole one).
        rl, ll = placed.get("right_lung"), placed.get("left_lung")
        if rl is not None and ll is not None and rl[2] <= ll[0]:
            midline = 0.5 * (rl[2] + ll[0]) / film.f
    outline = thorax_outline(film, midline)
    if outline is None:
        return None
    f, height = film.f, float(image.shape[0])
    x0, x1 = outline[0] * f, outline[1] * f
    mid, half = 0.5 * (x0 + x1), 0.5 * LUNG_SPAN * (x1 - x0)
    mhalf = 0.5 * MEDIASTINUM_SPAN * (x1 - x0)
    top, bottom = APEX_Y * height, BASE_Y * height
    right: Box = (mid - half, top, mid - mhalf, bottom)
    left: Box = (mid + mhalf, top, mid + half, bottom)
    if placed is not None:
        found = (placed.get("right_lung"), placed.get("left_lung"))
        tops = [b[1] for b in found if b is not None]
        if len(tops) == 2 and max(tops) < MAX_APEX_Y * height:
            top = min(tops)
        if _agrees(found[0], right) and _agrees(found[1], left):
            bases = [b[3] for b in found if b is not None]
            if min(bases) > MIN_BASE_Y * height:
                bottom = max(bases)
    right, left = (right[0], top, right[2], bottom), (left[0], top, left[2], bottom)
    return ThoraxLandmarks(right_lung=right, left_lung=left, midline_x=mid)


def fallback_placement(
    image: Image, boxes: RegionBoxes, qc: PlacementQC
) -> tuple[RegionBoxes, PlacementQC] | None:
    """The placement from the thorax outline and its QC, for a film whose placement QC
    refused for one of :data:`FALLBACK_REASONS`; ``None`` when the reason is another one,
    the outline is not found, or QC refuses this placement too."""
    if qc.film_ok or qc.film_reason not in FALLBACK_REASONS:
        return None
    marks = thorax_landmarks(image, boxes)
    if marks is None:
        return None
    placed = place_regions(marks, boxes.width, boxes.height)
    placed = replace(placed, method=THORAX_METHOD)
    verdict = check_placement(image, placed)
    return (placed, verdict) if verdict.film_ok else None
