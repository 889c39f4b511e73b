"""Typed records of the segmentation stage: pages, lines and words in pixels of the original scan."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Point = tuple[int, int]


@dataclass(frozen=True)
class Word:
    """A word box inside a line, in pixels of the original scan: (x0, y0, x1, y1)."""

    box: tuple[int, int, int, int]


@dataclass
class Line:
    """A text line: polygon and baseline in original-scan pixels, reading order and table position."""

    id: str
    polygon: list[Point]
    baseline: list[Point]
    order: int = 0
    column: int | None = None
    cell: int | None = None
    words: list[Word] = field(default_factory=list)

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """Return the (x0, y0, x1, y1) bounding box of the polygon in pixels."""
        xs = [p[0] for p in self.polygon]
        ys = [p[1] for p in self.polygon]
        return min(xs), min(ys), max(xs), max(ys)


@dataclass
class PageImage:
    """A decoded page: 8-bit grayscale pixels plus where it came from."""

    pixels: np.ndarray  # uint8, H x W, upright (EXIF orientation applied)
    source: str = ""

    @property
    def height(self) -> int:
        """Return the page height in pixels."""
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        """Return the page width in pixels."""
        return int(self.pixels.shape[1])
