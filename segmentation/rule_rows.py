"""The rule-based row finder: text rows from a smeared density map, its ridges and a watershed.

1. smear the ink into a density map with an anisotropic Gaussian (wide along
   the line, narrow across it) and take its ridges, one per text row, cut at
   the vertical rules (after Bukhari, Shafait & Breuel, "Script-independent
   handwritten textlines segmentation using active contours", ICDAR 2009);
2. grow a watershed from the ridges over the density map, so every ink
   component falls to the row it mostly sits in (components taller than a
   row are split pixel by pixel);
3. split each row at the rules around its table cell, at blank bands
   across it (two rows that got one ridge), at wide gaps and at vertical
   rules (where the writing does not run up to the rule from both sides),
   join the fragments of one line (same baseline, small gap, no rule
   between) and attach small pieces (superscripts, dots) to the line they
   belong to.

Lengths are in units of the page's line spacing (``SegmentationParams``).
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.segmentation import watershed

from segmentation.params import SegmentationParams
from segmentation.rows import _baseline, _RowInk, _split_gaps, _walls_at
from segmentation.rules import Ruling


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
