"""What is not writing, and what is: the tests a text row must pass to become a line.

Dropped: dots, dashes, ornaments, blots, lone pen strokes, pencil marks,
page-edge shadow and rows inside a round stamp, judging tones against the
paper next to the text, not the whole scan. Kept although small: ditto marks
("), which the ground truth transcribes as lines.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from segmentation.params import SegmentationParams
from segmentation.rows import _RowInk

#: Fewer ink pixels (working frame) do not resolve a pen stroke's shape: on a tiny scan, where the
#: pen is a pixel wide, every number looks like one lone stroke.
MIN_STROKE_PIXELS = 64


def _looks_like_text(
    row: _RowInk,
    levelled: np.ndarray,
    ink: np.ndarray,
    tones: tuple[float, float],
    spacing: float,
    params: SegmentationParams,
    typical: float = np.inf,
    enough_ink: float | None = None,
) -> bool:
    """Return False for ink that is no text line: a dot, a dash or ornament, a smudge, a pencil mark, shadow.

    The thresholds sit at the 0.5th percentile of each measure over the lines
    that match the LECTAUREP ground truth (train pages), so they drop little
    real text. ``tones`` is (paper gray, median writing gray) of the page,
    ``typical`` the median ink-per-column of its rows (in line spacings).
    With ``enough_ink`` (spacing²), a row with that much ink passes the size and
    shape tests whatever its shape: the learned finder already judged it a line
    (a flourished name is taller than any rule-based row may be).
    """
    big = enough_ink is not None and len(row.xs) >= enough_ink * spacing * spacing
    sure = row.network_sure(params.learned_sure)
    if not (big or sure or _sized_like_text(row, spacing, params, typical) or _is_ditto(row, spacing, params)):
        return False
    paper, writing = tones
    # Contrast relative to the page's own writing: a faded hand is faint all
    # over, a pencil mark or bleed-through is fainter than the rest.
    contrast = (paper - float(np.median(levelled[row.ys, row.xs]))) / max(paper - writing, 1.0)
    if contrast < params.min_contrast and not sure:
        return False
    y0, y1 = int(row.ys.min()), int(row.ys.max()) + 1
    box = levelled[y0:y1, row.x0 : row.x1 + 1]
    blank = ~ink[y0:y1, row.x0 : row.x1 + 1]
    if blank.any() and float(np.median(box[blank])) / paper < params.min_background:  # page edge, gutter shadow
        return False
    return True


def _sized_like_text(row: _RowInk, spacing: float, params: SegmentationParams, typical: float) -> bool:
    """Return False for ink whose size or shape is no word's: a speck, a dot, a dash, an ornament, a blot."""
    n = len(row.xs)
    if n < params.min_line_ink * spacing * spacing:
        return False
    lo, hi = np.percentile(row.ys, [5, 95])
    height = (hi - lo) / spacing
    width = (row.x1 - row.x0 + 1) / spacing
    if height < params.min_ink_height:
        return False
    if width < params.min_ink_width and height < 0.4:
        return False
    # Mean ink per column: a pen line or an ornament is one thin stroke, a
    # stamp or a blot is solid.
    thickness = n / (row.x1 - row.x0 + 1) / spacing
    if thickness < min(params.min_thickness, params.min_thickness_rel * typical) or thickness > params.max_thickness:
        return False
    if height > params.max_ink_height:
        return False
    if width >= params.min_stroke_width and _one_stroke(row) >= params.max_one_stroke:
        return False
    if _is_single_stroke(row, params.single_stroke, params.single_stroke_slope):
        return False
    return True


def _one_stroke(row: _RowInk) -> float:
    """Return the share of a row's columns that cross exactly one stroke, counting blank columns as not.

    Writing crosses loops, ascenders and gaps between letters; the tapered
    ornament under a printed header or a long pen dash is one stroke all along.
    """
    y0 = int(row.ys.min())
    mask = np.zeros((int(row.ys.max()) - y0 + 1, row.x1 - row.x0 + 1), np.int8)
    mask[row.ys - y0, row.xs - row.x0] = 1
    starts = (np.diff(mask, axis=0, prepend=0) == 1).sum(axis=0)
    return float((starts == 1).mean())


def _principal_axis(row: _RowInk) -> tuple[float, float]:
    """Return the elongation (major / minor standard deviation) of a row's ink pixels and the major axis' slope.

    The slope is the major axis' angle from the horizontal, in degrees (0–90).
    """
    if len(row.xs) < 3:
        return 1.0, 0.0
    (low, high), vectors = np.linalg.eigh(np.cov(np.stack([row.xs, row.ys]).astype(np.float64)))
    dx, dy = vectors[:, 1]
    return float(np.sqrt(high / max(low, 1e-6))), float(np.degrees(np.arctan2(abs(dy), abs(dx))))


def _is_single_stroke(row: _RowInk, limits: Sequence[tuple[float, float]], max_slope: float) -> bool:
    """Return True when a row is one lone pen stroke: a tick or slash beside a number, a brace under a header.

    Writing crosses several strokes along most of its pixel rows (letters stand
    side by side); a lone stroke crosses one, along its columns and its rows,
    and its pixels spread along one direction. ``limits`` holds pairs (least
    share of columns and rows crossing one stroke, least elongation): a
    straighter stroke needs a lower elongation. A stroke steeper than
    ``max_slope`` degrees is kept: a one is written as a lone upright stroke.
    """
    if len(row.xs) < MIN_STROKE_PIXELS:
        return False
    share = min(_one_stroke(row), _one_stroke(_RowInk(row.xs, row.ys, row.ridge_y)))  # transposed: rows as columns
    if share < min(s for s, _ in limits):
        return False
    elongation, slope = _principal_axis(row)
    if slope > max_slope:
        return False  # upright: a digit one
    return any(share >= s and elongation >= e for s, e in limits)


def _is_ditto(row: _RowInk, spacing: float, params: SegmentationParams) -> bool:
    """Return True when a row is one or two ditto marks ("): two to four short strokes side by side.

    The ground truth transcribes a ditto in a table cell as a line of its
    own; its ink is below every size threshold of words, so it is recognised
    by its shape: separate strokes, each taller than wide, none a speck.
    """
    lo, hi = np.percentile(row.ys, [5, 95])
    lo_h, hi_h = params.ditto_height
    if not lo_h * spacing <= hi - lo <= hi_h * spacing:
        return False
    y0 = int(row.ys.min())
    mask = np.zeros((int(row.ys.max()) - y0 + 1, row.x1 - row.x0 + 1), np.uint8)
    mask[row.ys - y0, row.xs - row.x0] = 1
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    w, h, area = stats[1:, 2], stats[1:, 3], stats[1:, 4]
    # Specks beside the strokes (a dot, a crumb of a removed rule) do not count.
    stroke = (area >= params.ditto_stroke * spacing * spacing) | (h >= params.ditto_stroke_height * spacing)
    if not 2 <= stroke.sum() <= 4:
        return False
    return bool(
        (area[stroke] >= params.ditto_stroke * spacing * spacing).all()
        and (h[stroke] >= params.ditto_stroke_height * spacing).all()
        and (w[stroke] <= params.ditto_stroke_width * spacing).all()
    )


def paper_tone(levelled: np.ndarray, ink: np.ndarray, text: np.ndarray, spacing: float) -> float:
    """Return the gray of the paper the writing sits on: the 90th percentile of the blank pixels near the text.

    Only paper within about a line spacing of the text counts, so white bands
    (a transparent margin flattened to white, padding, the blank corners of
    the deskew) and the dark scanner background do not move it.
    """
    if not text.any():
        blank = levelled[~ink] if (~ink).any() else levelled
        return max(1.0, float(np.percentile(blank, 90)))
    # Near the text: a box filter of the text mask (cheap at any size), on a 4x smaller grid.
    f = 0.25
    small = cv2.resize(text.astype(np.float32), None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    k = max(3, int(round(spacing * f)) | 1)
    near_small = cv2.boxFilter(small, -1, (k, k), normalize=False) > 0
    near = cv2.resize(near_small.astype(np.uint8), (text.shape[1], text.shape[0]), interpolation=cv2.INTER_NEAREST)
    sel = near.astype(bool) & ~ink
    if not sel.any():
        sel = ~ink
    # Pure white is the deskew's padding or a flattened margin, unless it is most of the paper.
    unsaturated = sel & (levelled < 255)
    if unsaturated.sum() * 2 > sel.sum():
        sel = unsaturated
    hist = np.bincount(levelled[sel].ravel(), minlength=256).cumsum()
    return max(1.0, float(np.searchsorted(hist, 0.9 * hist[-1])))


def find_stamps(
    ink: np.ndarray, spacing: float, radius: tuple[float, float] = (1.5, 5.0)
) -> list[tuple[float, float, float]]:
    """Return the round stamps of a levelled ink mask as (x, y, radius) in its pixels.

    A stamp is a circle of ink a few line spacings across (``radius`` in line
    spacings); OpenCV's gradient Hough transform finds it on a half-size,
    blurred copy, with a strict circularity vote so loops of writing do not count.
    """
    f = 0.5
    small = cv2.resize(ink.astype(np.uint8) * 255, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), 1.5)
    found = cv2.HoughCircles(
        small,
        cv2.HOUGH_GRADIENT_ALT,
        dp=1.5,
        minDist=3 * spacing * f,
        param1=300,
        param2=0.8,
        minRadius=max(2, int(radius[0] * spacing * f)),
        maxRadius=max(3, int(radius[1] * spacing * f)),
    )
    if found is None:
        return []
    return [(float(x / f), float(y / f), float(r / f)) for x, y, r in found.reshape(-1, 3)]
