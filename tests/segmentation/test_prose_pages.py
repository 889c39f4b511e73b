"""Pages that are not registers (a will, a letter) give their lines in reading order, top to bottom."""

import numpy as np
import pytest
from scipy.stats import kendalltau

from ocr.groundtruth import read_ground_truth
from segmentation.evaluate import match_lines
from segmentation.learned import DEFAULT_LINE_MODEL
from segmentation.lines import SegmentationParams, segment_page
from segmentation.loading import load_page_file
from tests.conftest import SHARED_DATA

LEARNED = SegmentationParams(line_model=str(DEFAULT_LINE_MODEL))

# Validation pages of held-out hands (ocr/splits.toml): a soldier's will and a nun's letter.
PROSE_PAGES = [
    "testaments-poilus/batch-2/TestamentsDePoilus_will_AN_0030-0",
    "cremma-mss-19/lettre-soeur-marie/01R_P1S3SS2P118_001",
]


@pytest.mark.parametrize("key", PROSE_PAGES)
def test_prose_page_lines_come_in_reading_order(key):
    gt = read_ground_truth(SHARED_DATA / f"{key}.xml")
    seg = segment_page(load_page_file(gt.image_path), LEARNED)
    pairs = [
        (p, g)
        for p, g in match_lines([ln.polygon for ln in seg.lines], [ln.polygon for ln in gt.lines])
        if p is not None and g is not None
    ]
    # Most transcribed lines are found, with no table and no column made up on free prose ...
    assert len(pairs) >= 0.7 * len(gt.lines), (len(pairs), len(gt.lines))
    assert seg.table is None
    # ... and the found lines' order is the transcription's.
    order = [seg.lines[p].order for p, _ in pairs]
    tau = kendalltau(order, [g for _, g in pairs]).statistic
    assert tau >= 0.95, tau
    assert np.all(np.diff([ln.order for ln in seg.lines]) > 0) or len(seg.lines) < 2
