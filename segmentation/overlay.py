"""A picture a person can check: line polygons, baselines, word boxes and read text drawn over the page."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segmentation.types import Line, Point

#: Where Debian's fonts-dejavu-core puts its sans face (it covers French accents, œ, ¥).
FONT_PATHS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/local/share/fonts/DejaVuSans.ttf",
)

# BGR colours cycled by table column, so neighbouring columns differ.
_COLUMN_COLOURS = ((200, 90, 0), (0, 150, 0), (160, 0, 160), (0, 110, 220), (120, 120, 0))
_BASELINE = (0, 0, 230)
_WORD = (150, 150, 150)
_RULE = (0, 200, 255)


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Return DejaVu Sans at ``size`` pixels, or Pillow's default font when it is not installed."""
    for path in FONT_PATHS:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType: a fixed bitmap font
        return ImageFont.load_default()


def _colour(line: Line) -> tuple[int, int, int]:
    return _COLUMN_COLOURS[(line.column if line.column is not None else 0) % len(_COLUMN_COLOURS)]


def draw_overlay(
    gray: np.ndarray,
    lines: Sequence[Line],
    texts: Sequence[str] | None = None,
    *,
    rules: Sequence[tuple[Point, Point]] = (),
) -> np.ndarray:
    """Return a BGR uint8 copy of the page with each line's polygon, baseline, words and text drawn.

    ``texts`` (one per line, optional) are written above their lines in a
    Unicode font; ``rules`` (segments in pixels) are drawn thin for reference.
    """
    if gray.ndim == 2:
        canvas = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    else:
        canvas = gray[..., :3].copy()
    if texts is not None and len(texts) != len(lines):
        raise ValueError(f"draw_overlay got {len(texts)} texts for {len(lines)} lines")
    heights = [ln.bbox[3] - ln.bbox[1] for ln in lines if ln.polygon]
    unit = float(np.median(heights)) if heights else max(8.0, canvas.shape[0] / 80)
    thick = max(1, round(unit / 25))
    for (x0, y0), (x1, y1) in rules:
        cv2.line(canvas, (x0, y0), (x1, y1), _RULE, max(1, thick // 2), cv2.LINE_AA)
    for line in lines:
        colour = _colour(line)
        for word in line.words:
            bx0, by0, bx1, by1 = word.box
            cv2.rectangle(canvas, (bx0, by0), (bx1, by1), _WORD, 1)
        if len(line.polygon) >= 2:
            pts = np.asarray(line.polygon, np.int32).reshape(-1, 1, 2)
            cv2.polylines(canvas, [pts], True, colour, thick, cv2.LINE_AA)
        if len(line.baseline) >= 2:
            pts = np.asarray(line.baseline, np.int32).reshape(-1, 1, 2)
            cv2.polylines(canvas, [pts], False, _BASELINE, thick, cv2.LINE_AA)
    if texts is not None:
        canvas = _draw_texts(canvas, lines, texts, unit)
    return canvas


def _draw_texts(canvas: np.ndarray, lines: Sequence[Line], texts: Sequence[str], unit: float) -> np.ndarray:
    """Return ``canvas`` with each text on a pale label at its line's top-left corner."""
    # cv2.putText draws ASCII only; the registers need accents, œ and ¥.
    img = Image.fromarray(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB))
    draw = ImageDraw.Draw(img, "RGBA")
    font = _font(int(np.clip(unit * 0.35, 10, 64)))
    for line, text in zip(lines, texts, strict=True):
        if not text or not line.polygon:
            continue
        x0, y0, _, _ = line.bbox
        left, top, right, bottom = draw.textbbox((x0, y0), text, font=font, anchor="lb")
        draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=(255, 255, 230, 200))
        b, g, r = _colour(line)
        draw.text((x0, y0), text, font=font, fill=(r, g, b, 255), anchor="lb")
    return cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)
