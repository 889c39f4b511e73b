"""The learned line finder's rows: each line basin of the network's maps (``segmentation.learned``) as ink rows.

A basin's ink is split at column rules and wide blank runs; each row keeps the
network's certainty over its ink (band and region probabilities) and, when
asked, its basin's region as its polygon.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import find_objects

from segmentation.learned import LineMaps, line_basins, line_network
from segmentation.params import SPACING_FLOOR, SegmentationParams
from segmentation.rows import _RowInk, _split_gaps, _walls_at
from segmentation.rules import Ruling

#: The network's input is rescaled by at most this factor either way (a spacing estimate on a scrap of a page
#: can be far off).
MAX_NETWORK_ZOOM = 3.0


def network_zoom(spacing: float, trained: tuple[float, float] | None) -> float:
    """Return the factor on the network's scale that brings a line ``spacing`` (network pixels) into ``trained``."""
    if trained is None or spacing <= 0:
        return 1.0
    lo, hi = trained
    return float(np.clip(np.clip(spacing, lo, hi) / spacing, 1 / MAX_NETWORK_ZOOM, MAX_NETWORK_ZOOM))


def page_zoom(spacing: float, work_scale: float, net_scale: float, trained: tuple[float, float] | None) -> float:
    """Return the zoom on the network's input of a page whose rows are ``spacing`` working pixels apart.

    A spacing at the floor means no period of rows was found: the page is shown at the network's own scale.
    The segmenter and ``registre train-lines`` both size pages with it, so the network trains on pages at
    the scale it will see them.
    """
    if spacing <= SPACING_FLOOR:
        return 1.0
    return network_zoom(spacing / work_scale * net_scale, trained)


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
    net = line_network(params.line_model)
    maps = net.predict(levelled, work_scale, page_zoom(spacing, work_scale, net.scale, params.learned_spacing))
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
