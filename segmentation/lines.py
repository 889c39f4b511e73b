"""Text-line segmentation of register pages: one line per text row within one table cell.

The page is worked on at a reduced, levelled scale (``WORK_PIXELS``):

1. binarize (Sauvola), estimate the skew from the rules and level the page;
2. find and remove the ruling; the long vertical rules bound the columns;
3. smear the ink into a density map with an anisotropic Gaussian (wide along
   the line, narrow across it) and take its ridges, one per text row, cut at
   the vertical rules (after Bukhari, Shafait & Breuel, "Script-independent
   handwritten textlines segmentation using active contours", ICDAR 2009);
4. grow a watershed from the ridges over the density map, so every ink
   component falls to the row it mostly sits in (components that span two
   rows are split pixel by pixel);
5. each row's ink, split at wide gaps, becomes a line: its polygon is the upper
   and lower ink envelope, its baseline a straight fit to the lower edge of
   the letters' core; both are mapped back to original-scan pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.segmentation import watershed

from segmentation.binarize import binarize_sauvola
from segmentation.deskew import PageTransform, estimate_skew, page_transform
from segmentation.rules import Grid, Ruling, detect_rules, remove_rules, table_grid
from segmentation.types import Cell, Line, PageImage, PageSegmentation, Point, Table
from segmentation.words import find_words

#: Pixel budget of the working image: enough for thin pen strokes, small enough for ≤ 2 s/page.
WORK_PIXELS = 3_600_000


@dataclass(frozen=True)
class SegmentationParams:
    """Tunable constants of the line finder, in units of the page's x-height unless noted."""

    work_pixels: int = WORK_PIXELS  # pixels of the working image
    sigma_along: float = 1.6  # Gaussian smear along the line
    sigma_across: float = 0.45  # Gaussian smear across the line
    ridge_floor: float = 0.12  # ridge must exceed this share of the page's strong density
    min_ridge: float = 1.0  # shorter ridges are dropped
    split_gap: float = 3.0  # horizontal gap that splits a row into two lines
    split_tall: float = 1.4  # components taller than this many line spacings are split pixelwise
    min_line_ink: float = 0.6  # lines with less ink area (in x-height²) are noise
    pad: float = 0.15  # polygon padding
    bin_width: float = 1.0  # envelope bin width


def _working_scale(shape: tuple[int, int], work_pixels: int) -> float:
    h, w = shape
    return min(1.0, float(np.sqrt(work_pixels / (h * w))))


def estimate_x_height(ink: np.ndarray) -> float:
    """Return the median height in pixels of letter-sized ink components (the x-height, roughly)."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    if n <= 1:
        return 12.0
    hgt, wid, area = stats[1:, 3], stats[1:, 2], stats[1:, 4]
    # Letter-like: not specks, not rules or flourishes spanning a large part of the page.
    big = max(ink.shape) / 20
    keep = (area >= 12) & (hgt >= 4) & (hgt < big) & (wid < 4 * big)
    if keep.sum() < 20:
        return 12.0
    return float(np.clip(np.median(hgt[keep]), 6.0, big))


def _to_points(pts: np.ndarray, w: int, h: int) -> list[Point]:
    pts = np.rint(pts).astype(np.int64)
    pts[:, 0] = np.clip(pts[:, 0], 0, w - 1)
    pts[:, 1] = np.clip(pts[:, 1], 0, h - 1)
    out: list[Point] = []
    for x, y in pts.tolist():
        if not out or out[-1] != (x, y):
            out.append((int(x), int(y)))
    return out


@dataclass
class _RowInk:
    """The ink pixels (working frame) of one line candidate."""

    ys: np.ndarray
    xs: np.ndarray
    ridge_y: float  # mean y of its ridge, for ordering

    @property
    def x0(self) -> int:
        return int(self.xs.min())

    @property
    def x1(self) -> int:
        return int(self.xs.max())


def _ridges(density: np.ndarray, barrier: np.ndarray, floor: float, min_len: int) -> np.ndarray:
    """Return a label image of the density map's ridges (local maxima across rows), cut at barriers."""
    up = np.empty_like(density)
    up[0] = -1
    up[1:] = density[:-1]
    down = np.empty_like(density)
    down[-1] = -1
    down[:-1] = density[1:]
    ridge = (density > up) & (density >= down) & (density > floor) & ~barrier
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ridge.astype(np.uint8), connectivity=8)
    small = np.nonzero(stats[:, 2] < min_len)[0]
    if len(small):
        labels[np.isin(labels, small)] = 0
    return labels


def _split_gaps(xs: np.ndarray, gap: float) -> list[np.ndarray]:
    """Return index arrays of ``xs`` grouped into runs separated by more than ``gap`` empty columns."""
    order = np.argsort(xs, kind="stable")
    sx = xs[order]
    breaks = np.nonzero(np.diff(sx) > gap)[0]
    return np.split(order, breaks + 1)


def _envelope(ys: np.ndarray, xs: np.ndarray, bin_w: float, pad: float) -> np.ndarray:
    """Return a closed polygon (N, 2) around the pixels: upper envelope left→right, lower right→left."""
    x0, x1 = int(xs.min()), int(xs.max())
    nb = max(1, int(np.ceil((x1 - x0 + 1) / bin_w)))
    b = np.minimum(((xs - x0) / bin_w).astype(np.int64), nb - 1)
    top = np.full(nb, np.inf)
    bot = np.full(nb, -np.inf)
    np.minimum.at(top, b, ys)
    np.maximum.at(bot, b, ys)
    have = np.isfinite(top)
    idx = np.arange(nb)
    top = np.interp(idx, idx[have], top[have])
    bot = np.interp(idx, idx[have], bot[have])
    left = x0 + idx * bin_w - np.where(idx == 0, pad, 0)
    right = np.minimum(x0 + (idx + 1) * bin_w, x1 + 1) + np.where(idx == nb - 1, pad, 0)
    upper = np.stack([np.stack([left, right], 1).ravel(), np.repeat(top - pad, 2)], 1)
    lower = np.stack([np.stack([left, right], 1).ravel(), np.repeat(bot + 1 + pad, 2)], 1)[::-1]
    return np.concatenate([upper, lower])


def _baseline(ys: np.ndarray, xs: np.ndarray, bin_w: float) -> np.ndarray:
    """Return the two end points (2, 2) of a straight baseline fitted to the lower edge of the core."""
    x0, x1 = int(xs.min()), int(xs.max())
    nb = max(1, int(np.ceil((x1 - x0 + 1) / bin_w)))
    b = np.minimum(((xs - x0) / bin_w).astype(np.int64), nb - 1)
    order = np.lexsort((ys, b))
    sb, sy = b[order], ys[order]
    starts = np.searchsorted(sb, np.arange(nb))
    ends = np.searchsorted(sb, np.arange(nb), side="right")
    cx, cy = [], []
    for i in range(nb):
        if ends[i] > starts[i]:
            col = sy[starts[i] : ends[i]]
            # The lower edge of the letters' core: descenders are the sparse tail below.
            cy.append(float(np.percentile(col, 80)))
            cx.append(x0 + (i + 0.5) * bin_w)
    if len(cx) >= 2 and cx[-1] - cx[0] > 2 * bin_w:
        slope, icpt = np.polyfit(cx, cy, 1)
        slope = float(np.clip(slope, -0.15, 0.15))
        icpt = float(np.median(np.asarray(cy) - slope * np.asarray(cx)))
    else:
        slope, icpt = 0.0, float(np.median(cy)) if cy else float(ys.max())
    return np.array([[x0, icpt + slope * x0], [x1 + 1, icpt + slope * (x1 + 1)]])


def _assign_rows(
    text: np.ndarray, ruling: Ruling, xh: float, spacing: float, params: SegmentationParams
) -> list[_RowInk]:
    """Return the ink of every text row (working frame), rows cut at vertical rules and wide gaps."""
    h, w = text.shape
    # Density map at a scale where the x-height is ~4 px: cheap and already smooth.
    f = min(1.0, 4.0 / xh)
    small = cv2.resize(text.astype(np.float32), None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    sx, sy = params.sigma_along * xh * f, params.sigma_across * xh * f
    density = cv2.GaussianBlur(small, (0, 0), sigmaX=sx, sigmaY=sy)
    barrier_small = cv2.resize(ruling.vertical_mask.astype(np.uint8), (small.shape[1], small.shape[0]),
                               interpolation=cv2.INTER_AREA) > 0
    barrier_small = cv2.dilate(barrier_small.astype(np.uint8), np.ones((1, 3), np.uint8)).astype(bool)
    strong = float(np.percentile(density[density > 0], 99)) if (density > 0).any() else 1.0
    ridges = _ridges(density, barrier_small, params.ridge_floor * strong, max(2, int(params.min_ridge * xh * f)))
    if ridges.max() == 0:
        return []
    landscape = -density
    landscape[barrier_small] = density.max() + 1.0
    regions = watershed(landscape, markers=ridges, mask=None)
    regions_full = cv2.resize(regions.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST)

    n, comp, stats, _ = cv2.connectedComponentsWithStats(text.astype(np.uint8), connectivity=8)
    ys, xs = np.nonzero(text)
    cl = comp[ys, xs]
    rl = regions_full[ys, xs]
    # Majority region of each component.
    nreg = int(regions.max()) + 1
    key = cl.astype(np.int64) * nreg + rl
    uniq, counts = np.unique(key, return_counts=True)
    ucomp, ureg = uniq // nreg, uniq % nreg
    best = np.zeros(n, np.int64)
    bestc = np.zeros(n, np.int64)
    for c, r, k in zip(ucomp.tolist(), ureg.tolist(), counts.tolist(), strict=True):
        if k > bestc[c]:
            bestc[c] = k
            best[c] = r
    tall = stats[:, 3] > params.split_tall * spacing
    tall[0] = False
    row_of_pixel = np.where(tall[cl], rl, best[cl])

    ridge_y = np.zeros(nreg)
    ry, rx = np.nonzero(ridges)
    rlab = ridges[ry, rx]
    np.add.at(ridge_y, rlab, ry / f)
    ridge_y /= np.maximum(np.bincount(rlab, minlength=nreg), 1)

    order = np.argsort(row_of_pixel, kind="stable")
    srow = row_of_pixel[order]
    bounds = np.searchsorted(srow, np.arange(nreg + 1))
    rows: list[_RowInk] = []
    gap = params.split_gap * xh
    for r in range(1, nreg):
        idx = order[bounds[r] : bounds[r + 1]]
        if len(idx) == 0:
            continue
        for part in _split_gaps(xs[idx], gap):
            sel = idx[part]
            if len(sel) < params.min_line_ink * xh * xh:
                continue
            rows.append(_RowInk(ys[sel], xs[sel], float(ridge_y[r])))
    return rows


def _table(grid: Grid, tf: PageTransform, scale_back: float) -> Table | None:
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


def segment_page(page: PageImage, params: SegmentationParams | None = None) -> PageSegmentation:
    """Return the text lines of a page in reading order, with polygons and baselines in scan pixels.

    Reading order is column by column (left margin, table columns left to
    right, right margin), top to bottom within each; lines inside the table
    carry their column and cell index.
    """
    params = params or SegmentationParams()
    gray = page.pixels
    if gray.ndim != 2:
        raise ValueError("segment_page expects a 2-D grayscale page")
    H, W = gray.shape
    scale = _working_scale((H, W), params.work_pixels)
    tf = page_transform((H, W), scale)
    work = tf.apply(gray)
    ink = binarize_sauvola(work)
    angle = estimate_skew(ink)
    if abs(angle) >= 0.05:
        rot = page_transform(work.shape, 1.0, angle)
        ink = cv2.warpAffine(ink.astype(np.uint8) * 255, rot.matrix, rot.size, flags=cv2.INTER_LINEAR,
                             borderValue=0) > 127
        tf = page_transform((H, W), scale, angle)
        # The levelled frame is the scaled frame rotated; compose exactly.
        m = np.vstack([rot.matrix, [0, 0, 1]]) @ np.vstack([page_transform((H, W), scale).matrix, [0, 0, 1]])
        tf = PageTransform(m[:2], rot.size, scale, angle)
    else:
        angle = 0.0
    xh = estimate_x_height(ink)
    spacing = 3.2 * xh
    ruling = detect_rules(ink, spacing)
    text = remove_rules(ink, ruling)
    grid = table_grid(ruling, text.shape, min_column=1.5 * xh)
    rows = _assign_rows(text, ruling, xh, spacing, params)

    lines: list[Line] = []
    bin_w = max(2.0, params.bin_width * xh)
    pad = params.pad * xh
    keyed = []
    for row in rows:
        cx = (row.x0 + row.x1) / 2
        col = grid.column_at(cx) if grid.found else None
        if grid.found:
            if col is not None:
                region = 1 + col
            elif cx < grid.columns[0][0]:
                region = 0
            else:
                region = 1 + len(grid.columns)
        else:
            region = 0
        keyed.append((region, row.ridge_y, row.x0, row, col))
    keyed.sort(key=lambda k: (k[0], k[1], k[2]))
    for i, (_, ridge_y, _, row, col) in enumerate(keyed):
        poly_w = _envelope(row.ys, row.xs, bin_w, pad)
        base_w = _baseline(row.ys, row.xs, bin_w)
        polygon = _to_points(tf.to_original(poly_w), W, H)
        baseline = _to_points(tf.to_original(base_w), W, H)
        cell = None
        if col is not None:
            r = grid.row_at(ridge_y)
            if r is not None:
                cell = r * len(grid.columns) + col
        words = find_words(row.ys, row.xs, xh, tf, (W, H))
        lines.append(Line(f"l{i + 1:04d}", polygon, baseline, order=i, column=col, cell=cell, words=words))
    rules_out = []
    for rule in ruling.horizontal + ruling.vertical:
        p = tf.to_original([[rule.x0, rule.y0], [rule.x1, rule.y1]])
        rules_out.append(((int(round(p[0, 0])), int(round(p[0, 1]))), (int(round(p[1, 0])), int(round(p[1, 1])))))
    return PageSegmentation(
        lines=lines,
        width=W,
        height=H,
        angle=float(angle),
        x_height=float(xh / scale),
        table=_table(grid, tf, 1 / scale),
        rules=rules_out,
    )
