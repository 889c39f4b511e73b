import numpy as np

from segmentation.deskew import page_transform
from segmentation.words import find_words, word_spans


def test_word_spans_split_at_wide_gaps():
    xs = np.array([0, 1, 2, 5, 6, 20, 21, 22, 40])
    assert word_spans(xs, min_gap=5) == [(0, 6), (20, 22), (40, 40)]
    assert word_spans(np.array([], int), 5) == []


def test_find_words_boxes_in_original_pixels():
    ys = np.array([10, 12, 11, 30, 31])
    xs = np.array([100, 105, 110, 200, 215])
    tf = page_transform((1000, 1000), 0.5)  # working frame at half size
    words = find_words(ys, xs, unit=20, transform=tf, gap=1.0)
    assert [w.box for w in words] == [(200, 20, 222, 26), (400, 60, 432, 64)]
