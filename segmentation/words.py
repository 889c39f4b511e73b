"""Word segmentation inside a line: split the line's ink at horizontal gaps wider than a letter gap."""

from __future__ import annotations

import numpy as np

from segmentation.deskew import PageTransform
from segmentation.types import Word

#: A blank run wider than this many ``unit`` separates two words (segment_page passes 0.15 line spacing).
WORD_GAP = 0.15


def word_spans(xs: np.ndarray, min_gap: float) -> list[tuple[int, int]]:
    """Return the (first, last) x of each run of ink columns separated by more than ``min_gap`` blank columns."""
    if xs.size == 0:
        return []
    cols = np.unique(xs)
    breaks = np.nonzero(np.diff(cols) > min_gap)[0]
    starts = np.concatenate([[cols[0]], cols[breaks + 1]])
    ends = np.concatenate([cols[breaks], [cols[-1]]])
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def find_words(
    ys: np.ndarray,
    xs: np.ndarray,
    unit: float,
    transform: PageTransform | None = None,
    size: tuple[int, int] | None = None,
    gap: float = WORD_GAP,
) -> list[Word]:
    """Return the word boxes of a line given its ink pixels (working frame), in original-scan pixels.

    Words are split at blank runs wider than ``gap * unit`` pixels (``unit``:
    the page's line spacing in the working frame).

    ``transform`` maps the working frame back to the scan (identity when None);
    ``size`` (width, height) clips the boxes to the page.
    """
    words = []
    for a, b in word_spans(xs, gap * unit):
        sel = (xs >= a) & (xs <= b)
        y0, y1 = int(ys[sel].min()), int(ys[sel].max()) + 1
        corners = np.array([[a, y0], [b + 1, y0], [b + 1, y1], [a, y1]], np.float64)
        if transform is not None:
            corners = transform.to_original(corners)
        bx0, by0 = np.floor(corners.min(axis=0)).astype(int)
        bx1, by1 = np.ceil(corners.max(axis=0)).astype(int)
        if size is not None:
            bx0, bx1 = max(0, bx0), min(size[0], bx1)
            by0, by1 = max(0, by0), min(size[1], by1)
        words.append(Word((int(bx0), int(by0), int(bx1), int(by1))))
    return words
