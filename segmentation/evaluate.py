"""Line-segmentation evaluation: polygons matched one-to-one by IoU, and baselines scored as in ICDAR 2017 cBAD."""

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
    return _assign(iou_matrix(pred_polygons, gt_polygons), iou)


def _assign(m: np.ndarray, threshold: float) -> list[tuple[int | None, int | None]]:
    """Return the one-to-one pairs of an (n_pred, n_gt) score matrix maximising the summed score ≥ ``threshold``."""
    matched_gt: dict[int, int] = {}
    if m.size:
        score = np.where(m >= threshold, m, 0.0)
        rows, cols = linear_sum_assignment(score, maximize=True)
        for r, c in zip(rows, cols, strict=True):
            if score[r, c] > 0:
                matched_gt[int(c)] = int(r)
    used = set(matched_gt.values())
    pairs: list[tuple[int | None, int | None]] = [(matched_gt.get(g), g) for g in range(m.shape[1])]
    pairs += [(p, None) for p in range(m.shape[0]) if p not in used]
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


# Baselines: the ICDAR 2017 cBAD measure (Grüning et al., "READ-BAD: A new dataset and evaluation scheme for
# baseline detection in archival documents", DAS 2018), which judges a line by where its text sits, not by how
# loosely a transcriber drew its polygon.

#: The tolerance of a baseline point is this share of the page's interline distance (cBAD's relative tolerance).
BASELINE_TOLERANCE = 0.25


def _sample_polyline(points: Sequence[Point], step: float) -> np.ndarray:
    """Return (N, 2) points spaced at most ``step`` pixels apart along a polyline (its vertices included)."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if len(pts) < 2:
        return pts
    out = [pts[:1]]
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        n = max(1, int(np.ceil(np.hypot(*(b - a)) / step)))
        t = np.arange(1, n + 1)[:, None] / n
        out.append(a + t * (b - a))
    return np.concatenate(out)


def _distance_to_polyline(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """Return the distance (pixels) of each of ``points`` (N, 2) to the nearest segment of ``polyline`` (M, 2)."""
    if len(polyline) == 1:
        return np.hypot(*(points - polyline[0]).T)
    a, b = polyline[:-1], polyline[1:]
    ab = b - a
    length2 = np.maximum((ab * ab).sum(axis=1), 1e-12)
    t = np.clip(((points[:, None, :] - a[None]) * ab[None]).sum(axis=2) / length2, 0.0, 1.0)
    nearest = a[None] + t[..., None] * ab[None]
    return np.sqrt(((points[:, None, :] - nearest) ** 2).sum(axis=2)).min(axis=1)


def _coverage(distance: np.ndarray, tolerance: float) -> np.ndarray:
    """Return cBAD's score of points at ``distance`` from a baseline: 1 within the tolerance, 0 past 3 times it."""
    return np.clip((3 * tolerance - distance) / (2 * tolerance), 0.0, 1.0)


def interline_distance(baselines: Sequence[Sequence[Point]]) -> float:
    """Return the median vertical distance (pixels) from each baseline to the nearest one below it that it overlaps.

    0 when no two baselines share a column (a page of one line).
    """
    spans = []
    for bl in baselines:
        pts = np.asarray(bl, np.float64).reshape(-1, 2)
        if len(pts):
            spans.append((pts[:, 0].min(), pts[:, 0].max(), float(np.median(pts[:, 1]))))
    gaps = []
    for x0, x1, y in spans:
        below = [yb - y for xb0, xb1, yb in spans if yb > y and xb0 < x1 and x0 < xb1]
        if below:
            gaps.append(min(below))
    return float(np.median(gaps)) if gaps else 0.0


@dataclass(frozen=True)
class BaselineCounts:
    """Baseline points of one or more pages: predicted and ground-truth points, and how well each is covered.

    Sums of cBAD point scores, so pages add up: precision is the covered share of
    the predicted baselines' length, recall that of the ground truth's.
    """

    predicted: float = 0.0
    predicted_covered: float = 0.0
    ground_truth: float = 0.0
    ground_truth_covered: float = 0.0

    @property
    def precision(self) -> float:
        """Return the share (0–1) of predicted baseline length that lies on a ground-truth baseline."""
        if self.predicted == 0:
            return 1.0 if self.ground_truth == 0 else 0.0
        return self.predicted_covered / self.predicted

    @property
    def recall(self) -> float:
        """Return the share (0–1) of ground-truth baseline length that a predicted baseline covers."""
        return self.ground_truth_covered / self.ground_truth if self.ground_truth else 1.0

    @property
    def f1(self) -> float:
        """Return the harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: BaselineCounts) -> BaselineCounts:
        return BaselineCounts(
            self.predicted + other.predicted,
            self.predicted_covered + other.predicted_covered,
            self.ground_truth + other.ground_truth,
            self.ground_truth_covered + other.ground_truth_covered,
        )


def _tolerance(gt_baselines: Sequence[Sequence[Point]]) -> float:
    """Return the page's baseline tolerance in pixels: :data:`BASELINE_TOLERANCE` of its interline distance."""
    tolerance = BASELINE_TOLERANCE * interline_distance(gt_baselines)
    if tolerance <= 0:  # one line a page: no interline distance; a twentieth of the line's length
        spans = [np.ptp(np.asarray(b, np.float64).reshape(-1, 2)[:, 0]) for b in gt_baselines if len(b)]
        tolerance = max(2.0, 0.05 * float(np.median(spans))) if spans else 2.0
    return tolerance


def _pair_coverage(
    pred_baselines: Sequence[Sequence[Point]], gt_baselines: Sequence[Sequence[Point]], tolerance: float
) -> tuple[list[np.ndarray], list[np.ndarray], dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]]:
    """Return the sample points of each predicted and ground-truth baseline (every half tolerance), and for each
    pair close enough to touch, the cBAD scores of the predicted line's points against the ground-truth line and
    of the ground-truth line's points against the predicted one."""
    step = max(1.0, tolerance / 2)

    def prepare(baselines: Sequence[Sequence[Point]]) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        lines = [np.asarray(b, np.float64).reshape(-1, 2) for b in baselines]
        samples = [_sample_polyline(b, step) if len(b) else np.zeros((0, 2)) for b in lines]
        boxes = np.array(
            [
                [s[:, 0].min(), s[:, 1].min(), s[:, 0].max(), s[:, 1].max()] if len(s) else [np.inf] * 2 + [-np.inf] * 2
                for s in samples
            ]
        ).reshape(-1, 4)
        return lines, samples, boxes

    pred_lines, pred, pb = prepare(pred_baselines)
    gt_lines, gt, gb = prepare(gt_baselines)
    reach = 3 * tolerance
    near = (
        (pb[:, None, 0] - reach < gb[None, :, 2])
        & (gb[None, :, 0] - reach < pb[:, None, 2])
        & (pb[:, None, 1] - reach < gb[None, :, 3])
        & (gb[None, :, 1] - reach < pb[:, None, 3])
    )
    scores = {}
    for i, j in zip(*np.nonzero(near), strict=True):
        scores[int(i), int(j)] = (
            _coverage(_distance_to_polyline(pred[i], gt_lines[j]), tolerance),
            _coverage(_distance_to_polyline(gt[j], pred_lines[i]), tolerance),
        )
    return pred, gt, scores


def baseline_counts(
    pred_baselines: Sequence[Sequence[Point]],
    gt_baselines: Sequence[Sequence[Point]],
    tolerance: float | None = None,
) -> BaselineCounts:
    """Return the cBAD-style coverage of predicted against ground-truth baselines on one page.

    Both are sampled every half tolerance. A ground-truth point is covered by the
    nearest predicted baseline (a line split in two is still found); a predicted
    baseline's points count only against the one ground-truth baseline it covers
    best, so two lines merged into one lose half their precision. ``tolerance``
    (pixels) defaults to :data:`BASELINE_TOLERANCE` of the ground truth's
    interline distance; a point scores 1 within it, falling to 0 at 3 times it.
    """
    tolerance = tolerance or _tolerance(gt_baselines)
    pred, gt, scores = _pair_coverage(pred_baselines, gt_baselines, tolerance)
    gt_best = [np.zeros(len(s)) for s in gt]
    pred_best = np.zeros(len(pred))
    for (i, j), (pred_score, gt_score) in scores.items():
        pred_best[i] = max(pred_best[i], float(pred_score.sum()))
        np.maximum(gt_best[j], gt_score, out=gt_best[j])
    return BaselineCounts(
        predicted=float(sum(len(s) for s in pred)),
        predicted_covered=float(pred_best.sum()),
        ground_truth=float(sum(len(s) for s in gt)),
        ground_truth_covered=float(sum(s.sum() for s in gt_best)),
    )


def match_baselines(
    pred_baselines: Sequence[Sequence[Point]],
    gt_baselines: Sequence[Sequence[Point]],
    min_score: float = 0.5,
    tolerance: float | None = None,
) -> list[tuple[int | None, int | None]]:
    """Return a one-to-one matching of predicted to ground-truth lines by their baselines, as ``match_lines`` does.

    A pair's score is the mean of the two directed cBAD coverages (the share of
    each baseline lying on the other, as kraken's baseline metric pairs lines);
    the pairs maximise the summed score (Hungarian), and count when it reaches
    ``min_score``. Unlike polygon IoU it does not depend on how tall a
    transcriber drew a line's polygon.
    """
    return _assign(_pair_scores(pred_baselines, gt_baselines, tolerance), min_score)


def _pair_scores(
    pred_baselines: Sequence[Sequence[Point]], gt_baselines: Sequence[Sequence[Point]], tolerance: float | None
) -> np.ndarray:
    """Return the (n_pred, n_gt) matrix of pair scores: the mean of the two directed cBAD coverages."""
    tolerance = tolerance or _tolerance(gt_baselines)
    _, _, scores = _pair_coverage(pred_baselines, gt_baselines, tolerance)
    m = np.zeros((len(pred_baselines), len(gt_baselines)))
    for (i, j), (pred_score, gt_score) in scores.items():
        if len(pred_score) and len(gt_score):
            m[i, j] = (pred_score.mean() + gt_score.mean()) / 2
    return m


@dataclass(frozen=True)
class PairedBaselines:
    """One-to-one baseline scores of one or more pages: line counts and the summed score of the matched pairs."""

    predicted: int = 0
    ground_truth: int = 0
    score: float = 0.0

    @property
    def precision(self) -> float:
        """Return the summed pair score per predicted line (0–1)."""
        return self.score / self.predicted if self.predicted else float(self.ground_truth == 0)

    @property
    def recall(self) -> float:
        """Return the summed pair score per ground-truth line (0–1)."""
        return self.score / self.ground_truth if self.ground_truth else 1.0

    @property
    def f1(self) -> float:
        """Return the harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: PairedBaselines) -> PairedBaselines:
        return PairedBaselines(
            self.predicted + other.predicted, self.ground_truth + other.ground_truth, self.score + other.score
        )


def paired_baselines(
    pred_baselines: Sequence[Sequence[Point]],
    gt_baselines: Sequence[Sequence[Point]],
    tolerance: float | None = None,
) -> PairedBaselines:
    """Return the strict, line-by-line baseline score of a page, as kraken's baseline metric computes it.

    Lines are paired one-to-one maximising the summed pair score (no threshold);
    precision and recall are that sum per predicted and per ground-truth line. A
    split line scores its longer half and counts the other as a line too many; a
    short baseline scores the share it covers.
    """
    m = _pair_scores(pred_baselines, gt_baselines, tolerance)
    total = 0.0
    if m.size:
        rows, cols = linear_sum_assignment(m, maximize=True)
        total = float(m[rows, cols].sum())
    return PairedBaselines(len(pred_baselines), len(gt_baselines), total)
