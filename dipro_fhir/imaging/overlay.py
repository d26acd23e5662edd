"""Draw region boxes (and a labelled pixel grid) over a film, for people to look at.

Used by ``dipro-fhir regions`` (overlay PNGs) and to review and annotate films by eye: the
grid's labels are pixel coordinates of the image, so a box can be read off it.

At overlay size a costophrenic angle or hilar box is a few tens of pixels, too small to tell
a box on the recess from one just above it; :func:`closeups` draws those four regions
zoomed, with the annotated box beside the placed one when there is one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from dipro.vocab import REGIONS
from dipro_fhir.imaging.boxes import Box

#: One colour per region (``dipro.vocab.REGIONS`` order) and a short label.
COLOURS: tuple[str, ...] = (
    "#ff4040",
    "#40a0ff",
    "#ff9900",
    "#00d0d0",
    "#ff40ff",
    "#a060ff",
    "#ffff00",
    "#80ff00",
    "#ff0080",
    "#ffffff",
)
SHORT: tuple[str, ...] = ("LL", "RL", "LLZ", "RLZ", "LH", "RH", "LCP", "RCP", "CS", "MED")
#: The small regions :func:`closeups` zooms into, as laid out on the sheet (the patient's
#: right on the image's left): hila above, costophrenic angles below.
SMALL: tuple[tuple[str, str], ...] = (
    ("right_hilar_structures", "left_hilar_structures"),
    ("right_costophrenic_angle", "left_costophrenic_angle"),
)
#: Colour of the annotated (truth) box on a close-up.
TRUTH_COLOUR = (0, 255, 255)


def to_rgb(image: npt.NDArray[np.floating], scale: float = 1.0) -> Image.Image:
    """A display image in ``[0, 1]`` as an RGB PIL image, resized by ``scale``."""
    arr = (np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    pic = Image.fromarray(arr).convert("RGB")
    if scale != 1.0:
        pic = pic.resize(
            (round(pic.width * scale), round(pic.height * scale)), Image.Resampling.BILINEAR
        )
    return pic


def draw_grid(pic: Image.Image, step: int, scale: float = 1.0) -> None:
    """Grid lines every ``step`` image pixels, labelled with the image pixel coordinate."""
    draw = ImageDraw.Draw(pic)
    for v in range(0, round(max(pic.width, pic.height) / scale) + 1, step):
        p = round(v * scale)
        strong = v % (2 * step) == 0
        colour = (0, 255, 0) if strong else (0, 120, 0)
        if p < pic.width:
            draw.line([(p, 0), (p, pic.height)], fill=colour, width=1)
            if strong:
                draw.text((p + 2, 2), str(v), fill=(0, 255, 0))
        if p < pic.height:
            draw.line([(0, p), (pic.width, p)], fill=colour, width=1)
            if strong:
                draw.text((2, p + 2), str(v), fill=(0, 255, 0))


def draw_boxes(
    pic: Image.Image,
    boxes: Sequence[Box | None],
    scale: float = 1.0,
    flagged: Sequence[bool] | None = None,
) -> None:
    """Draw the ten boxes (``REGIONS`` order); a flagged region is drawn dashed-thin with
    an ``!`` after its label."""
    draw = ImageDraw.Draw(pic)
    for i, box in enumerate(boxes):
        if box is None:
            continue
        x0, y0, x1, y1 = (c * scale for c in box)
        bad = bool(flagged[i]) if flagged is not None else False
        draw.rectangle([x0, y0, x1, y1], outline=COLOURS[i], width=1 if bad else 2)
        label = SHORT[i] + ("!" if bad else "")
        draw.text((x0 + 3, y0 + 3 + 10 * (i % 2)), label, fill=COLOURS[i])


def overlay(
    image: npt.NDArray[np.floating],
    boxes: Sequence[Box | None],
    *,
    flagged: Sequence[bool] | None = None,
    title: str = "",
    grid: int = 0,
) -> Image.Image:
    """The film with its boxes; with ``grid`` > 0 a plain gridded copy is put on the left.

    Args:
        image: Display image ``[H, W]`` in ``[0, 1]``.
        boxes: Ten boxes in ``REGIONS`` order (``None`` = missing).
        flagged: Per region, whether quality control flagged it.
        title: Text written in the top-right corner.
        grid: Grid step in image pixels (0: no gridded copy).

    Returns:
        An RGB image.
    """
    if len(boxes) != len(REGIONS):
        raise ValueError(f"expected {len(REGIONS)} boxes")
    scale = 640.0 / max(image.shape) if max(image.shape) > 640 else 1.0
    boxed = to_rgb(image, scale)
    draw_boxes(boxed, boxes, scale, flagged)
    if title:
        ImageDraw.Draw(boxed).text((boxed.width - 8 * len(title) - 4, 4), title, fill="yellow")
    if grid <= 0:
        return boxed
    plain = to_rgb(image, scale)
    draw_grid(plain, grid, scale)
    both = Image.new("RGB", (plain.width + boxed.width + 4, plain.height))
    both.paste(plain, (0, 0))
    both.paste(boxed, (plain.width + 4, 0))
    return both


def _window(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """A square around ``box`` with one box side of margin all round (the lung, chest wall
    and diaphragm next to it), shifted to stay inside the image."""
    side = 3.0 * max(box[2] - box[0], box[3] - box[1], 8.0)
    side = min(side, float(width), float(height))
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0 = min(max(cx - side / 2, 0.0), width - side)
    y0 = min(max(cy - side / 2, 0.0), height - side)
    return round(x0), round(y0), round(x0 + side), round(y0 + side)


def closeups(
    image: npt.NDArray[np.floating],
    boxes: Sequence[Box | None],
    *,
    truth: Mapping[str, Box] | None = None,
    flagged: Sequence[bool] | None = None,
    tile: int = 256,
) -> Image.Image:
    """A 2 x 2 sheet of the hila and costophrenic angles (:data:`SMALL`), each zoomed to
    ``tile`` px around its placed box and its annotated one (either, when one is missing).

    The placed box is drawn in its region's colour (thin with ``!`` when flagged), the
    annotated box of ``truth`` in cyan. A region with neither box gets a grey tile.
    """
    if len(boxes) != len(REGIONS):
        raise ValueError(f"expected {len(REGIONS)} boxes")
    height, width = int(image.shape[0]), int(image.shape[1])
    sheet = Image.new("RGB", (2 * tile + 4, 2 * tile + 4), (40, 40, 40))
    for row, pair in enumerate(SMALL):
        for col, region in enumerate(pair):
            i = REGIONS.index(region)
            placed, annotated = boxes[i], (truth or {}).get(region)
            both = [b for b in (placed, annotated) if b is not None]
            if not both:
                continue
            anchor = (
                min(b[0] for b in both),
                min(b[1] for b in both),
                max(b[2] for b in both),
                max(b[3] for b in both),
            )
            x0, y0, x1, y1 = _window(anchor, width, height)
            crop = image[y0:y1, x0:x1]
            scale = tile / max(crop.shape)
            pic = to_rgb(crop, scale)
            shifted: list[Box | None] = [None] * len(REGIONS)
            if placed is not None:
                shifted[i] = (placed[0] - x0, placed[1] - y0, placed[2] - x0, placed[3] - y0)
            draw_boxes(pic, shifted, scale, flagged)
            draw = ImageDraw.Draw(pic)
            if annotated is not None:
                a = [(c - o) * scale for c, o in zip(annotated, (x0, y0, x0, y0), strict=True)]
                draw.rectangle(a, outline=TRUTH_COLOUR, width=1)
            if placed is None:
                draw.text((4, 4), f"{SHORT[i]} missing", fill=COLOURS[i])
            sheet.paste(pic, (col * (tile + 4), row * (tile + 4)))
    return sheet
