"""Inline SVG figures for the HTML reports: no plotting library, no network, no script.

Each function returns one ``<figure>`` with a fixed-size SVG and a caption; values are
escaped. Used by the demo's run report, the evaluation report and the monitor's report.
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Mapping, Sequence

import numpy as np

W, H, PAD = 420, 220, 36


def svg_figure(body: str, title: str) -> str:
    return (
        f'<figure><svg width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">'
        f'<rect width="{W}" height="{H}" fill="white" stroke="#ccc"/>{body}</svg>'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
    )


def x_at(v: float, lo: float, hi: float) -> float:
    return PAD + (v - lo) / (hi - lo or 1.0) * (W - 2 * PAD)


def y_at(v: float, lo: float, hi: float) -> float:
    return H - PAD - (v - lo) / (hi - lo or 1.0) * (H - 2 * PAD)


def x_ticks(values: Sequence[float], lo: float, hi: float) -> str:
    return "".join(
        f'<text x="{x_at(v, lo, hi):.1f}" y="{H - PAD + 14}" text-anchor="middle">{v:g}</text>'
        for v in values
    )


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str) -> str:
    """Vertical bars with labels underneath."""
    top = max(max(values, default=0.0), 1e-9)
    width = (W - 2 * PAD) / max(len(values), 1)
    bars = []
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        x, y = PAD + i * width, y_at(v, 0, top)
        bars.append(
            f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{width - 4:.1f}" '
            f'height="{H - PAD - y:.1f}" fill="#4a78b5"/>'
            f'<text x="{x + width / 2:.1f}" y="{H - PAD + 14}" text-anchor="middle">'
            f"{html.escape(label)}</text>"
            f'<text x="{x + width / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle">{v:g}</text>'
        )
    return svg_figure("".join(bars), title)


def calibration_plot(pred: Sequence[float], truth: Sequence[int], title: str, bins: int = 5) -> str:
    """Observed rate against mean prediction per probability bin, with the diagonal."""
    p, t = np.asarray(pred, dtype=float), np.asarray(truth, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    points = []
    for lo, hi in itertools.pairwise(edges):
        inside = (p >= lo) & ((p < hi) | (hi == 1.0))
        if inside.any():
            points.append((float(p[inside].mean()), float(t[inside].mean()), int(inside.sum())))
    body = [_diagonal()]
    body += [
        f'<circle cx="{x_at(px, 0, 1):.1f}" cy="{y_at(py, 0, 1):.1f}" r="{3 + min(n, 20) / 4:.1f}" '
        f'fill="#c0504d"/>'
        for px, py, n in points
    ]
    body.append(x_ticks((0, 0.5, 1), 0, 1))
    body.append(f'<text x="{W / 2}" y="{H - 6}" text-anchor="middle">predicted</text>')
    body.append(f'<text x="8" y="{PAD - 10}">observed</text>')
    return svg_figure("".join(body), title)


def _diagonal() -> str:
    return (
        f'<line x1="{x_at(0, 0, 1)}" y1="{y_at(0, 0, 1)}" x2="{x_at(1, 0, 1)}" '
        f'y2="{y_at(1, 0, 1)}" stroke="#999" stroke-dasharray="4"/>'
    )


COLOURS = ("#c0504d", "#4a78b5", "#9bbb59", "#8064a2", "#777777")


def reliability_plot(series: dict[str, Sequence[tuple[float, float, int]]], title: str) -> str:
    """Observed rate against mean prediction per bin, one coloured series per model.

    Args:
        series: Model -> ``(mean predicted, observed, patients)`` per non-empty bin.
        title: The caption.
    """
    body = [_diagonal()]
    for i, (name, points) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        pts = " ".join(f"{x_at(px, 0, 1):.1f},{y_at(py, 0, 1):.1f}" for px, py, _ in points)
        body.append(f'<polyline points="{pts}" fill="none" stroke="{colour}"/>')
        body += [
            f'<circle cx="{x_at(px, 0, 1):.1f}" cy="{y_at(py, 0, 1):.1f}" '
            f'r="{2 + min(n, 100) / 25:.1f}" fill="{colour}"/>'
            for px, py, n in points
        ]
        label = html.escape(name)
        body.append(f'<text x="{PAD + 8}" y="{PAD + 12 + 13 * i}" fill="{colour}">{label}</text>')
    body.append(x_ticks((0, 0.25, 0.5, 0.75, 1), 0, 1))
    body.append(f'<text x="{W / 2}" y="{H - 6}" text-anchor="middle">predicted risk</text>')
    body.append(f'<text x="8" y="{PAD - 10}">observed rate</text>')
    return svg_figure("".join(body), title)


def interval_chart(
    rows: Sequence[tuple[str, float, float | None, float | None]],
    title: str,
    lo: float = 0.0,
    hi: float = 1.0,
) -> str:
    """One horizontal line per row: the value as a dot, its interval as a bar.

    Args:
        rows: ``(label, value, low, high)``; an interval of None is not drawn.
        title: The caption.
        lo, hi: The axis range.
    """
    step = (H - 2 * PAD) / max(len(rows), 1)
    left = PAD + 150
    body = []

    def at(v: float) -> float:
        return left + (min(max(v, lo), hi) - lo) / (hi - lo) * (W - PAD - left)

    for i, (label, value, low, high) in enumerate(rows):
        y = PAD + step * (i + 0.5)
        body.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{html.escape(label)}</text>'
        )
        if low is not None and high is not None:
            body.append(
                f'<line x1="{at(low):.1f}" y1="{y:.1f}" x2="{at(high):.1f}" y2="{y:.1f}" '
                'stroke="#4a78b5" stroke-width="3"/>'
            )
        body.append(f'<circle cx="{at(value):.1f}" cy="{y:.1f}" r="4" fill="#c0504d"/>')
    for tick in np.linspace(lo, hi, 5):
        body.append(
            f'<text x="{at(float(tick)):.1f}" y="{H - PAD + 14}" text-anchor="middle">'
            f"{float(tick):.2g}</text>"
        )
    return svg_figure("".join(body), title)


def series_chart(
    series: Mapping[str, Sequence[tuple[str, float | None, float | None, float | None]]],
    title: str,
    lo: float = 0.0,
    hi: float = 1.0,
    threshold: float | None = None,
) -> str:
    """Values over time, one coloured line per series, its intervals as a shaded band.

    Args:
        series: Name -> ``(label, value, low, high)`` per point, oldest first; the labels of
            the first series name the x axis (a few are shown); a missing value breaks
            nothing, it is left out.
        title: The caption.
        lo, hi: The y axis range.
        threshold: Drawn as a dashed line, when given.
    """
    labels = [p[0] for p in next(iter(series.values()), [])]
    n = max(len(labels), 2)
    body = []

    def x(i: int) -> float:
        return x_at(i, 0, n - 1)

    def y(v: float) -> float:
        return y_at(min(max(v, lo), hi), lo, hi)

    for i, (name, points) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        band = [
            (j, p[2], p[3]) for j, p in enumerate(points) if p[2] is not None and p[3] is not None
        ]
        if band:
            upper = " ".join(f"{x(j):.1f},{y(high):.1f}" for j, _, high in band)
            lower = " ".join(f"{x(j):.1f},{y(low):.1f}" for j, low, _ in reversed(band))
            body.append(f'<polygon points="{upper} {lower}" fill="{colour}" opacity="0.15"/>')
        line = [(j, p[1]) for j, p in enumerate(points) if p[1] is not None]
        if line:
            pts = " ".join(f"{x(j):.1f},{y(v):.1f}" for j, v in line)
            body.append(
                f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
            body += [f'<circle cx="{x(j):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour}"/>'
                     for j, v in line]  # fmt: skip
        label = html.escape(name)
        body.append(f'<text x="{PAD + 8}" y="{PAD + 12 + 13 * i}" fill="{colour}">{label}</text>')
    if threshold is not None:
        body.append(
            f'<line x1="{PAD}" y1="{y(threshold):.1f}" x2="{W - PAD}" y2="{y(threshold):.1f}" '
            'stroke="#999" stroke-dasharray="4"/>'
        )
    for tick in np.linspace(lo, hi, 5):
        body.append(f'<text x="{PAD - 4}" y="{y(float(tick)) + 4:.1f}" text-anchor="end">'
                    f"{float(tick):.2g}</text>")  # fmt: skip
    shown = sorted({0, len(labels) // 2, len(labels) - 1}) if labels else []
    body += [
        f'<text x="{x(j):.1f}" y="{H - PAD + 14}" text-anchor="middle">'
        f"{html.escape(labels[j])}</text>"
        for j in shown
    ]
    return svg_figure("".join(body), title)


def horizontal_bars(
    rows: Sequence[tuple[str, float, bool]], title: str, threshold: float | None = None
) -> str:
    """One bar per row (label, value, flagged: flagged bars are red), flagged ones first, then
    the largest, at most ten; the threshold as a dashed line."""
    shown = sorted(rows, key=lambda r: (not r[2], -abs(r[1])))[:10]
    top = max([abs(v) for _, v, _ in shown] + [threshold or 0.0, 1e-9])
    left = PAD + 150
    step = (H - 2 * PAD) / max(len(shown), 1)

    def at(v: float) -> float:
        return left + abs(v) / top * (W - PAD - left)

    body = []
    for i, (label, value, flagged) in enumerate(shown):
        y = PAD + step * i
        colour = "#c0504d" if flagged else "#4a78b5"
        body.append(f'<text x="{left - 6}" y="{y + step / 2 + 4:.1f}" text-anchor="end">'
                    f"{html.escape(label[:28])}</text>")  # fmt: skip
        body.append(f'<rect x="{left}" y="{y + 2:.1f}" width="{at(value) - left:.1f}" '
                    f'height="{max(step - 4, 2):.1f}" fill="{colour}"/>')  # fmt: skip
    if threshold is not None:
        body.append(f'<line x1="{at(threshold):.1f}" y1="{PAD}" x2="{at(threshold):.1f}" '
                    f'y2="{H - PAD}" stroke="#999" stroke-dasharray="4"/>')  # fmt: skip
    body.append(f'<text x="{left}" y="{H - PAD + 14}" text-anchor="middle">0</text>')
    body.append(f'<text x="{W - PAD}" y="{H - PAD + 14}" text-anchor="end">{top:.2g}</text>')
    return svg_figure("".join(body), title)
