"""Training crops cut where the learned segmenter finds the lines (``registre train --segmented-share``)."""

import shutil
from pathlib import Path

import numpy as np

from ocr.charset import label_text
from ocr.corpus import build_segmented_cache, load_segmented_cache
from ocr.groundtruth import read_alto

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pages"


def test_segmented_cache_crops_the_training_pages_lines_where_the_segmenter_finds_them(tmp_path):
    volume = tmp_path / "data" / "lectaurep" / "train" / "dufour-1"
    volume.mkdir(parents=True)
    src = EXAMPLES / "DAFANCH96_048MIC07695_L-0.xml"
    # Under its own name the page validates and is skipped; renamed, it trains.
    shutil.copy(src, volume / src.name)
    shutil.copy(src.with_suffix(".jpg"), volume / src.with_suffix(".jpg").name)
    xml = src.read_text(encoding="utf-8").replace(src.with_suffix(".jpg").name, "TRAIN_0001.jpg")
    (volume / "TRAIN_0001.xml").write_text(xml, encoding="utf-8")
    shutil.copy(src.with_suffix(".jpg"), volume / "TRAIN_0001.jpg")
    cache = tmp_path / "seg.pkl"

    samples = build_segmented_cache(tmp_path / "data", cache)

    gt = {ln.id: ln.text for ln in read_alto(src).lines if ln.text}
    assert {s.page for s in samples} == {"lectaurep/train/dufour-1/TRAIN_0001"}  # page keys: paths under the data
    assert len(samples) >= 0.85 * len(gt)  # the shipped line finder matches ~0.9 of this page's lines
    assert all(s.text == label_text(gt[s.line_id]) for s in samples)
    assert len({s.line_id for s in samples}) == len(samples)
    assert all(s.image.shape[0] == 48 and s.image.dtype == np.uint8 and s.split == "train" for s in samples)
    assert not list(tmp_path.glob("*.tmp"))
    # Read back, not built again.
    again = load_segmented_cache(tmp_path / "no-data", cache)
    assert [s.line_id for s in again] == [s.line_id for s in samples]
