"""A text row's ink (the line candidate every row finder returns) and its geometry: gaps, walls, baseline, outline.

All coordinates are in the levelled working frame of ``segmentation.lines``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from segmentation.params import SegmentationParams
from segmentation.rules import Ruling


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


def _walls_at(ruling: Ruling, y: float, spacing: float) -> list[float]:
    """Return the x of every vertical rule that runs at height ``y`` (within half a line spacing)."""
    return [r.x_at(y) for r in ruling.vertical if r.y0 - 0.5 * spacing <= y <= r.y1 + 0.5 * spacing]


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
