import pytest

from segmentation.evaluate import (
    MatchCounts,
    baseline_counts,
    count_matches,
    interline_distance,
    iou_matrix,
    line_precision_recall,
    match_baselines,
    match_lines,
    paired_baselines,
    polygon_iou,
)


def box(x0, y0, x1, y1):
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def test_iou_of_boxes():
    assert polygon_iou(box(0, 0, 99, 9), box(0, 0, 99, 9)) == 1.0
    assert polygon_iou(box(0, 0, 99, 9), box(50, 0, 149, 9)) == pytest.approx(1 / 3, abs=0.01)
    assert polygon_iou(box(0, 0, 10, 10), box(20, 20, 30, 30)) == 0.0
    assert polygon_iou([(0, 0), (5, 5)], box(0, 0, 10, 10)) == 0.0  # degenerate


def test_one_to_one_matching():
    gt = [box(0, 0, 99, 19), box(0, 30, 99, 49), box(200, 0, 299, 19)]
    pred = [box(0, 31, 99, 50), box(2, 0, 100, 19), box(0, 0, 99, 49), box(500, 500, 600, 520)]
    pairs = match_lines(pred, gt)
    assert pairs[:3] == [(1, 0), (0, 1), (None, 2)]
    assert sorted(p for p, g in pairs[3:]) == [2, 3] and all(g is None for _, g in pairs[3:])
    counts = count_matches(pairs)
    assert counts == MatchCounts(predicted=4, ground_truth=3, matched=2)
    assert counts.precision == 0.5 and counts.recall == pytest.approx(2 / 3)
    assert line_precision_recall(pred, gt) == (0.5, pytest.approx(2 / 3))


def test_a_merged_prediction_matches_at_most_one_line():
    # One predicted line spanning three ground-truth cells side by side: IoU 1/3 with each.
    gt = [box(0, 0, 99, 19), box(100, 0, 199, 19), box(200, 0, 299, 19)]
    pairs = match_lines([box(0, 0, 299, 19)], gt)
    assert count_matches(pairs).matched == 0
    assert iou_matrix([box(0, 0, 299, 19)], gt).max() == pytest.approx(1 / 3, abs=0.01)
    # Spanning two, it holds exactly half of each: IoU 0.5 counts (≥), for one of them only.
    pairs = match_lines([box(0, 0, 199, 19)], gt[:2])
    assert count_matches(pairs).matched == 1


def test_empty_inputs_and_sums():
    assert match_lines([], []) == []
    assert match_lines([box(0, 0, 9, 9)], []) == [(0, None)]
    assert match_lines([], [box(0, 0, 9, 9)]) == [(None, 0)]
    total = MatchCounts(2, 3, 1) + MatchCounts(1, 1, 1)
    assert (total.predicted, total.ground_truth, total.matched) == (3, 4, 2)
    assert MatchCounts().precision == 1.0 and MatchCounts().recall == 1.0


def _rows(ys, x0=100, x1=500):
    return [[(x0, y), (x1, y)] for y in ys]


def test_baselines_found_where_the_ground_truth_has_them_score_one():
    gt = _rows([100, 150, 200])  # 50 px apart: tolerance 12.5 px
    assert interline_distance(gt) == 50
    c = baseline_counts(gt, gt)
    assert (c.precision, c.recall, c.f1) == (1.0, 1.0, 1.0)
    near = baseline_counts(_rows([110, 160, 210]), gt)  # 10 px low: within the tolerance
    assert near.f1 == pytest.approx(1.0)
    far = baseline_counts(_rows([160, 210, 260]), gt)  # 60 px low: past 3 tolerances of its own line, ...
    assert far.recall == pytest.approx(2 / 3)  # ... but 10 px under the next: only the first line is missed


def test_a_split_line_is_found_and_a_merged_pair_loses_precision():
    gt = [[(100, 100), (300, 100)], [(400, 100), (600, 100)], [(100, 150), (600, 150)]]
    split = [[(100, 100), (300, 100)], [(400, 100), (600, 100)], [(100, 150), (340, 150)], [(360, 150), (600, 150)]]
    assert baseline_counts(split, gt).f1 > 0.95
    merged = [[(100, 100), (600, 100)], [(100, 150), (600, 150)]]
    c = baseline_counts(merged, gt)
    assert c.recall > 0.95
    assert 0.6 < c.precision < 0.8  # the merged line counts only against one of its two: 200 of 500 px lost


def test_missed_and_extra_baselines_and_page_sums():
    gt = _rows([100, 150])
    missed = baseline_counts(_rows([100]), gt)
    assert missed.precision == 1.0 and missed.recall == pytest.approx(0.5)
    extra = baseline_counts(_rows([100, 150, 400]), gt)
    assert extra.recall == 1.0 and extra.precision == pytest.approx(2 / 3, abs=0.01)
    both = missed + extra
    assert both.ground_truth == missed.ground_truth + extra.ground_truth
    assert baseline_counts([], []).f1 == 1.0 and baseline_counts([], gt).f1 == 0.0


def test_lines_match_by_baseline_whatever_the_height_of_their_polygons():
    gt_polys, gt_bases = [box(100, 40, 500, 160), box(100, 160, 500, 280)], _rows([130, 250])  # drawn tall and loose
    pred_polys, pred_bases = [box(100, 100, 500, 140), box(100, 220, 500, 260)], _rows([132, 251])  # drawn tight
    assert match_lines(pred_polys, gt_polys) == [(None, 0), (None, 1), (0, None), (1, None)]  # IoU 0.33
    assert match_baselines(pred_bases, gt_bases) == [(0, 0), (1, 1)]
    split = [[(100, 130), (340, 130)], [(360, 130), (500, 130)]]  # the first line in two: its longer half matches
    assert match_baselines(split, gt_bases[:1]) == [(0, 0), (1, None)]
    beside = _rows([130], x0=600, x1=900)  # on the first line's height, in the next column: no line of the truth
    assert match_baselines(beside, gt_bases) == [(None, 0), (None, 1), (0, None)]


def test_paired_baselines_count_a_split_line_against_precision_and_a_short_one_against_both():
    gt = _rows([100, 150])  # two lines 400 px long, tolerance 12.5 px
    assert paired_baselines(gt, gt).f1 == pytest.approx(1.0)
    split = [[(100, 100), (300, 100)], [(300, 100), (500, 100)], [(100, 150), (500, 150)]]
    c = paired_baselines(split, gt)
    assert c.recall == pytest.approx((0.75 + 1.0) / 2, abs=0.03)  # half the line covers half of it
    assert c.precision == pytest.approx((0.75 + 1.0) / 3, abs=0.03)  # and the other half is a line too many
    assert baseline_counts(split, gt).f1 > 0.99  # the coverage measure forgives a split
    assert (paired_baselines(split, gt) + paired_baselines(gt, gt)).predicted == 5
