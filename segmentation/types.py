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


@dataclass(frozen=True)
class Cell:
    """A table cell: its row band and column indices and its outline in original-scan pixels."""

    row: int
    column: int
    polygon: list[Point]


@dataclass
class Table:
    """The ruled table of a page, in original-scan pixels.

    ``column_bounds`` are the (left, right) x of each column measured along the
    table's middle row; ``row_bounds`` the (top, bottom) y of each row band (header
    bands, the body) along the table's middle column. ``cells`` is row-major: the
    cell of row r, column c is ``cells[r * len(column_bounds) + c]``, which is the
    index a :class:`Line` carries in ``cell``.
    """

    column_bounds: list[tuple[int, int]] = field(default_factory=list)
    row_bounds: list[tuple[int, int]] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)


@dataclass
class PageSegmentation:
    """The segmentation of one page: lines in reading order plus what was learnt about the page.

    ``angle`` is the skew in degrees that was corrected (OpenCV convention:
    positive when the scan's content slopes down to the right); ``line_spacing``
    the estimated distance between text rows, in original pixels; ``rules`` the
    detected rule segments as ((x0, y0), (x1, y1)) in original pixels.
    ``confidence`` (0–1) is the learned line finder's certainty over the page
    (None for the rule-based finder); ``low_confidence`` says that the page is
    blank, damaged or laid out unlike anything it was trained on, so few or
    wrong lines are to be expected.
    """

    lines: list[Line]
    width: int
    height: int
    angle: float = 0.0
    line_spacing: float = 0.0
    table: Table | None = None
    rules: list[tuple[Point, Point]] = field(default_factory=list)
    confidence: float | None = None
    low_confidence: bool = False

    @property
    def columns(self) -> list[tuple[int, int]]:
        """Return the table's column (left, right) bounds in pixels, empty when no table was found."""
        return list(self.table.column_bounds) if self.table else []
