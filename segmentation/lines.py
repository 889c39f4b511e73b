"""Text-line segmentation of register pages: one line per text row within one table cell.

The page is worked on at a reduced, levelled scale (``WORK_PIXELS``); every
length is measured in units of the page's own line spacing, estimated from it:

1. binarize (Sauvola), drop the scanner background, level the page by its skew;
2. find and remove the ruling; the long vertical rules bound the columns,
   except a rule that only divides a labelled column below its header
   (francs | centimes): a row written across it is one line;
3. smear the ink into a density map with an anisotropic Gaussian (wide along
   the line, narrow across it) and take its ridges, one per text row, cut at
   the vertical rules (after Bukhari, Shafait & Breuel, "Script-independent
   handwritten textlines segmentation using active contours", ICDAR 2009);
4. grow a watershed from the ridges over the density map, so every ink
   component falls to the row it mostly sits in (components taller than a
   row are split pixel by pixel);
5. split each row at the rules around its table cell, at blank bands
   across it (two rows that got one ridge), at wide gaps and at vertical
   rules (where the writing does not run up to the rule from both sides),
   join the fragments of one line (same baseline, small gap, no rule
   between), attach small pieces
   (superscripts, dots) to the line they belong to, and drop what is not
   writing (dots, dashes, ornaments, blots, pencil marks, page-edge shadow),
   judging tones against the paper next to the text, not the whole scan;
6. each line's polygon is its ink outline padded and never thinner than a band
   around its baseline, a straight fit to the lower edge of the letters' core;
   both are mapped back to original-scan pixels.

The constants in :class:`SegmentationParams` were tuned on the LECTAUREP
training pages (bench/segmentation_bench.py reports the validation pages).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
from scipy.ndimage import find_objects
from skimage.segmentation import watershed

from segmentation.binarize import binarize_sauvola, paper_mask
from segmentation.deskew import PageTransform, estimate_skew, page_transform, rotate_mask
from segmentation.learned import LineMaps, line_basins, line_network
from segmentation.rules import Grid, Ruling, detect_rules, remove_rules, rule_band, subcolumn_rules, table_grid
from segmentation.types import Cell, Line, PageImage, PageSegmentation, Point, Table
from segmentation.words import find_words

#: Pixel budget of the working image: enough for thin pen strokes, small enough for ≤ 2 s/page.
WORK_PIXELS = 3_600_000

#: Fewer ink pixels (working frame) do not resolve a pen stroke's shape: on a tiny scan, where the
#: pen is a pixel wide, every number looks like one lone stroke.
MIN_STROKE_PIXELS = 64


@dataclass(frozen=True)
class SegmentationParams:
    """Tunable constants of the line finder, in units of the page's line spacing unless noted."""

    work_pixels: int = WORK_PIXELS  # pixels of the working image
    # Rows: density map and its ridges.
    sigma_along: float = 0.6  # Gaussian smear along the line
    sigma_across: float = 0.12  # Gaussian smear across the line
    ridge_floor: float = 0.12  # a ridge exceeds this share of the page's 99th-percentile density
    ridge_reach: float = 0.3  # a ridge is the densest point this far up and down
    min_ridge: float = 0.3  # shorter ridges are dropped
    split_tall: float = 1.3  # components taller than this are split pixelwise between rows
    # Lines: splitting, joining, attaching.
    split_gap: float = 1.5  # a horizontal gap wider than this splits a row into two lines
    wall_gap: float = 0.2  # a vertical rule splits a row only where the blank run across it is wider than this
    merge_dy: float = 0.35  # fragments whose baselines are closer than this are one line
    small_width: float = 2.0  # narrower lines are pieces that may belong to a neighbour
    attach_gap: float = 1.0  # a piece joins a line at most this far to its side
    attach_above: float = 1.1  # ... with its centre at most this far above the line's baseline
    attach_below: float = 0.5  # ... or this far below it
    # What is not writing (thresholds at the 0.5th percentile of true lines on train pages).
    min_line_ink: float = 0.05  # less ink area (in spacing²): noise
    min_ink_height: float = 0.2  # flatter (5-95 % of the ink rows): a dash, an ornament
    min_ink_width: float = 0.3  # narrower, and lower than 0.4: a dot
    max_ink_height: float = 1.35  # taller: a blot, a stamp, the leftover of a rule
    min_thickness: float = 0.088  # less mean ink per column: a lone pen stroke, an ornament...
    min_thickness_rel: float = 0.6  # ... unless the page's lines are thin too: this share of their median
    max_thickness: float = 0.35  # more: a solid blot (bold digits reach 0.34)
    min_stroke_width: float = 1.5  # wider, and ...
    max_one_stroke: float = 0.95  # ... at least this share of its columns crossing one stroke: an ornament, a dash
    # A lone pen stroke (a tick, a slash, a brace under a header) crosses one stroke along and across and is
    # elongated (ratio of the principal axes of its pixels): (share of columns and rows, ratio) pairs.
    single_stroke: tuple[tuple[float, float], ...] = ((0.9, 4.0), (0.55, 9.0))
    single_stroke_slope: float = 60.0  # ... unless steeper than this (degrees): a one
    min_contrast: float = 0.6  # ink contrast / the page's writing contrast, below: pencil, bleed-through
    min_background: float = 0.78  # median gray around the ink / paper gray, below: shadow, page edge
    # Ditto marks ("), written in table cells and transcribed as lines, are smaller than any word.
    ditto_height: tuple[float, float] = (0.15, 0.45)  # ink height (5-95 % of its rows)
    ditto_stroke: float = 0.006  # a stroke has at least this ink area (spacing²) ...
    ditto_stroke_height: float = 0.12  # ... is at least this tall ...
    ditto_stroke_width: float = 0.3  # ... and at most this wide
    # Round stamps (the notary's, over the header) are no text.
    stamp_radius: tuple[float, float] = (1.5, 5.0)  # radius range searched
    stamp_share: float = 0.5  # a row with at least this share of its ink inside a stamp is dropped
    # ... unless the learned finder is sure of it: its band (90th percentile) and region (mean) probabilities
    # over the row's ink reach these (the network, trained on lines without the stamps' own lettering, sees the
    # text a stamp was pressed over). Off: training pages 1::4 P/R 0.9364/0.9416, validation 0.9491/0.9362;
    # (0.8, 0.8): 0.9352/0.9432, 0.9487/0.9377; (0.9, 0.9): 0.9362/0.9419, 0.9491/0.9372; band 0.9 alone
    # 0.9349/0.9430, 0.9482/0.9377.
    stamp_spare: tuple[float, float] | None = (0.8, 0.8)
    # Outline and baseline.
    above: float = 0.65  # the polygon reaches at least this far above the baseline
    below: float = 0.2  # ... and this far below it
    reach: float = 0.95  # ink further from the baseline does not grow the polygon
    pad_top: float = 0.4  # margin above the ink
    pad_bottom: float = 0.25  # ... below it
    pad_left: float = 0.25  # ... before the line's first ink
    pad_right: float = 0.15  # ... after its last ink
    bin_width: float = 0.4  # width of the outline's steps and of the baseline fit's bins
    word_gap: float = 0.15  # a blank run wider than this separates words
    stack_gap: float = 0.3  # a blank band across a row taller than this cuts it in two (two rows, one ridge)
    label_gap: float = 0.12  # a word over the middle of a longer one, this far above it, is a line (a header's "de")
    label_width: float = 0.3  # ... when at least this wide, and the longer word runs this far past both its ends
    label_size: float = 2.5  # its vertical margins are those of a line spacing this many times its ink height
    cell_reach: float = 0.3  # rules are extended this far at both ends when they close the table's cells
    # The learned line finder (segmentation.learned): None uses the rules above instead.
    line_model: str | None = None
    learned_filter: bool = True  # also drop what does not look like writing (dots, dashes, pencil)
    learned_enough_ink: float = 0.2  # ... but a line with this much ink (spacing²) is never too small or odd
    # ... and its background test is looser: the halo of a small printed header (DATES, DROITS.) is gray.
    learned_min_background: float = 0.7
    # The network's own confidence, over the row's ink: the 90th percentile of its band probability and the
    # mean of its region probability. A row it is sure of passes the size and contrast tests (a lone "M",
    # a short number, a margin note in paler ink); one it barely sees is dropped (a smudge, a rule's remnant).
    learned_sure: tuple[float, float] = (0.9, 0.9)
    learned_min_band: float = 0.8
    learned_faint_ink: float = 1.0  # ... but a row with this much ink (spacing²) is left to the rules' tests
    # A basin's ink is split into lines at column rules and at blank runs wider than this: the network has
    # already parted the lines it sees. Training pages 1::4 P/R 0.9314/0.9391 at the rules' 1.5 ->
    # 0.9364/0.9416 at 2.5 (3, 5 and 100 the same; 2.0 half-way); validation unchanged (0.9491/0.9362).
    learned_split_gap: float = 3.0
    learned_outline: bool = True  # a line's polygon is its basin's region, not its padded ink outline
    learned_clip: float | None = 2.0  # ... cut to its ink's box padded this many times the ink outline's pads
    # Seeds: band components above this probability, and components above ``band_floor`` that hold none (a
    # faint line). 0.7 alone: validation P/R 0.9418/0.9271, training pages 1::4 0.9339/0.9391; 0.8 alone
    # split more joined lines (0.9396/0.9307) but lost the only line of a small register fragment
    # (tests/reliability); 0.8 over a 0.7 floor: 0.9406/0.9317 (end-to-end gap +3.06 -> +2.40 points),
    # training 0.9319/0.9396 (floor 0.6 and threshold 0.85 / 0.9 within a line of it on both).
    band_threshold: float = 0.8
    band_floor: float | None = 0.7
    region_threshold: float = 0.5
    min_band_area: int = 4  # band components smaller than this (network pixels) seed no line
    min_line_pixels: int = 8  # lines with less ink than this (working pixels) are dropped


@dataclass
class _RowInk:
    """The ink pixels (working frame) of one line candidate, the mean y of its ridge, its x extent."""

    ys: np.ndarray
    xs: np.ndarray
    ridge_y: float
    x0: int = 0
    x1: int = 0
    label: bool = False  # a small label printed over a longer one: its margins follow its own size
    outline: np.ndarray | None = None  # (N, 2) polygon (working frame) when the learned finder drew one
    band_q90: float | None = None  # the learned finder's band probability over the ink, 90th percentile
    region_mean: float | None = None  # ... and its mean region probability

    def __post_init__(self) -> None:
        self.x0, self.x1 = int(self.xs.min()), int(self.xs.max())

    def network_sure(self, limits: tuple[float, float] | None) -> bool:
        """Return whether the learned finder's band and region probabilities over this row reach ``limits``."""
        return (
            limits is not None
            and self.band_q90 is not None
            and self.band_q90 >= limits[0]
            and self.region_mean >= limits[1]
        )


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


def _working_scale(shape: tuple[int, int], work_pixels: int) -> float:
    h, w = shape
    return min(1.0, float(np.sqrt(work_pixels / (h * w))))


def estimate_line_spacing(text: np.ndarray, lo: float = 8.0, hi: float | None = None) -> float:
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


def _ridges(density: np.ndarray, barrier: np.ndarray, floor: float, min_len: int, reach: int) -> np.ndarray:
    """Return a label image of the density map's ridges, cut at barriers.

    A ridge pixel is the maximum of its column within ``reach`` pixels up and
    down (so one text row gives one ridge, not one per ascender band).
    """
    kernel = np.ones((2 * reach + 1, 1), np.uint8)
    peak = cv2.dilate(density, kernel)
    ridge = (density >= peak) & (density > floor) & ~barrier
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ridge.astype(np.uint8), connectivity=8)
    small = np.nonzero(stats[:, 2] < min_len)[0]
    if len(small):
        labels[np.isin(labels, small)] = 0
    return labels


def _split_gaps(xs: np.ndarray, gap: float, walls: Sequence[float] = (), wall_gap: float = 2.0) -> list[np.ndarray]:
    """Return index arrays of ``xs`` grouped into runs split by more than ``gap`` empty columns or by a wall.

    A wall (the x of a vertical rule) splits the run only where it falls in a
    gap wider than ``wall_gap`` pixels: writing that crosses a rule, or runs up
    to it from both sides (removing the rule leaves a gap of its own width),
    stays whole.
    """
    order = np.argsort(xs, kind="stable")
    sx = xs[order]
    d = np.diff(sx)
    cut = d > gap
    if len(walls):
        w = np.asarray(walls, np.float64)
        # A wall between two consecutive ink columns more than ``wall_gap`` (and 2 px) apart.
        lo, hi = sx[:-1, None], sx[1:, None]
        cut |= ((w[None, :] > lo) & (w[None, :] < hi)).any(axis=1) & (d >= max(2.0, wall_gap))
    breaks = np.nonzero(cut)[0]
    return np.split(order, breaks + 1)


def _outline(
    ys: np.ndarray,
    xs: np.ndarray,
    base: np.ndarray,
    spacing: float,
    params: SegmentationParams,
    height: float | None = None,
) -> np.ndarray:
    """Return a line's polygon (N, 2): its padded ink outline, never thinner than the baseline band.

    The band reaches ``above`` over and ``below`` under the baseline. Ink
    further than ``reach`` from the baseline (a flourish, a neighbour's
    descender) does not grow it. Vertical lengths are in units of ``height``
    (the line spacing unless given), horizontal ones of ``spacing``.
    """
    bin_w = max(2.0, params.bin_width * spacing)
    x0, x1 = int(xs.min()), int(xs.max())
    nb = max(1, int(np.ceil((x1 - x0 + 1) / bin_w)))
    b = np.minimum(((xs - x0) / bin_w).astype(np.int64), nb - 1)
    (bx0, by0), (bx1, by1) = base
    slope = (by1 - by0) / max(bx1 - bx0, 1e-6)
    centres = x0 + (np.arange(nb) + 0.5) * bin_w
    base_y = by0 + slope * (centres - bx0)
    rel = ys - (by0 + slope * (xs - bx0))
    height = height or spacing  # the unit of the vertical margins
    reach = params.reach * height
    keep = (rel > -reach) & (rel < reach)
    tb = np.full(nb, np.inf)
    bb = np.full(nb, -np.inf)
    np.minimum.at(tb, b[keep], ys[keep])
    np.maximum.at(bb, b[keep], ys[keep] + 1)
    top = np.minimum(base_y - params.above * height, tb - params.pad_top * height)
    bot = np.maximum(base_y + params.below * height, bb + params.pad_bottom * height)
    idx = np.arange(nb)
    left = x0 + idx * bin_w - np.where(idx == 0, params.pad_left * spacing, 0)
    right = np.minimum(x0 + (idx + 1) * bin_w, x1 + 1) + np.where(idx == nb - 1, params.pad_right * spacing, 0)
    upper = np.stack([np.stack([left, right], 1).ravel(), np.repeat(top, 2)], 1)
    lower = np.stack([np.stack([left, right], 1).ravel(), np.repeat(bot, 2)], 1)[::-1]
    poly = np.concatenate([upper, lower]).astype(np.float32)
    # Drop the staircase's redundant vertices (a pixel of tolerance in the working frame).
    return cv2.approxPolyDP(poly.reshape(-1, 1, 2), 1.0, True).reshape(-1, 2).astype(np.float64)


def _baseline(ys: np.ndarray, xs: np.ndarray, bin_w: float) -> np.ndarray:
    """Return the two end points (2, 2) of a straight baseline fitted to the lower edge of the core."""
    x0, x1 = int(xs.min()), int(xs.max())
    nb = max(1, int(np.ceil((x1 - x0 + 1) / bin_w)))
    b = np.minimum(((xs - x0) / bin_w).astype(np.int64), nb - 1)
    order = np.lexsort((ys, b))
    sb, sy = b[order], ys[order]
    counts = np.bincount(sb, minlength=nb)
    have = np.nonzero(counts)[0]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[have]
    # The lower edge of the letters' core: the 80th percentile of each bin's ink
    # (descenders are the sparse tail below it).
    cy = sy[starts + (0.8 * (counts[have] - 1)).astype(np.int64)].astype(np.float64)
    cx = x0 + (have + 0.5) * bin_w
    if len(cx) >= 3 and cx[-1] - cx[0] > 2 * bin_w:
        slope = float(np.clip(np.polyfit(cx, cy, 1)[0], -0.15, 0.15))
        icpt = float(np.median(cy - slope * cx))
    else:
        slope, icpt = 0.0, float(np.median(cy))
    return np.array([[x0, icpt + slope * x0], [x1 + 1, icpt + slope * (x1 + 1)]])


def _barrier(ruling: Ruling, shape: tuple[int, int], f: float) -> np.ndarray:
    """Return the vertical rules drawn into a mask of ``shape`` (the low-resolution density grid)."""
    h, w = shape
    mask = cv2.resize(ruling.vertical_mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_AREA) > 0
    canvas = mask.astype(np.uint8)
    for r in ruling.vertical:
        p0 = (int(round(r.x0 * f)), int(round(r.y0 * f)))
        p1 = (int(round(r.x1 * f)), int(round(r.y1 * f)))
        cv2.line(canvas, p0, p1, 1, 1)
    # Two pixels wide: an 8-connected ridge steps diagonally through a one-pixel wall.
    return cv2.dilate(canvas, np.ones((1, 2), np.uint8)).astype(bool)


def _assign_rows(text: np.ndarray, ruling: Ruling, spacing: float, params: SegmentationParams) -> list[_RowInk]:
    """Return the ink of every text row (working frame), rows cut at vertical rules and wide gaps."""
    h, w = text.shape
    if not text.any():
        return []
    # Density map at a scale where rows are ~12 px apart: cheap and already smooth.
    f = min(1.0, 12.0 / spacing)
    small = cv2.resize(text.astype(np.float32), None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    unit = spacing * f
    density = cv2.GaussianBlur(small, (0, 0), sigmaX=params.sigma_along * unit, sigmaY=params.sigma_across * unit)
    barrier = _barrier(ruling, small.shape, f)
    strong = float(np.percentile(density[density > 0], 99)) if (density > 0).any() else 1.0
    ridges = _ridges(
        density,
        barrier,
        params.ridge_floor * strong,
        max(2, int(params.min_ridge * unit)),
        max(1, int(round(params.ridge_reach * unit))),
    )
    if ridges.max() == 0:
        return []
    landscape = -density
    landscape[barrier] = density.max() + 1.0
    regions = watershed(landscape, markers=ridges)
    regions_full = cv2.resize(regions.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST)

    n, comp, stats, _ = cv2.connectedComponentsWithStats(text.astype(np.uint8), connectivity=8)
    ys, xs = np.nonzero(text)
    cl = comp[ys, xs]
    rl = regions_full[ys, xs]
    # Each component goes to the region holding most of its pixels.
    nreg = int(regions.max()) + 1
    uniq, counts = np.unique(cl.astype(np.int64) * nreg + rl, return_counts=True)
    ucomp, ureg = uniq // nreg, uniq % nreg
    first = np.lexsort((-counts, ucomp))
    keep = np.concatenate([[True], ucomp[first][1:] != ucomp[first][:-1]])
    best = np.zeros(n, np.int64)
    best[ucomp[first][keep]] = ureg[first][keep]
    tall = stats[:, 3] > params.split_tall * spacing
    tall[0] = False
    row_of_pixel = np.where(tall[cl], rl, best[cl])

    ry, rx = np.nonzero(ridges)
    rlab = ridges[ry, rx]
    ridge_y = np.bincount(rlab, weights=ry / f, minlength=nreg) / np.maximum(np.bincount(rlab, minlength=nreg), 1)

    # A row does not cross a rule: ink of one row on both sides of a
    # horizontal rule (a speck under a header label) is split into pieces.
    cell = _cells(ruling, text.shape, params.cell_reach * spacing)[ys, xs].astype(np.int64)
    ncell = int(cell.max()) + 1
    keys = np.where(row_of_pixel > 0, row_of_pixel * ncell + cell, 0)
    uniq, inv = np.unique(np.concatenate([[0], keys]), return_inverse=True)  # 0 (no row) stays 0
    row_of_pixel = inv[1:]
    ridge_y = ridge_y[uniq // ncell]
    nreg = len(uniq)
    order = np.argsort(row_of_pixel, kind="stable")
    bounds = np.searchsorted(row_of_pixel[order], np.arange(nreg + 1))
    rows: list[_RowInk] = []
    gap = params.split_gap * spacing
    for r in range(1, nreg):
        idx = order[bounds[r] : bounds[r + 1]]
        if len(idx) == 0:
            continue
        walls = _walls_at(ruling, float(ridge_y[r]), spacing)
        for part in _split_gaps(xs[idx], gap, walls, params.wall_gap * spacing):
            sel = idx[part]
            # A row whose ink has a blank band across it holds two rows that
            # got one ridge (a short word stacked over another, a faint line
            # over a dense one): each band is a line of its own.
            pieces = _split_stacked(ys[sel], params.stack_gap * spacing)
            for piece in pieces:
                sub = sel[piece]
                ry = float(ridge_y[r]) if len(pieces) == 1 else float(np.median(ys[sub]))
                rows.append(_RowInk(ys[sub], xs[sub], ry))
    return rows


def _stacked_over(piece: _RowInk, host: _RowInk, spacing: float, params: SegmentationParams) -> bool:
    """Return True when ``piece`` is a short label printed over the middle of ``host`` (a header's "de").

    In a header cell a small word ("de", "du") is often printed centred over a
    longer one ("l'Enregistrement"): it is a line of its own, not a
    superscript. Under its own columns the longer word's ink starts after a
    blank band taller than ``label_gap``; it is at least ``label_width`` wide
    (an accent or a dot is not), and the longer word runs that far past both
    its ends (a superscript sits at a word's end, over no ink of its own line).
    """
    reach = params.label_width * spacing
    if piece.x1 - piece.x0 < reach or piece.x0 - host.x0 < reach or host.x1 - piece.x1 < reach:
        return False
    under = host.ys[(host.xs >= piece.x0) & (host.xs <= piece.x1)]
    return bool(len(under)) and int(under.min()) > int(piece.ys.max()) + params.label_gap * spacing


def _cells(ruling: Ruling, shape: tuple[int, int], extend: float) -> np.ndarray:
    """Return a label image (int32, working frame) of the areas the rules enclose: the table's cells.

    Each rule is drawn ``extend`` pixels longer at both ends, so rules that do
    not quite meet still close their cell. A pixel on a drawn rule takes the
    label of the cell below it (or to its right).
    """
    canvas = np.ones(shape, np.uint8)
    for r in ruling.horizontal + ruling.vertical:
        ux, uy = (r.x1 - r.x0) / max(r.length, 1e-6), (r.y1 - r.y0) / max(r.length, 1e-6)
        p0 = (int(round(r.x0 - extend * ux)), int(round(r.y0 - extend * uy)))
        p1 = (int(round(r.x1 + extend * ux)), int(round(r.y1 + extend * uy)))
        cv2.line(canvas, p0, p1, 0, 1)
    labels = cv2.connectedComponents(canvas, connectivity=4)[1]
    on_rule = labels == 0
    labels[:-1][on_rule[:-1]] = labels[1:][on_rule[:-1]]
    on_rule = labels == 0
    labels[:, :-1][on_rule[:, :-1]] = labels[:, 1:][on_rule[:, :-1]]
    return labels


def _split_stacked(ys: np.ndarray, gap: float) -> list[np.ndarray]:
    """Return index arrays of ``ys`` grouped into bands split by more than ``gap`` blank rows."""
    order = np.argsort(ys, kind="stable")
    breaks = np.nonzero(np.diff(ys[order]) > gap)[0]
    return np.split(order, breaks + 1)


def _walls_at(ruling: Ruling, y: float, spacing: float) -> list[float]:
    """Return the x of every vertical rule that runs at height ``y`` (within half a line spacing)."""
    return [r.x_at(y) for r in ruling.vertical if r.y0 - 0.5 * spacing <= y <= r.y1 + 0.5 * spacing]


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


def _crosses_rule(ruling: Ruling, xa: float, xb: float, y: float, tol: float) -> bool:
    """Return True when a vertical rule runs between x ``xa`` and ``xb`` at height ``y``."""
    lo, hi = min(xa, xb), max(xa, xb)
    for r in ruling.vertical:
        if r.y0 - tol <= y <= r.y1 + tol and lo < r.x_at(y) < hi:
            return True
    return False


def _merge_rows(rows: list[_RowInk], ruling: Ruling, spacing: float, params: SegmentationParams) -> list[_RowInk]:
    """Return the rows with fragments of one text line joined: same baseline, small gap, no rule between."""
    n = len(rows)
    if n < 2:
        return rows
    bin_w = max(2.0, params.bin_width * spacing)
    fits = np.array([_baseline(r.ys, r.xs, bin_w) for r in rows])  # (n, 2, 2)
    x0 = np.array([r.x0 for r in rows], np.float64)
    x1 = np.array([r.x1 for r in rows], np.float64)
    slope = (fits[:, 1, 1] - fits[:, 0, 1]) / np.maximum(fits[:, 1, 0] - fits[:, 0, 0], 1e-6)
    icpt = fits[:, 0, 1] - slope * fits[:, 0, 0]
    gap = np.maximum(x0[None, :] - x1[:, None], x0[:, None] - x1[None, :])
    # Compare the two baselines where the rows meet (or in the middle of their overlap).
    xm = (np.maximum(x0[:, None], x0[None, :]) + np.minimum(x1[:, None], x1[None, :])) / 2
    dy = np.abs((icpt[:, None] + slope[:, None] * xm) - (icpt[None, :] + slope[None, :] * xm))
    cand = (gap <= params.split_gap * spacing) & (dy <= params.merge_dy * spacing)
    cand &= np.triu(np.ones((n, n), bool), 1)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(cand), strict=True):
        if gap[i, j] > params.wall_gap * spacing:  # closer: the writing runs up to the rule
            left, right = (i, j) if x1[i] <= x0[j] else (j, i)
            y = icpt[i] + slope[i] * xm[i, j]
            if _crosses_rule(ruling, x1[left], x0[right], y, 0.5 * spacing):
                continue
        ri, rj = find(int(i)), find(int(j))
        if ri != rj:
            parent[rj] = ri
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    out = []
    for members in groups.values():
        if len(members) == 1:
            out.append(rows[members[0]])
            continue
        ys = np.concatenate([rows[m].ys for m in members])
        xs = np.concatenate([rows[m].xs for m in members])
        weight = np.array([len(rows[m].xs) for m in members], np.float64)
        ridge_y = float(np.dot(weight, [rows[m].ridge_y for m in members]) / weight.sum())
        out.append(_RowInk(ys, xs, ridge_y))
    return out


def _attach_small(rows: list[_RowInk], ruling: Ruling, spacing: float, params: SegmentationParams) -> list[_RowInk]:
    """Return the rows with small pieces (superscripts, dots, a detached letter) joined to the line they belong to.

    A piece joins the nearest long line of the same cell whose core it sits
    beside or just above; a piece with no such line (a number alone in its
    column) stays a line of its own.
    """
    if len(rows) < 2:
        return rows
    bin_w = max(2.0, params.bin_width * spacing)
    width = np.array([r.x1 - r.x0 + 1 for r in rows], np.float64)
    small = width < params.small_width * spacing
    big = np.nonzero(~small)[0]
    if not len(big) or not small.any():
        return rows
    fits = np.array([_baseline(rows[i].ys, rows[i].xs, bin_w) for i in big])  # (nbig, 2, 2)
    bx0 = np.array([rows[j].x0 for j in big], np.float64)
    bx1 = np.array([rows[j].x1 for j in big], np.float64)
    slope = (fits[:, 1, 1] - fits[:, 0, 1]) / np.maximum(fits[:, 1, 0] - fits[:, 0, 0], 1e-6)
    icpt = fits[:, 0, 1] - slope * fits[:, 0, 0]
    host: dict[int, int] = {}
    for i in np.nonzero(small)[0]:
        r = rows[i]
        cx, cy = (r.x0 + r.x1) / 2, float(np.median(r.ys))
        gap = np.maximum(np.maximum(bx0 - r.x1, r.x0 - bx1), 0)
        xq = np.clip(cx, bx0, bx1)
        rel = cy - (icpt + slope * xq)  # negative: above the host's baseline
        ok = (gap <= params.attach_gap * spacing) & (rel >= -params.attach_above * spacing)
        ok &= rel <= params.attach_below * spacing
        # Nearest host first: distance to its core's middle plus the gap.
        for k in sorted(np.nonzero(ok)[0], key=lambda k: abs(rel[k] + 0.3 * spacing) + gap[k]):
            j = int(big[k])
            if gap[k] > 0:
                b = rows[j]
                xa, xb = (r.x1, b.x0) if r.x1 < b.x0 else (b.x1, r.x0)
                if _crosses_rule(ruling, xa, xb, cy, 0.5 * spacing):
                    continue
            if _stacked_over(r, rows[j], spacing, params):
                r.label = True
                continue
            host[int(i)] = j
            break
    if not host:
        return rows
    out = []
    extra: dict[int, list[int]] = {}
    for i, j in host.items():
        extra.setdefault(j, []).append(i)
    for i, r in enumerate(rows):
        if i in host:
            continue
        if i in extra:
            parts = [r] + [rows[k] for k in extra[i]]
            r = _RowInk(np.concatenate([p.ys for p in parts]), np.concatenate([p.xs for p in parts]), r.ridge_y)
        out.append(r)
    return out


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


def _column_walls(ruling: Ruling, grid: Grid, ink: np.ndarray, spacing: float) -> Ruling:
    """Return ``ruling`` without the vertical rules that only subdivide a body column: the walls rows stop at."""
    subs = subcolumn_rules(ruling, grid, ink, spacing)
    if not subs:
        return ruling
    band = rule_band(Ruling(ruling.horizontal_mask, ruling.vertical_mask, [], subs), ruling.vertical_mask.shape, 2.0)
    keep = [r for r in ruling.vertical if all(r is not s for s in subs)]
    return Ruling(ruling.horizontal_mask, ruling.vertical_mask & ~band, ruling.horizontal, keep)


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


def _learned_rows(
    levelled: np.ndarray,
    text: np.ndarray,
    work_scale: float,
    walls: Ruling,
    spacing: float,
    params: SegmentationParams,
) -> list[_RowInk]:
    """Return the text rows the learned line finder sees: the ink of each line's basin (working frame).

    A basin's ink is split at the column rules it does not run across and at
    blank runs wider than ``learned_split_gap`` line spacings.
    """
    maps = line_network(params.line_model).predict(levelled, work_scale)
    basins = line_basins(maps, params.band_threshold, params.region_threshold, params.min_band_area, params.band_floor)
    boxes = find_objects(basins)
    mh, mw = basins.shape
    ys, xs = np.nonzero(text)
    # Each ink pixel's map pixel, and the basin that holds it.
    my = np.minimum((ys * maps.scale).astype(np.int64), mh - 1)
    mx = np.minimum((xs * maps.scale).astype(np.int64), mw - 1)
    labels = basins[my, mx]
    keep = np.flatnonzero(labels > 0)
    keep = keep[np.argsort(labels[keep], kind="stable")]
    ys, xs, my, mx, labels = ys[keep], xs[keep], my[keep], mx[keep], labels[keep]
    # The row's y for reading order and its table row: the middle of its band.
    ridge = _band_middles(maps.band, basins, params.band_threshold)
    if params.band_floor is not None:  # a faint line's seed: its band above the floor
        faint = _band_middles(maps.band, basins, params.band_floor)
        ridge = np.where(np.isnan(ridge), faint, ridge)
    rows = []
    bounds = np.flatnonzero(np.diff(labels)) + 1
    for start, end in zip(np.r_[0, bounds], np.r_[bounds, len(labels)], strict=True):
        if end - start < params.min_line_pixels:
            continue
        k = int(labels[start])
        ridge_y = float(ridge[k] / maps.scale)
        row_ys, row_xs, row_my, row_mx = ys[start:end], xs[start:end], my[start:end], mx[start:end]
        wall_xs = _walls_at(walls, ridge_y, spacing)
        parts = [
            p
            for p in _split_gaps(row_xs, params.learned_split_gap * spacing, wall_xs, params.wall_gap * spacing)
            if len(p) >= params.min_line_pixels
        ]
        for part in parts:
            row = _RowInk(row_ys[part], row_xs[part], ridge_y)
            at = (row_my[part], row_mx[part])
            row.band_q90 = float(np.percentile(maps.band[at], 90))
            row.region_mean = float(maps.region[at].mean())
            if params.learned_outline:
                row.outline = _basin_outline(basins, maps, k, boxes[k - 1], row, params, spacing, len(parts) > 1)
            rows.append(row)
    return rows


def _band_middles(band: np.ndarray, basins: np.ndarray, threshold: float) -> np.ndarray:
    """Return the mean map row of each basin's band above ``threshold`` (index = label; NaN where none)."""
    inside = (band > threshold) & (basins > 0)
    by, _ = np.nonzero(inside)
    labels = basins[inside]
    size = basins.max() + 1
    count = np.bincount(labels, minlength=size).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(labels, weights=by, minlength=size) / count


def _basin_outline(
    basins: np.ndarray,
    maps: LineMaps,
    label: int,
    box: tuple[slice, slice],
    row: _RowInk,
    params: SegmentationParams,
    spacing: float,
    cut: bool,
) -> np.ndarray | None:
    """Return the polygon (working frame) of a line's basin where the network sees line region, or None.

    When the basin's ink was split into several lines, each keeps the basin's
    columns over its own ink, padded as the ink outline is. ``box`` is the
    basin's bounding box in the map (``scipy.ndimage.find_objects``).
    """
    f = maps.scale
    ys, xs = box
    mask = (basins[ys, xs] == label) & (maps.region[ys, xs] > params.region_threshold)
    clip = params.learned_clip
    k = 1.0 if clip is None else clip  # margins, in units of the ink outline's pads
    if cut or clip is not None:
        x0 = max(0, int(np.floor((row.x0 - k * params.pad_left * spacing) * f)) - xs.start)
        x1 = max(0, int(np.ceil((row.x1 + 1 + k * params.pad_right * spacing) * f)) - xs.start)
        mask[:, :x0] = False
        mask[:, x1:] = False
    if clip is not None:
        y0 = max(0, int(np.floor((row.ys.min() - k * params.pad_top * spacing) * f)) - ys.start)
        y1 = max(0, int(np.ceil((row.ys.max() + 1 + k * params.pad_bottom * spacing) * f)) - ys.start)
        mask[:y0] = False
        mask[y1:] = False
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    best = max(contours, key=cv2.contourArea)
    if cv2.contourArea(best) < 4:
        return None
    # The staircase of map pixels, simplified to within half a map pixel.
    best = cv2.approxPolyDP(best, 0.5, True)
    # Contour points are pixel centres of the map: its pixel edges are half a pixel out.
    pts = best.reshape(-1, 2).astype(np.float64) + (xs.start, ys.start)
    centre = pts.mean(axis=0)
    pts += 0.5 + 0.5 * np.sign(pts - centre)
    return pts / f


def find_rows(page: PageImage, params: SegmentationParams | None = None) -> PageRows:
    """Return the working-frame analysis of a page: levelled ink, ruling, grid, line spacing and text rows."""
    params = params or SegmentationParams()
    gray = page.pixels
    if gray.ndim != 2:
        raise ValueError("segment_page expects a 2-D grayscale page")
    h, w = gray.shape
    scale = _working_scale((h, w), params.work_pixels)
    tf = page_transform((h, w), scale)
    work = tf.apply(gray)
    ink = binarize_sauvola(work) & paper_mask(work, margin=int(0.01 * max(work.shape)))
    angle = estimate_skew(ink)
    if abs(angle) >= 0.05:
        ink, rot = rotate_mask(ink, angle)
        tf = tf.then(rot)
        levelled = rot.apply(work, border=255)
    else:
        angle = 0.0
        levelled = work
    # A first spacing from all the ink sizes the rule kernels; the second, from
    # the text alone, sizes everything else.
    spacing0 = estimate_line_spacing(ink)
    ruling = detect_rules(ink, spacing0)
    text = _drop_slivers(remove_rules(ink, ruling), ruling, spacing0)
    spacing = estimate_line_spacing(text)
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
    return PageRows(tf, float(angle), levelled, ink, text, ruling, grid, spacing, rows)


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
    )
