"""Line-segmentation evaluation: one-to-one matching of predicted to ground-truth polygons by IoU."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from segmentation.types import Point


@dataclass(frozen=True)
class _Raster:
    """A polygon filled into a mask over its own bounding box (x0, y0 in page pixels)."""

    x0: int
    y0: int
    mask: np.ndarray  # bool, h x w
    area: int


def _rasterize(polygon: Sequence[Point]) -> _Raster | None:
    pts = np.asarray(polygon, dtype=np.int64).reshape(-1, 2)
    if len(pts) < 3:
        return None
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    if x1 <= x0 or y1 <= y0:
        return None
    mask = np.zeros((int(y1 - y0 + 1), int(x1 - x0 + 1)), np.uint8)
    cv2.fillPoly(mask, [(pts - [x0, y0]).astype(np.int32)], 1)
    area = int(mask.sum())
    if area == 0:
        return None
    return _Raster(int(x0), int(y0), mask.astype(bool), area)


def _iou(a: _Raster, b: _Raster) -> float:
    ax1, ay1 = a.x0 + a.mask.shape[1], a.y0 + a.mask.shape[0]
    bx1, by1 = b.x0 + b.mask.shape[1], b.y0 + b.mask.shape[0]
    x0, y0, x1, y1 = max(a.x0, b.x0), max(a.y0, b.y0), min(ax1, bx1), min(ay1, by1)
    if x1 <= x0 or y1 <= y0:
        return 0.0
    inter = int(
        np.count_nonzero(
            a.mask[y0 - a.y0 : y1 - a.y0, x0 - a.x0 : x1 - a.x0] & b.mask[y0 - b.y0 : y1 - b.y0, x0 - b.x0 : x1 - b.x0]
        )
    )
    return inter / (a.area + b.area - inter)


def polygon_iou(a: Sequence[Point], b: Sequence[Point]) -> float:
    """Return the intersection over union (0–1) of two polygons, rasterized at page-pixel resolution."""
    ra, rb = _rasterize(a), _rasterize(b)
    if ra is None or rb is None:
        return 0.0
    return _iou(ra, rb)


def iou_matrix(pred_polygons: Sequence[Sequence[Point]], gt_polygons: Sequence[Sequence[Point]]) -> np.ndarray:
    """Return the (n_pred, n_gt) float matrix of polygon IoUs; degenerate polygons overlap nothing."""
    pred = [_rasterize(p) for p in pred_polygons]
    gt = [_rasterize(g) for g in gt_polygons]
    out = np.zeros((len(pred), len(gt)), np.float64)
    if not pred or not gt:
        return out

    def boxes(rasters: list[_Raster | None]) -> np.ndarray:
        b = np.full((len(rasters), 4), -1, np.int64)
        for i, r in enumerate(rasters):
            if r is not None:
                b[i] = r.x0, r.y0, r.x0 + r.mask.shape[1], r.y0 + r.mask.shape[0]
        return b

    pb, gb = boxes(pred), boxes(gt)
    # Only pairs whose bounding boxes intersect can overlap: a cheap prefilter.
    hit = (
        (pb[:, None, 0] < gb[None, :, 2])
        & (gb[None, :, 0] < pb[:, None, 2])
        & (pb[:, None, 1] < gb[None, :, 3])
        & (gb[None, :, 1] < pb[:, None, 3])
    )
    for i, j in zip(*np.nonzero(hit), strict=True):
        pr, gr = pred[i], gt[j]
        if pr is not None and gr is not None:
            out[i, j] = _iou(pr, gr)
    return out


def match_lines(
    pred_polygons: Sequence[Sequence[Point]],
    gt_polygons: Sequence[Sequence[Point]],
    iou: float = 0.5,
) -> list[tuple[int | None, int | None]]:
    """Return a one-to-one matching of predicted to ground-truth lines with polygon IoU ≥ ``iou``.

    The pairs maximise the summed IoU (Hungarian assignment). Every ground-truth
    index appears once, in order, as ``(pred or None, gt)``; then every unmatched
    prediction as ``(pred, None)``.
    """
    m = iou_matrix(pred_polygons, gt_polygons)
    matched_gt: dict[int, int] = {}
    if m.size:
        score = np.where(m >= iou, m, 0.0)
        rows, cols = linear_sum_assignment(score, maximize=True)
        for r, c in zip(rows, cols, strict=True):
            if score[r, c] > 0:
                matched_gt[int(c)] = int(r)
    used = set(matched_gt.values())
    pairs: list[tuple[int | None, int | None]] = [(matched_gt.get(g), g) for g in range(len(gt_polygons))]
    pairs += [(p, None) for p in range(len(pred_polygons)) if p not in used]
    return pairs


@dataclass(frozen=True)
class MatchCounts:
    """Line counts of one or more matched pages: predicted, ground truth and matched pairs."""

    predicted: int = 0
    ground_truth: int = 0
    matched: int = 0

    @property
    def precision(self) -> float:
        """Return matched / predicted lines (1.0 when nothing was predicted and nothing expected)."""
        if self.predicted == 0:
            return 1.0 if self.ground_truth == 0 else 0.0
        return self.matched / self.predicted

    @property
    def recall(self) -> float:
        """Return matched / ground-truth lines (1.0 when there is no ground truth)."""
        return self.matched / self.ground_truth if self.ground_truth else 1.0

    def __add__(self, other: MatchCounts) -> MatchCounts:
        return MatchCounts(
            self.predicted + other.predicted, self.ground_truth + other.ground_truth, self.matched + other.matched
        )


def count_matches(pairs: Sequence[tuple[int | None, int | None]]) -> MatchCounts:
    """Return the predicted, ground-truth and matched line counts of a ``match_lines`` result."""
    return MatchCounts(
        predicted=sum(1 for p, _ in pairs if p is not None),
        ground_truth=sum(1 for _, g in pairs if g is not None),
        matched=sum(1 for p, g in pairs if p is not None and g is not None),
    )


def line_precision_recall(
    pred_polygons: Sequence[Sequence[Point]], gt_polygons: Sequence[Sequence[Point]], iou: float = 0.5
) -> tuple[float, float]:
    """Return (precision, recall) of predicted lines against ground truth at IoU ≥ ``iou``."""
    counts = count_matches(match_lines(pred_polygons, gt_polygons, iou))
    return counts.precision, counts.recall
