import numpy as np
import pytest

from segmentation.overlay import draw_overlay
from segmentation.types import Line, Word


def line(x0, y0, x1, y1, column=0):
    return Line(
        id="l0001",
        polygon=[(x0, y0), (x1, y0), (x1, y1), (x0, y1)],
        baseline=[(x0, y1 - 5), (x1, y1 - 5)],
        column=column,
        words=[Word((x0 + 2, y0 + 2, (x0 + x1) // 2, y1 - 2))],
    )


def test_draws_lines_baselines_words_and_unicode_text():
    gray = np.full((300, 500), 235, np.uint8)
    lines = [line(40, 100, 400, 140), line(40, 200, 300, 240, column=1)]
    plain = draw_overlay(gray, lines)
    assert plain.shape == (300, 500, 3) and plain.dtype == np.uint8
    assert not np.array_equal(plain[100], np.full((500, 3), 235))  # polygon edge drawn
    assert (plain[135, 100:300] != 235).any(axis=1).any()  # baseline drawn
    texts = ["Œuvre de Mᵐᵉ Hélène ¥", "rue de l'Église"]
    labelled = draw_overlay(gray, lines, texts)
    # The text sits above each line, where the plain overlay is untouched paper.
    assert (labelled[60:100, 40:400] != plain[60:100, 40:400]).any()
    assert (labelled[160:200, 40:300] != plain[160:200, 40:300]).any()
    # The page itself is not modified.
    assert (gray == 235).all()


def test_text_count_must_match():
    with pytest.raises(ValueError):
        draw_overlay(np.full((50, 50), 255, np.uint8), [line(1, 1, 40, 20)], ["a", "b"])
