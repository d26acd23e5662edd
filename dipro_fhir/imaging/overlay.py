"""Draw region boxes (and a labelled pixel grid) over a film, for people to look at.

Used by ``dipro-fhir regions`` (overlay PNGs) and to review and annotate films by eye: the
grid's labels are pixel coordinates of the image, so a box can be read off it.
"""

from __future__ import annotations

from collections.abc import Sequence

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
