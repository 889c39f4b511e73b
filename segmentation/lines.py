"""Text-line segmentation of register pages: one line per text row within one table cell.

The page is worked on at a reduced, levelled scale (``WORK_PIXELS``); every
length is measured in units of the page's own line spacing, estimated from it.
A page's path, top to bottom (``find_rows``, then ``segment_page``):

1. binarize (Sauvola), drop the scanner background, level the page by its skew;
   estimate the line spacing, and start again enlarged when the rows are
   small (a low-resolution scan);
2. find and remove the ruling; the long vertical rules bound the columns,
   except a rule that only divides a labelled column below its header
   (francs | centimes): a row written across it is one line;
3. find the text rows: the learned network's line basins
   (``segmentation.learned_rows``; the network sees the page rescaled to the
   line spacing it was trained on) or the rule-based finder's density ridges
   (``segmentation.rule_rows``);
4. drop what is not writing (``segmentation.text_filters``: dots, dashes,
   ornaments, blots, pencil marks, page-edge shadow, stamps);
5. order the rows (above the table, margins, columns, below) and give each
   line its table column and cell;
6. each line's polygon is the network's region or its ink outline padded and
   never thinner than a band around its baseline, a straight fit to the lower
   edge of the letters' core (``segmentation.rows``); both are mapped back to
   original-scan pixels. The page carries the network's confidence in what it
   found (``page_confidence``).

The constants live in :class:`SegmentationParams` (``segmentation.params``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import cv2
import numpy as np

from segmentation.binarize import binarize_sauvola, paper_mask
from segmentation.deskew import PageTransform, estimate_skew, page_transform, rotate_mask
from segmentation.learned_rows import _learned_rows
from segmentation.params import SPACING_FLOOR, WORK_PIXELS, SegmentationParams
from segmentation.rows import _baseline, _outline, _RowInk
from segmentation.rule_rows import _assign_rows, _attach_small, _merge_rows
from segmentation.rules import Grid, Ruling, detect_rules, remove_rules, rule_band, subcolumn_rules, table_grid
from segmentation.text_filters import _looks_like_text, find_stamps, paper_tone
from segmentation.types import Cell, Line, PageImage, PageSegmentation, Point, Table
from segmentation.words import find_words

__all__ = [
    "WORK_PIXELS",
    "PageInk",
    "PageRows",
    "SegmentationParams",
    "estimate_line_spacing",
    "find_rows",
    "page_ink",
    "segment_page",
]


@dataclass
class PageRows:
    """The working-frame products of a page's segmentation, before lines are made of them."""

    transform: PageTransform  # original scan -> levelled working frame
    angle: float  # skew corrected, degrees
    levelled: np.ndarray  # uint8 gray, working frame
    ink: np.ndarray  # bool, all ink (rules included), working frame
    text: np.ndarray  # bool, ink without rules and slivers
    ruling: Ruling
    grid: Grid
    spacing: float  # line spacing, working pixels
    rows: list[_RowInk]
    confidence: float | None = None  # the learned finder's certainty over the page (see page_confidence)


def _working_scale(shape: tuple[int, int], work_pixels: int) -> float:
    """Return the working pixels per scan pixel of a page: at most 1, within the pixel budget."""
    h, w = shape
    return min(1.0, float(np.sqrt(work_pixels / (h * w))))


def _small_rows_scale(shape: tuple[int, int], scale: float, spacing: float, params: SegmentationParams) -> float | None:
    """Return a larger working scale for a page whose rows are small in the working frame, or None.

    A scan of low resolution (or a page written small) has its rows closer
    than ``min_work_spacing`` working pixels: its pen strokes are a pixel wide
    and the absolute floors (specks, a stroke's shape) start to bite. Such a
    page is worked on enlarged, up to the pixel budget and ``max_upscale``; not
    when the estimate is near its floor (no clear period of rows: a scrap of a
    page with three lines estimated at 9 pixels apart measures 8 once enlarged).
    """
    if params.min_work_spacing is None or spacing >= params.min_work_spacing or spacing < 1.5 * SPACING_FLOOR:
        return None
    h, w = shape
    budget = float(np.sqrt(params.work_pixels / (h * w)))
    up = min(scale * params.min_work_spacing / spacing, budget, params.max_upscale)
    return up if up > 1.1 * scale else None


def _level(gray: np.ndarray, scale: float) -> tuple[PageTransform, float, np.ndarray, np.ndarray]:
    """Return the working frame of a scan at ``scale``: (transform, skew corrected in degrees, gray, ink mask)."""
    h, w = gray.shape
    tf = page_transform((h, w), scale)
    work = tf.apply(gray)
    ink = binarize_sauvola(work) & paper_mask(work, margin=int(0.01 * max(work.shape)))
    angle = estimate_skew(ink)
    if abs(angle) >= 0.05:
        ink, rot = rotate_mask(ink, angle)
        return tf.then(rot), float(angle), rot.apply(work, border=255), ink
    return tf, 0.0, work, ink


def estimate_line_spacing(text: np.ndarray, lo: float = SPACING_FLOOR, hi: float | None = None) -> float:
    """Return the distance in pixels between consecutive text rows of a levelled ink mask.

    The rows' period is the first strong peak of the autocorrelation of the
    horizontal projection profile, summed over vertical strips of the page (so
    columns written at different heights do not blur each other out).
    """
    h, w = text.shape
    hi = int(hi or max(lo + 2, h / 12))
    strip = max(64, w // 10)
    acc = np.zeros(hi + 1)
    for x in range(0, max(1, w - strip + 1), strip // 2):
        p = text[:, x : x + strip].sum(axis=1, dtype=np.float64)
        p -= p.mean()
        if not p.any():
            continue
        spec = np.fft.rfft(p, n=2 * h)
        acc += np.fft.irfft(spec * np.conj(spec))[: hi + 1]
    if acc[0] <= 0:
        return max(lo, h / 60)
    acc /= acc[0]
    # Skip the central lobe (the rows' own thickness): start at its first minimum.
    d = np.diff(acc)
    rising = np.nonzero(d[int(lo) :] > 0)[0]
    start = int(lo) + (int(rising[0]) if len(rising) else 0)
    if start >= hi - 1:
        return max(lo, h / 60)
    seg = acc[start:]
    best = float(seg.max())
    # The first local maximum nearly as strong as the best: the best may be a multiple.
    for i in range(1, len(seg) - 1):
        if seg[i] >= seg[i - 1] and seg[i] >= seg[i + 1] and seg[i] >= 0.75 * best:
            return float(start + i)
    return float(start + int(np.argmax(seg)))


def _drop_slivers(text: np.ndarray, ruling: Ruling, spacing: float) -> np.ndarray:
    """Return ``text`` without specks and the leftovers of removed rules (pieces lying along a rule)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(text.astype(np.uint8), connectivity=8)
    w, h, area = stats[:, 2], stats[:, 3], stats[:, 4]
    bad = (area < max(3, 0.002 * spacing * spacing)) | ((h > 1.2 * spacing) & (w < 0.1 * spacing))
    bad |= (w > 1.2 * spacing) & (h < 0.06 * spacing)
    band = rule_band(ruling, text.shape, 0.12 * spacing)
    inside = np.bincount(labels[band & text], minlength=n)
    bad |= inside > 0.6 * area
    bad[0] = False
    if not bad.any():
        return text
    return text & ~bad[labels]


def _column_walls(ruling: Ruling, grid: Grid, ink: np.ndarray, spacing: float) -> Ruling:
    """Return ``ruling`` without the vertical rules that only subdivide a body column: the walls rows stop at."""
    subs = subcolumn_rules(ruling, grid, ink, spacing)
    if not subs:
        return ruling
    band = rule_band(Ruling(ruling.horizontal_mask, ruling.vertical_mask, [], subs), ruling.vertical_mask.shape, 2.0)
    keep = [r for r in ruling.vertical if all(r is not s for s in subs)]
    return Ruling(ruling.horizontal_mask, ruling.vertical_mask & ~band, ruling.horizontal, keep)


class PageInk(NamedTuple):
    """A page levelled into the working frame, its ink, rules, text ink and line spacing (working pixels)."""

    transform: PageTransform
    angle: float
    levelled: np.ndarray
    ink: np.ndarray
    ruling: Ruling
    text: np.ndarray
    spacing: float


def page_ink(gray: np.ndarray, params: SegmentationParams | None = None) -> PageInk:
    """Return a grayscale page levelled at its working scale, its ink and rules, and its rows' spacing."""
    params = params or SegmentationParams()
    if gray.ndim != 2:
        raise ValueError("segment_page expects a 2-D grayscale page")
    h, w = gray.shape
    scale = _working_scale((h, w), params.work_pixels)
    tf, angle, levelled, ink = _level(gray, scale)
    # A first spacing from all the ink sizes the rule kernels (and the working
    # scale of a page with small rows); the second, from the text alone, sizes
    # everything else.
    spacing0 = estimate_line_spacing(ink)
    larger = _small_rows_scale((h, w), scale, spacing0, params)
    if larger is not None:
        tf, angle, levelled, ink = _level(gray, larger)
        spacing0 = estimate_line_spacing(ink)
    ruling = detect_rules(ink, spacing0)
    text = _drop_slivers(remove_rules(ink, ruling), ruling, spacing0)
    return PageInk(tf, float(angle), levelled, ink, ruling, text, estimate_line_spacing(text))


def find_rows(page: PageImage, params: SegmentationParams | None = None) -> PageRows:
    """Return the working-frame analysis of a page: levelled ink, ruling, grid, line spacing and text rows."""
    params = params or SegmentationParams()
    tf, angle, levelled, ink, ruling, text, spacing = page_ink(page.pixels, params)
    grid = table_grid(ruling, text.shape, min_column=0.5 * spacing)
    walls = _column_walls(ruling, grid, ink, spacing)
    if params.line_model is not None:
        rows = _learned_rows(levelled, text, tf.scale, walls, spacing, params)
    else:
        rows = _merge_rows(_assign_rows(text, walls, spacing, params), walls, spacing, params)
        rows = _attach_small(rows, walls, spacing, params)
    paper = paper_tone(levelled, ink, text, spacing)
    writing = float(np.median(levelled[text])) if text.any() else 0.0
    # A page written (or printed) with a fine pen has thin lines throughout.
    typical = float(np.median([len(r.xs) / (r.x1 - r.x0 + 1) / spacing for r in rows])) if rows else np.inf
    if params.line_model is None or params.learned_filter:
        tones = (paper, writing)
        learned = params.line_model is not None
        enough = params.learned_enough_ink if learned else None
        tests = replace(params, min_background=params.learned_min_background) if learned else params
        rows = [r for r in rows if _looks_like_text(r, levelled, ink, tones, spacing, tests, typical, enough)]
        if learned:
            faint = params.learned_faint_ink * spacing * spacing
            rows = [r for r in rows if r.band_q90 >= params.learned_min_band or len(r.xs) >= faint]
    for cx, cy, radius in find_stamps(ink, spacing, params.stamp_radius):
        reach = radius + 0.2 * spacing
        rows = [
            r
            for r in rows
            if r.network_sure(params.stamp_spare)
            or (np.hypot(r.xs - cx, r.ys - cy) < reach).mean() < params.stamp_share
        ]
    confidence = page_confidence(rows, text) if params.line_model is not None else None
    return PageRows(tf, float(angle), levelled, ink, text, ruling, grid, spacing, rows, confidence)


def page_confidence(rows: list[_RowInk], text: np.ndarray) -> float:
    """Return the learned finder's certainty (0–1) over a page: how sure it is of its lines times the ink they hold.

    The first factor is the mean of each row's band (90th percentile) and region
    (mean) probabilities over its ink, weighted by ink; the second the share of
    the page's text ink (rules removed) that lies in the rows kept. A blank page
    scores 0; a page of writing the network does not see as lines, or sees only
    in part (damage, an unusual layout), scores low.
    """
    ink = np.array([len(r.xs) for r in rows], np.float64)
    total = float(np.count_nonzero(text))
    if not len(rows) or total == 0:
        return 0.0
    sure = np.array([(r.band_q90 + r.region_mean) / 2 for r in rows], np.float64)
    return float(np.dot(ink, sure) / ink.sum() * min(1.0, ink.sum() / total))


def _reading_key(row: _RowInk, grid: Grid) -> tuple[int, float, int]:
    """Return the sort key of reading order: above the table, left margin, columns, right margin, below."""
    cx = (row.x0 + row.x1) / 2
    if not grid.found:
        return (0, row.ridge_y, row.x0)
    top, bottom = grid.rows[0][0], grid.rows[-1][1]
    ncol = len(grid.columns)
    if row.ridge_y < top:
        region = 0
    elif row.ridge_y > bottom:
        region = ncol + 3
    elif cx < grid.columns[0][0]:
        region = 1
    elif cx >= grid.columns[-1][1]:
        region = ncol + 2
    else:
        region = 2 + (grid.column_at(cx) or 0)
    return (region, row.ridge_y, row.x0)


def _table(grid: Grid, tf: PageTransform) -> Table | None:
    """Return the grid as a :class:`Table` in original-scan pixels (None when the page has no table)."""
    if not grid.found:
        return None
    mid_y = (grid.rows[0][0] + grid.rows[-1][1]) / 2
    mid_x = (grid.columns[0][0] + grid.columns[-1][1]) / 2
    col_bounds = []
    for a, b in grid.columns:
        pts = tf.to_original([[a, mid_y], [b, mid_y]])
        col_bounds.append((int(round(pts[0, 0])), int(round(pts[1, 0]))))
    row_bounds = []
    for a, b in grid.rows:
        pts = tf.to_original([[mid_x, a], [mid_x, b]])
        row_bounds.append((int(round(pts[0, 1])), int(round(pts[1, 1]))))
    cells = []
    for r, (y0, y1) in enumerate(grid.rows):
        for c, (x0, x1) in enumerate(grid.columns):
            quad = tf.to_original([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
            cells.append(Cell(r, c, [(int(round(x)), int(round(y))) for x, y in quad]))
    return Table(col_bounds, row_bounds, cells)


def _to_points(pts: np.ndarray, w: int, h: int) -> list[Point]:
    """Return float (N, 2) points as integer pixels clipped to the page, consecutive duplicates removed."""
    pts = np.rint(pts).astype(np.int64)
    pts[:, 0] = np.clip(pts[:, 0], 0, w - 1)
    pts[:, 1] = np.clip(pts[:, 1], 0, h - 1)
    out: list[Point] = []
    for x, y in pts.tolist():
        if not out or out[-1] != (x, y):
            out.append((int(x), int(y)))
    if len(out) > 1 and out[0] == out[-1]:
        out.pop()
    return out


def segment_page(page: PageImage, params: SegmentationParams | None = None) -> PageSegmentation:
    """Return the text lines of a page in reading order, with polygons and baselines in scan pixels.

    Reading order: lines above the table, the left margin, the table's columns
    left to right, the right margin, lines below the table; top to bottom in
    each. Lines inside the table carry their column index and the index of
    their cell in ``PageSegmentation.table.cells``.
    """
    params = params or SegmentationParams()
    found = find_rows(page, params)
    h, w = page.pixels.shape
    tf, grid, spacing = found.transform, found.grid, found.spacing
    bin_w = max(2.0, params.bin_width * spacing)
    lines: list[Line] = []
    for i, row in enumerate(sorted(found.rows, key=lambda r: _reading_key(r, grid))):
        base_w = _baseline(row.ys, row.xs, bin_w)
        height = spacing
        if row.label:  # a small printed label: margins at its own size, not at the handwriting's
            lo, hi = np.percentile(row.ys, [5, 95])
            height = min(spacing, params.label_size * (hi - lo + 1))
        poly_w = (
            row.outline if row.outline is not None else _outline(row.ys, row.xs, base_w, spacing, params, height=height)
        )
        col = grid.column_at((row.x0 + row.x1) / 2) if grid.found else None
        cell = None
        if col is not None:
            band = grid.row_at(row.ridge_y)
            if band is not None:
                cell = band * len(grid.columns) + col
        lines.append(
            Line(
                id=f"l{i + 1:04d}",
                polygon=_to_points(tf.to_original(poly_w), w, h),
                baseline=_to_points(tf.to_original(base_w), w, h),
                order=i,
                column=col,
                cell=cell,
                words=find_words(row.ys, row.xs, spacing, tf, (w, h), gap=params.word_gap),
            )
        )
    rules = []
    for rule in found.ruling.horizontal + found.ruling.vertical:
        p = np.rint(tf.to_original([[rule.x0, rule.y0], [rule.x1, rule.y1]])).astype(int)
        rules.append(((int(p[0, 0]), int(p[0, 1])), (int(p[1, 0]), int(p[1, 1]))))
    return PageSegmentation(
        lines=lines,
        width=w,
        height=h,
        angle=found.angle,
        line_spacing=float(spacing / tf.scale),
        table=_table(grid, tf),
        rules=rules,
        confidence=found.confidence,
        low_confidence=found.confidence is not None and found.confidence < params.low_confidence,
    )
