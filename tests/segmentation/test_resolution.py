"""Resolution independence: a page scanned at another resolution gives the same lines, in its own pixels."""

import cv2
import numpy as np
import pytest

from segmentation.evaluate import count_matches, match_lines
from segmentation.learned import DEFAULT_LINE_MODEL
from segmentation.learned_rows import MAX_NETWORK_ZOOM, network_zoom
from segmentation.lines import SegmentationParams, _small_rows_scale, segment_page
from segmentation.loading import load_page_file
from segmentation.params import SPACING_FLOOR
from segmentation.types import PageImage

LEARNED = SegmentationParams(line_model=str(DEFAULT_LINE_MODEL))


def test_network_zoom_brings_the_spacing_into_the_trained_range():
    assert network_zoom(18.0, (15.5, 22.5)) == 1.0  # inside: the network's own scale
    assert network_zoom(10.0, (15.5, 22.5)) == pytest.approx(1.55)  # small rows: enlarged
    assert network_zoom(45.0, (15.5, 22.5)) == pytest.approx(0.5)  # large rows: reduced
    assert network_zoom(1.0, (15.5, 22.5)) == MAX_NETWORK_ZOOM  # a scrap's wild estimate: bounded
    assert network_zoom(10.0, None) == 1.0


def test_a_page_with_small_rows_is_worked_on_enlarged_within_the_budget():
    params = SegmentationParams()
    assert _small_rows_scale((3000, 2000), 0.77, 38.0, params) is None  # rows large enough
    up = _small_rows_scale((1500, 1000), 1.0, 20.0, params)
    assert up == pytest.approx(params.min_work_spacing / 20.0)
    assert _small_rows_scale((3000, 2000), 0.77, 20.0, params) is None  # no pixels left in the budget
    assert _small_rows_scale((1500, 1000), 1.0, 20.0, SegmentationParams(min_work_spacing=None)) is None
    assert _small_rows_scale((1500, 1000), 1.0, SPACING_FLOOR + 1, params) is None  # no clear period of rows


@pytest.fixture(scope="module")
def dufour_page(example_pages):
    """A dufour-1 validation page (rows 50 scan pixels apart) and its lines at its own resolution."""
    path = [p for p in example_pages if p.stem == "DAFANCH96_048MIC07695_L-0"][0]
    gray = load_page_file(path).pixels
    return gray, segment_page(PageImage(gray), LEARNED)


# At 0.4x the rows are 20 scan pixels apart, at 2x 100. Measured against the lines of 1x (precision / recall):
# 0.4x 0.926 / 1.0, 2x 1.0 / 1.0; before the network saw a page at its line spacing, 0.951 / 0.886 and
# 0.856 / 0.875.
@pytest.mark.parametrize("zoom", [0.4, 2.0])
def test_a_page_rescaled_gives_the_same_lines(dufour_page, zoom):
    gray, full = dufour_page
    scaled = cv2.resize(gray, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_AREA)
    seg = segment_page(PageImage(scaled), LEARNED)
    assert (seg.width, seg.height) == (scaled.shape[1], scaled.shape[0])
    assert seg.line_spacing == pytest.approx(zoom * full.line_spacing, rel=0.1)
    back = [(np.asarray(ln.polygon, np.float64) / zoom).tolist() for ln in seg.lines]
    counts = count_matches(match_lines(back, [ln.polygon for ln in full.lines]))
    assert counts.precision >= 0.9 and counts.recall >= 0.9, counts
    # Baselines come back in the scan's own pixels too: each found line's baseline lies within its polygon's box
    # (give or take two pixels of the page at 1x).
    tol = 2 * max(1.0, zoom)
    for ln in seg.lines:
        x0, y0, x1, y1 = ln.bbox
        assert all(x0 - tol <= x <= x1 + tol and y0 - tol <= y <= y1 + tol for x, y in ln.baseline)
