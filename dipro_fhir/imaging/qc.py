"""Quality control of a region placement: anatomical plausibility checks and a confidence
per region, whatever locator placed the boxes (issue 11: "no wrong box without a flag").

A wrong box silently feeds a wrong region into every score of the patient, so each of the
ten boxes is checked against the film and against the other boxes:

* ``outside-body``: the box must lie inside the body outline (pixels not connected to the
  outside air at the film border; a film with no outside air in the frame has the whole
  frame as its outline, recorded as :attr:`PlacementQC.no_outside_air`);
* ``below-diaphragm``: lungs, lower zones and costophrenic angles must end at the lung base.
  The base is measured on the film, independently of the locator: in the lateral third of
  each lung box the row profile goes from dark lung to the bright diaphragm/abdomen; the
  base is the first row below mid-lung from which the profile stays bright;
* ``beyond-chest-wall``: lungs and angles must not reach further from the midline than
  :data:`SYMMETRY_MAX` times the other lung (a box over the arm or shoulder does; a measured
  chest wall, like the base, was tried and found unreliable on the development films);
* ``angle-not-at-base`` / ``above-base``: a costophrenic angle sits at the lateral base of
  its lung box and reaches down to the measured base;
* ``angle-at-frame-edge``: a costophrenic angle box must not reach the film's lateral edge:
  there the lung runs out of the frame at its base, so the recess is at or beyond the edge
  and the box is cut off (or placed over the soft tissue by a registration that put the
  lung partly outside the film);
* ``heart-position``: the cardiac silhouette lies between the lungs and below the hila;
* ``left-right``: patient-right regions on the image left of the midline, left ones right;
* ``size``: width, height and aspect within the ranges measured on the annotated
  development films (``tests/data/regions/hannover_regions.coco.json``), widened by
  :data:`SIZE_SLACK`; the thorax (union of the lung boxes) within its range of the film.

* ``below-dome`` (registered placements): a lower zone or costophrenic angle whose middle
  lies more than :data:`DOME_TOLERANCE` lung heights below a plainly visible diaphragm
  (:func:`~dipro_fhir.imaging.qc_measures.visible_dome`; the lower of the two sides' when
  they are close, as for ``below-diaphragm``): a box mostly over the abdomen or bowel gas.
  The twice wider tolerance of ``below-diaphragm`` lets such a box pass (issue 23: a left
  angle box mostly below the diaphragm, kept unflagged). Where the dome is not plainly seen
  (a hazy base) nothing is measured, and the lung, lower zone and angle of that side get at
  most :data:`UNSEEN_BASE_CONFIDENCE`: their base could not be checked.

* ``locator-disagreement``: when the locator reports its own confidence per region (the
  atlas locator: how much its best-matching atlas films agree), it must reach
  :data:`MIN_AGREEMENT` (:data:`MIN_AGREEMENT_ANGLE` for the small costophrenic boxes).

The checks measured on the film (outline, base, chest wall) were set up against a locator that
thresholds the same film, whose failures are gross (a lung box 100-200 px below the
diaphragm). A registered placement (``atlas``, ``model``) fails differently, and on hazy
bedside films the measured base is often wrong by more than the placement: for those
placements the film-measured tolerances are :data:`REGISTERED_SLACK` times wider, the base
is the steepest dark-to-bright rise near the box
(:func:`~dipro_fhir.imaging.qc_measures.lung_base`), and the locator's own
agreement and thorax match are checked as well.

A placement from the thorax outline (``method == "thorax"``,
:mod:`dipro_fhir.imaging.thorax`: a white lung whose fields the locator could not measure) is
checked like any other, except against the film-measured lung base (what could not be
seen) but against a plainly visible dome (``below-dome``, a lower zone or angle alone goes as
missing then, without failing the film); every region's confidence is at most
:data:`THORAX_CONFIDENCE`.

Each check gives a margin; the region's confidence is ``min(1, 0.5 + margin / 2)`` over its
checks, so a region fails (``confidence < 0.5``) exactly when a check fails. A failed region
goes downstream as missing. The whole film fails when the boxes are not measured from
lung fields (``template`` placement), when a registered placement's thorax is unlike the
films it was registered from (:data:`MIN_THORAX_MATCH`) or it placed a region outside the film
(``region-off-film``), when a lung fails, or when
:data:`MAX_FAILED_REGIONS` (registered placements: :data:`MAX_FAILED_REGISTERED`) or more
regions fail.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from dipro.vocab import REGIONS
from dipro_fhir.imaging.boxes import Box, RegionBoxes
from dipro_fhir.imaging.qc_measures import (
    Image,
    inside_body,
    lung_base,
    measure_film,
    reference_bases,
    visible_dome,
)

#: Per region: (width, height) as fractions of the thorax box and aspect (w/h) ranges,
#: measured on the 64 annotated development films (min..max).
SIZE_RANGES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "left_lung": ((0.31, 0.51), (0.78, 1.0), (0.37, 0.81)),
    "right_lung": ((0.32, 0.53), (0.72, 1.0), (0.44, 0.94)),
    "left_lower_lung_zone": ((0.31, 0.51), (0.29, 0.38), (1.08, 2.53)),
    "right_lower_lung_zone": ((0.32, 0.53), (0.23, 0.37), (1.34, 2.81)),
    "left_hilar_structures": ((0.11, 0.20), (0.29, 0.42), (0.50, 0.89)),
    "right_hilar_structures": ((0.13, 0.22), (0.29, 0.38), (0.54, 1.06)),
    "left_costophrenic_angle": ((0.14, 0.20), (0.17, 0.28), (0.76, 1.31)),
    "right_costophrenic_angle": ((0.13, 0.18), (0.17, 0.27), (0.88, 1.29)),
    "cardiac_silhouette": ((0.38, 0.62), (0.40, 0.64), (0.91, 2.00)),
    "mediastinum": ((0.14, 0.29), (0.42, 0.77), (0.29, 0.94)),
}
#: Thorax (union of the lung boxes) as fractions of the film: width, height.
THORAX_RANGES = ((0.58, 0.92), (0.44, 0.93))
#: Ranges are widened by this factor on each side (box edges are read off by eye, +-15 px).
SIZE_SLACK = 0.5
#: Tolerance of the base check, as a fraction of the lung box's height; angles get more
#: (their box reaches below the recess, and the measured base is the recess's upper edge).
BASE_TOLERANCE = 0.18
ANGLE_TOLERANCE = 0.22
#: Lateral reach of one lung from the midline over the other's: at most this (measured
#: 0.64..1.37 on the annotated films; a box over the arm or shoulder reaches further).
SYMMETRY_MAX = 1.45
#: Minimum locator agreement (``RegionBoxes.confidence``) of a region, and of a
#: costophrenic angle (small boxes: a 10 px shift halves their IoU). On the development
#: films, leave-patient-out, the lowest agreements were those of films that cannot be read
#: (thorax out of frame, white-out) and of angles outside the film (docs/regions.md).
MIN_AGREEMENT = 0.4
MIN_AGREEMENT_ANGLE = 0.3
#: A registered placement whose thorax correlates less than this with the films it was
#: registered from (``RegionBoxes.match``) is not used: the locator does not know such a
#: thorax. On the development films, leave-patient-out: a rotated near white-out 0.44, the
#: plausible films 0.48..0.80 (one under 0.5, lost: the safe side).
MIN_THORAX_MATCH = 0.5
#: Film-measured tolerances are this many times wider for registered placements.
REGISTERED_SLACK = 2.0
#: Placements by a locator that registers or regresses the whole film.
REGISTERED_METHODS = frozenset({"atlas", "model"})
#: A film with this many failed regions is not used at all; for a registered placement
#: two are enough (its boxes move together, so two failures put the whole fit in doubt; on
#: the development films that drops a bilateral white-out and no film placed plausibly).
MAX_FAILED_REGIONS = 4
MAX_FAILED_REGISTERED = 2
#: Measured bases further apart than this (fraction of the lung height) are reported as a
#: base taken from the other side (an opacity, not the diaphragm, under the raised one). The
#: right hemidiaphragm normally sits higher: 0.14 lung heights on the NEMA test film.
BASES_APART = 0.2
#: Bases further apart than this (fraction of the lung height) are not an opacity over one
#: base but a wrong measurement of one of them (on the development films: an abdomen taken
#: for the base, 0.4-0.55 lung heights below the other side's); each side keeps its own.
MAX_RAISED = 0.3
#: ``below-dome``: the middle of a lower zone or angle box may lie this far (lung heights)
#: below a plainly visible diaphragm. On the development films (atlas, leave-patient-out)
#: the plausible boxes under a visible dome lay at most 0.04 below it, the geometric
#: locator's boxes judged wrong by eye for lying below the diaphragm 0.13..0.42.
DOME_TOLERANCE = 0.1
#: The most confidence a lung, lower zone or angle gets when its side's dome is not plainly
#: seen (a hazy base: the box cannot be checked there, so it is not sure, yet not failed).
UNSEEN_BASE_CONFIDENCE = 0.7
#: A placement from the thorax outline (:mod:`dipro_fhir.imaging.thorax`, a white lung whose
#: fields could not be measured): not checked against the film-measured lung base (what
#: could not be seen), and no region's confidence above :data:`THORAX_CONFIDENCE`.
THORAX_METHOD = "thorax"
THORAX_CONFIDENCE = 0.6
_SIDE = {
    r: ("left" if r.startswith("left") else "right" if r.startswith("right") else "")
    for r in REGIONS
}
_BASE_REGIONS = ("lung", "lower_lung_zone", "costophrenic_angle")


@dataclass(frozen=True, slots=True)
class RegionQC:
    """One region's verdict: ``confidence`` in [0, 1], ``reasons`` of the failed checks."""

    region: str
    confidence: float
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the region passed every check (and was placed)."""
        return self.confidence >= 0.5 and not self.reasons


@dataclass(frozen=True, slots=True)
class PlacementQC:
    """The checks of one film's placement.

    Attributes:
        regions: One verdict per region, ``dipro.vocab.REGIONS`` order (a region the
            locator did not place has confidence 0 and reason ``not-placed``).
        film_ok: Whether the film can be used at all.
        film_reason: Why not (stable code), ``""`` when usable.
        no_outside_air: No outside air in the frame (the body outline is the frame).
        base_from_other_side: Lungs (``right``/``left``) whose base was measured higher than
            the other lung's by more than an opacity allows for a diaphragm, and checked
            against the other lung's base
            (:func:`~dipro_fhir.imaging.qc_measures.reference_bases`).
    """

    regions: tuple[RegionQC, ...]
    film_ok: bool
    film_reason: str = ""
    no_outside_air: bool = False
    base_from_other_side: tuple[str, ...] = ()

    @property
    def failed(self) -> tuple[str, ...]:
        """Names of the regions that go downstream as missing."""
        if not self.film_ok:
            return tuple(REGIONS)
        return tuple(r.region for r in self.regions if not r.ok)


def _score(margin: float) -> float:
    return float(min(1.0, max(0.0, 0.5 + margin / 2.0)))


def _size_margin(region: str, box: Box, thorax: Box) -> float:
    tw, th = thorax[2] - thorax[0], thorax[3] - thorax[1]
    w, h = box[2] - box[0], box[3] - box[1]
    margins = []
    for value, (lo, hi) in zip(
        (w / tw, h / th, w / max(h, 1e-6)), SIZE_RANGES[region], strict=True
    ):
        lo, hi = lo * (1 - SIZE_SLACK), hi * (1 + SIZE_SLACK)
        margins.append(min(value - lo, hi - value) / max(hi - lo, 1e-6) * 4)
    return min(margins)


def check_placement(image: Image, boxes: RegionBoxes) -> PlacementQC:
    """Check every placed region of ``image`` (display-oriented ``[H, W]``).

    Returns:
        The per-region verdicts and whether the film is usable (module docstring).
    """
    film = measure_film(image)
    placed = {r: b for r, b in zip(REGIONS, boxes.boxes, strict=True) if b is not None}
    margins: dict[str, list[tuple[float, str]]] = {r: [] for r in REGIONS}
    if boxes.method == "none" or not placed:
        return PlacementQC(_verdicts(placed, margins), False, "regions-not-found", film.no_air)
    rl, ll = placed.get("right_lung"), placed.get("left_lung")
    if rl is None or ll is None:
        return PlacementQC(_verdicts(placed, margins), False, "lung-missing", film.no_air)
    thorax = (rl[0], min(rl[1], ll[1]), ll[2], max(rl[3], ll[3]))
    mid = 0.5 * (rl[2] + ll[0])
    h_img, w_img = image.shape[0], image.shape[1]
    registered = boxes.method in REGISTERED_METHODS
    slack = REGISTERED_SLACK if registered else 1.0
    inside_min = 1.0 - 0.2 * slack
    for region, box in placed.items():
        inside = inside_body(film, box)
        margins[region].append((2 * (inside - inside_min) / 0.2, "outside-body"))
        margins[region].append((_size_margin(region, box, thorax), "size"))
        cx = 0.5 * (box[0] + box[2])
        side = _SIDE[region]
        if side == "right":
            margins[region].append(((mid - cx) / (0.05 * w_img), "left-right"))
        elif side == "left":
            margins[region].append(((cx - mid) / (0.05 * w_img), "left-right"))
    measured = {
        side: lung_base(film, lung, side == "right", near_box=registered)
        for side, lung in (("right", rl), ("left", ll))
    }
    lung_height = max(rl[3] - rl[1], ll[3] - ll[1])
    bases, base_from_other = reference_bases(
        measured, BASES_APART * lung_height, MAX_RAISED * lung_height
    )
    domes, _ = reference_bases(
        {
            side: visible_dome(film, lung, side == "right")
            for side, lung in (("right", rl), ("left", ll))
        },
        BASES_APART * lung_height,
        MAX_RAISED * lung_height,
    )
    from_outline = boxes.method == THORAX_METHOD
    for side, lung in (("right", rl), ("left", ll)):
        if registered or from_outline:
            _check_dome(margins, placed, side, domes[side], lung[3] - lung[1])
    if from_outline:
        cap = 2 * (THORAX_CONFIDENCE - 0.5)  # _score(cap) == the cap
        for region in placed:
            margins[region].append((cap, "from-thorax-outline"))
    for side, lung in (("right", rl), ("left", ll)):
        image_left = side == "right"
        base = None if from_outline else bases[side]
        lh, lw = lung[3] - lung[1], lung[2] - lung[0]
        other = (ll[2] - mid) if image_left else (mid - rl[0])
        for part in _BASE_REGIONS:
            region = f"{side}_{part}"
            pbox = placed.get(region)
            if pbox is None:
                continue
            if base is not None:
                over = pbox[3] - base
                tol = (ANGLE_TOLERANCE if part == "costophrenic_angle" else BASE_TOLERANCE) * lh
                tol *= slack
                margins[region].append(((tol - over) / (0.05 * lh), "below-diaphragm"))
                if part == "costophrenic_angle":  # the angle must reach down to the base
                    margins[region].append(((tol + over) / (0.05 * lh), "above-base"))
            reach = (mid - pbox[0]) if image_left else (pbox[2] - mid)
            lateral = other * (1 + (SYMMETRY_MAX - 1) * slack) - reach
            margins[region].append((lateral / (0.05 * lw), "beyond-chest-wall"))
        cp_name = f"{side}_costophrenic_angle"
        cp = placed.get(cp_name)
        if cp is not None:
            at_base = min(cp[3] - (lung[3] - 0.1 * lh), cp[1] - (lung[1] + 0.5 * lh))
            lateral = (0.5 * (lung[0] + lung[2]) - 0.5 * (cp[0] + cp[2])) * (
                1 if image_left else -1
            )
            margins[cp_name].append((at_base / (0.05 * lh), "angle-not-at-base"))
            margins[cp_name].append((lateral / (0.05 * lw), "angle-not-at-base"))
            # Distance of the box's lateral edge from the film's lateral edge (>= 1 px).
            to_edge = cp[0] if image_left else w_img - cp[2]
            margins[cp_name].append((to_edge - 1.0, "angle-at-frame-edge"))
    if boxes.confidence is not None:
        for region, agreement in zip(REGIONS, boxes.confidence, strict=True):
            if region in placed:
                least = MIN_AGREEMENT_ANGLE if "costophrenic" in region else MIN_AGREEMENT
                margins[region].append(((agreement - least) / 0.1, "locator-disagreement"))
    heart = placed.get("cardiac_silhouette")
    if heart is not None:
        hx = 0.5 * (heart[0] + heart[2])
        between = min(hx - 0.5 * (rl[0] + rl[2]), 0.5 * (ll[0] + ll[2]) - hx) / (0.05 * w_img)
        hila = [
            placed[r][1] for r in ("left_hilar_structures", "right_hilar_structures") if r in placed
        ]
        below = (heart[1] - min(hila)) / (0.05 * h_img) if hila else 1.0
        margins["cardiac_silhouette"].append((min(between, below), "heart-position"))
    tw, th = (thorax[2] - thorax[0]) / w_img, (thorax[3] - thorax[1]) / h_img
    (wlo, whi), (hlo, hhi) = THORAX_RANGES
    thorax_margin = min(tw - wlo * 0.8, whi * 1.1 - tw, th - hlo * 0.8, hhi * 1.1 - th) / 0.05
    verdicts = _verdicts(placed, margins)
    failed = [v.region for v in verdicts if not v.ok]
    reason = ""
    if boxes.method == "template":
        reason = "regions-template"
    elif thorax_margin < 0:
        reason = "thorax-size"
    elif registered and boxes.match is not None and boxes.match < MIN_THORAX_MATCH:
        reason = "thorax-unmatched"
    elif registered and len(placed) < len(REGIONS):
        # It put a region outside the film: the thorax runs out of the frame (issue 23: a
        # rotated white-out with its left angle off the film was kept).
        reason = "region-off-film"
    elif "left_lung" in failed or "right_lung" in failed:
        reason = "lung-failed"
    elif len(_doubtful(verdicts, from_outline)) >= (
        MAX_FAILED_REGISTERED if registered else MAX_FAILED_REGIONS
    ):
        reason = "regions-failed"
    return PlacementQC(verdicts, not reason, reason, film.no_air, base_from_other)


def _doubtful(verdicts: tuple[RegionQC, ...], from_outline: bool) -> list[str]:
    """The failed regions that put the whole placement in doubt. On a placement from the
    thorax outline a lower zone or angle below a plainly seen dome (``below-dome``) does not:
    its base is a prior, not a fit, and the region alone goes as missing."""
    return [
        v.region
        for v in verdicts
        if not v.ok and not (from_outline and set(v.reasons) == {"below-dome"})
    ]


def _check_dome(
    margins: dict[str, list[tuple[float, str]]],
    placed: dict[str, Box],
    side: str,
    dome: float | None,
    lung_height: float,
) -> None:
    """``below-dome`` for ``side``'s lower zone and angle, or, with no visible dome, the
    confidence cap of its base regions (module docstring)."""
    if dome is None:
        for part in _BASE_REGIONS:
            if f"{side}_{part}" in placed:
                cap = 2 * (UNSEEN_BASE_CONFIDENCE - 0.5)  # _score(cap) == the cap
                margins[f"{side}_{part}"].append((cap, "base-not-seen"))
        return
    for part in ("lower_lung_zone", "costophrenic_angle"):
        box = placed.get(f"{side}_{part}")
        if box is not None:
            below = 0.5 * (box[1] + box[3]) - dome
            margin = (DOME_TOLERANCE * lung_height - below) / (0.05 * lung_height)
            margins[f"{side}_{part}"].append((margin, "below-dome"))


def _verdicts(
    placed: dict[str, Box], margins: dict[str, list[tuple[float, str]]]
) -> tuple[RegionQC, ...]:
    out = []
    for region in REGIONS:
        if region not in placed:
            out.append(RegionQC(region, 0.0, ("not-placed",)))
            continue
        checks = margins[region]
        confidence = min((_score(m) for m, _ in checks), default=1.0)
        reasons = tuple(sorted({why for m, why in checks if m < 0}))
        out.append(RegionQC(region, confidence, reasons))
    return tuple(out)


def apply_qc(boxes: RegionBoxes, qc: PlacementQC) -> RegionBoxes:
    """The placement with every failed region (all of them if the film failed) missing."""
    failed = set(qc.failed)
    kept = tuple(None if r in failed else b for r, b in zip(REGIONS, boxes.boxes, strict=True))
    return replace(boxes, boxes=kept)
