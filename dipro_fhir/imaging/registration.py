"""Axis-aligned affine registration of atlas thumbnails onto a film, box transfer, and the
local refinement of the thorax and of the lung bases (the ``atlas`` locator's geometry,
issue 11).

Coordinates are normalised to [-1, 1] over the film's content crop (``grid_sample``,
``align_corners=False``). A film point ``u`` samples atlas film ``i`` at ``s_i * u + t_i``
(:func:`scale_shift` of its four parameters).

The whole-film map is fitted to everything in the frame, the neck, the shoulders and the
abdomen too: on a film with more abdomen than the atlas films (an adult PA film, not a bedside
one) it fits the frame and leaves the thorax shifted up (on the NEMA PA film the right lung
box ended 0.12 lung heights above the recess). :func:`register_window` therefore fits each
atlas film once more, with the same four parameters, inside the thorax only (the fused lung
boxes widened by :data:`THORAX_PAD`) at the finer thumbnail size (issue 23).

One map per atlas film cannot fit both the apex and the bases of two different chests, and
the bases carry the smallest boxes (the costophrenic angles). :func:`refine_bases` therefore
registers each atlas film once more inside a window around each lung's lower lateral corner
at the finer thumbnail size, and moves that lung's lateral and lower edges, its lower zone's,
and its costophrenic angle with it (leave-patient-out on the 67 development films: mean IoU
of the angles 0.375/0.407 to 0.394/0.458, of the lower zones 0.604/0.597 to 0.622/0.623).

The annotated angle boxes put the recess on their lateral and lower edges, so an angle box
placed a few pixels medial of or above the recess misses it. :func:`hold_recess` widens each
angle box outward and downward until the recess the lung box places (its lower lateral
corner) lies inside it by :data:`RECESS_MARGIN` (issue 23).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dipro.vocab import REGIONS

#: Registration bounds: scale within exp(+-MAX_LOG_SCALE), shift within +-MAX_SHIFT of the
#: half-width (a film of the thorax is not a quarter of another film's thorax).
MAX_LOG_SCALE = 0.45
MAX_SHIFT = 0.45
STEPS = 60
_LR = 0.04
#: The base window, as fractions of the fused lung box around its lower lateral corner:
#: outward (over the chest wall), inward, up and down (over the diaphragm).
BASE_WINDOW = (0.15, 0.55, 0.45, 0.2)
#: Base refinement: samples per window side, optimiser steps, and how far the local map
#: may depart from the film's map (log scale about the window centre; shift, normalised).
BASE_GRID = 32
BASE_STEPS = 40
BASE_MAX_LOG_SCALE = 0.3
BASE_MAX_SHIFT = 0.1
#: The thorax window of :func:`register_window`: the union of the fused lung boxes widened
#: by these fractions of its width (each side) and height (above, below: the bases and the
#: recesses must be inside). Chosen before any measurement, not tuned.
THORAX_PAD = (0.1, 0.1, 0.25)
THORAX_GRID = 48
#: How far inside an angle box the recess must lie (:func:`hold_recess`), as fractions of
#: the lung box's width (outward) and height (downward): the 85th percentile of how far the
#: annotated recess lay outward of / below the placed lung box's corner on the 64 annotated
#: development films, leave-patient-out (``scripts/regions_base_offset.py --derive``).
RECESS_MARGIN = (0.09, 0.09)
_SIDES = ("right", "left")
_LUNG = {side: REGIONS.index(f"{side}_lung") for side in _SIDES}
_ZONE = {side: REGIONS.index(f"{side}_lower_lung_zone") for side in _SIDES}
_ANGLE = {side: REGIONS.index(f"{side}_costophrenic_angle") for side in _SIDES}
#: The lateral edge's coordinate (x0 or x1) of each side's boxes: the right lung is on the
#: image's left.
_LATERAL = {"right": 0, "left": 2}


def scale_shift(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scales ``[..., 2]`` and shifts ``[..., 2]`` of unconstrained params ``[..., 4]``
    (bounded by :data:`MAX_LOG_SCALE` and :data:`MAX_SHIFT`)."""
    return (torch.tanh(p[..., :2]) * MAX_LOG_SCALE).exp(), torch.tanh(p[..., 2:]) * MAX_SHIFT


def _theta(p: torch.Tensor) -> torch.Tensor:
    """``[B, 2, 3]`` affine of params ``[B, 4]`` (:func:`scale_shift`)."""
    s, t = scale_shift(p)
    theta = torch.zeros(p.shape[0], 2, 3)
    theta[:, 0, 0] = s[:, 0]
    theta[:, 1, 1] = s[:, 1]
    theta[:, 0, 2] = t[:, 0]
    theta[:, 1, 2] = t[:, 1]
    return theta


def ncc(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Normalised cross-correlation of every ``a[i]`` with ``b`` (or ``b[i]``): ``[B]``."""
    a = a - a.mean(dim=(2, 3), keepdim=True)
    b = b - b.mean(dim=(2, 3), keepdim=True)
    num = (a * b).sum(dim=(2, 3))
    den = torch.linalg.vector_norm(a, dim=(2, 3)) * torch.linalg.vector_norm(b, dim=(2, 3))
    out: torch.Tensor = (num / (den + 1e-6)).flatten()
    return out


def warp(atlas: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Each ``atlas[i]`` resampled onto the film's grid by params ``p[i]``."""
    grid = F.affine_grid(_theta(p), list(atlas.shape), align_corners=False)
    return F.grid_sample(atlas, grid, align_corners=False, padding_mode="border")


def register(
    atlas: torch.Tensor, film: torch.Tensor, start: torch.Tensor, size: int, steps: int = STEPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit the affine params of each ``atlas[i]`` onto ``film`` at ``size`` px from
    ``start``; return the params and the final correlations."""
    a = F.avg_pool2d(F.interpolate(atlas, size=(size, size), mode="area"), 3, 1, 1)
    f = F.avg_pool2d(F.interpolate(film, size=(size, size), mode="area"), 3, 1, 1)
    p = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([p], lr=_LR)
    with torch.enable_grad():
        for _ in range(steps):
            loss = -ncc(warp(a, p), f).sum()
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    with torch.no_grad():
        return p.detach(), ncc(warp(a, p.detach()), f)


def transfer(boxes: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Atlas boxes ``[K, 10, 4]`` (fractions) mapped onto the new film by params ``[K, 4]``."""
    s, t = scale_shift(p[:, None, :])
    return (((boxes * 2 - 1) - t.repeat(1, 1, 2)) / s.repeat(1, 1, 2) + 1) / 2


def thorax_window(fused: torch.Tensor) -> tuple[float, float, float, float]:
    """The window (fractions of the film, clipped) of :func:`register_window`: the union of
    the fused lung boxes ``fused[[right, left]]`` widened by :data:`THORAX_PAD`."""
    lungs = fused[[_LUNG["right"], _LUNG["left"]]]
    x0, y0 = float(lungs[:, 0].min()), float(lungs[:, 1].min())
    x1, y1 = float(lungs[:, 2].max()), float(lungs[:, 3].max())
    side, above, below = THORAX_PAD
    w, h = x1 - x0, y1 - y0
    return (
        max(x0 - side * w, 0.0),
        max(y0 - above * h, 0.0),
        min(x1 + side * w, 1.0),
        min(y1 + below * h, 1.0),
    )


def register_window(
    atlas: torch.Tensor,
    film: torch.Tensor,
    start: torch.Tensor,
    window: tuple[float, float, float, float],
    steps: int = STEPS,
) -> torch.Tensor:
    """Refit the whole-film params ``start`` ``[K, 4]`` of each ``atlas[i]`` (``[K, 1, S,
    S]``) onto ``film`` (``[1, 1, S, S]``) with the correlation taken inside ``window``
    (fractions ``x0, y0, x1, y1`` of the film) only; the params keep their meaning
    (:func:`transfer`)."""
    x0, y0, x1, y1 = window
    steps_ = torch.linspace(0.0, 1.0, THORAX_GRID)
    gy, gx = torch.meshgrid(y0 + (y1 - y0) * steps_, x0 + (x1 - x0) * steps_, indexing="ij")
    u = (torch.stack([gx, gy], dim=-1) * 2 - 1)[None]  # [1, G, G, 2]
    target = F.grid_sample(film, u, align_corners=False, padding_mode="border")
    target = target.expand(atlas.shape[0], -1, -1, -1)

    def sample(q: torch.Tensor) -> torch.Tensor:
        s, t = scale_shift(q)
        at = s[:, None, None, :] * u + t[:, None, None, :]
        return F.grid_sample(atlas, at, align_corners=False, padding_mode="border")

    p = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([p], lr=_LR)
    with torch.enable_grad():
        for _ in range(steps):
            loss = -ncc(sample(p), target).sum()
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    return p.detach()


def hold_recess(fused: torch.Tensor, margin: tuple[float, float] = RECESS_MARGIN) -> torch.Tensor:
    """The fused boxes ``[10, 4]`` with each costophrenic angle box widened outward and
    downward so that its lung box's lower lateral corner lies ``margin`` (fractions of the
    lung box's width, height) inside it (module docstring). An angle box near the film's edge
    is widened by at most half its distance to that edge: the widening must not make it reach
    the frame (quality control's ``angle-at-frame-edge``)."""
    out = fused.clone()
    for side in _SIDES:
        lung, angle = fused[_LUNG[side]], out[_ANGLE[side]]
        w, h = float(lung[2] - lung[0]), float(lung[3] - lung[1])
        if side == "right":  # the image's left: the lateral edge is x0
            want = float(lung[0]) - margin[0] * w
            angle[0] = min(float(angle[0]), max(want, 0.5 * float(angle[0])))
        else:
            want = float(lung[2]) + margin[0] * w
            angle[2] = max(float(angle[2]), min(want, 0.5 * (1.0 + float(angle[2]))))
        want = float(lung[3]) + margin[1] * h
        angle[3] = max(float(angle[3]), min(want, 0.5 * (1.0 + float(angle[3]))))
    return out.clamp(0.0, 1.0)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes ``a`` and ``b`` (``[..., 4]``, broadcast)."""
    ix = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    iy = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = ix * iy
    area = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area + area_b - inter).clamp(min=1e-9)


def _base_window(lung: list[float], side: str) -> tuple[float, float, float, float]:
    """The base window (fractions of the film, clipped to it) of a fused lung box."""
    out, inward, up, down = BASE_WINDOW
    w, h = lung[2] - lung[0], lung[3] - lung[1]
    if side == "right":
        x0, x1 = lung[0] - out * w, lung[0] + inward * w
    else:
        x0, x1 = lung[2] - inward * w, lung[2] + out * w
    y0, y1 = lung[3] - up * h, lung[3] + down * h
    return max(x0, 0.0), max(y0, 0.0), min(x1, 1.0), min(y1, 1.0)


def refine_bases(
    atlas: torch.Tensor,
    boxes: torch.Tensor,
    film: torch.Tensor,
    p: torch.Tensor,
    candidates: torch.Tensor,
    fused: torch.Tensor,
) -> torch.Tensor:
    """The candidates with each lung base registered locally (module docstring).

    Args:
        atlas: ``[K, 1, S, S]`` the picked atlas films at the fine size.
        boxes: ``[K, 10, 4]`` their boxes (fractions).
        film: ``[1, 1, S, S]`` the new film at the fine size.
        p: ``[K, 4]`` their params onto the new film (:func:`register`).
        candidates: ``[K, 10, 4]`` their boxes on the new film (:func:`transfer`).
        fused: ``[10, 4]`` the fused boxes, which place the windows.

    Returns:
        The candidates with, per side, the lung's and lower zone's lateral and lower edges
        moved to the local fit, and the costophrenic angle moved with that corner.
    """
    k = p.shape[0]
    steps = torch.linspace(0.0, 1.0, BASE_GRID)
    grids, centres = [], []
    for side in _SIDES:
        x0, y0, x1, y1 = _base_window(fused[_LUNG[side]].tolist(), side)
        gy, gx = torch.meshgrid(y0 + (y1 - y0) * steps, x0 + (x1 - x0) * steps, indexing="ij")
        grids.append(torch.stack([gx, gy], dim=-1) * 2 - 1)
        centres.append(torch.tensor([x0 + x1 - 1, y0 + y1 - 1]))
    # Both sides of all K atlas films in one batch: side-major, [2K, G, G, 2] and [2K, 2].
    u = torch.stack(grids).repeat_interleave(k, 0)
    c = torch.stack(centres).repeat_interleave(k, 0)
    s, t = scale_shift(p.repeat(2, 1))
    windows = F.grid_sample(
        film.expand(2, -1, -1, -1), torch.stack(grids), align_corners=False, padding_mode="border"
    )
    target = windows.repeat_interleave(k, 0)
    moving = atlas.repeat(2, 1, 1, 1)

    def local(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tanh(q[:, :2]) * BASE_MAX_LOG_SCALE, torch.tanh(q[:, 2:]) * BASE_MAX_SHIFT

    def sample(q: torch.Tensor) -> torch.Tensor:
        ds, dt = local(q)
        e = ds.exp()[:, None, None, :]
        at = s[:, None, None, :] * (c[:, None, None, :] + e * (u - c[:, None, None, :]))
        at = at + s[:, None, None, :] * dt[:, None, None, :] + t[:, None, None, :]
        return F.grid_sample(moving, at, align_corners=False, padding_mode="border")

    q = torch.zeros(2 * k, 4, requires_grad=True)
    opt = torch.optim.Adam([q], lr=_LR)
    with torch.enable_grad():
        for _ in range(BASE_STEPS):
            loss = -ncc(sample(q), target).sum()
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    out = candidates.clone()
    with torch.no_grad():
        ds, dt = local(q)
        for i, side in enumerate(_SIDES):
            rows = slice(i * k, (i + 1) * k)
            # The atlas lung box back through the local map: u = c + ((v - t)/s - dt - c)/e.
            v = boxes[:, _LUNG[side]] * 2 - 1
            si, ti, ci = s[rows].repeat(1, 2), t[rows].repeat(1, 2), c[rows].repeat(1, 2)
            ei, di = ds[rows].exp().repeat(1, 2), dt[rows].repeat(1, 2)
            lung = ((ci + ((v - ti) / si - di - ci) / ei + 1) / 2).clamp(0.0, 1.0)
            x = _LATERAL[side]
            dx = lung[:, x] - candidates[:, _LUNG[side], x]
            dy = lung[:, 3] - candidates[:, _LUNG[side], 3]
            for region in (_LUNG[side], _ZONE[side]):
                out[:, region, x] = lung[:, x]
                out[:, region, 3] = lung[:, 3]
            angle = candidates[:, _ANGLE[side]]
            out[:, _ANGLE[side]] = (angle + torch.stack([dx, dy, dx, dy], dim=1)).clamp(0.0, 1.0)
    return out
