"""Ruling: find the long horizontal and vertical rules of a levelled page, remove them, read the table grid.

Works on a boolean ink mask of a deskewed page. Rules are what survives a
morphological opening with a kernel much longer than any pen stroke; the
vertical ones bound the table columns, the horizontal ones that cross most of
the table bound its rows (header bands, the body).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass(frozen=True)
class Rule:
    """A straight rule segment in working-frame pixels: end points and mean thickness."""

    x0: float
    y0: float
    x1: float
    y1: float
    thickness: float

    @property
    def length(self) -> float:
        """Return the segment length in pixels."""
        return float(np.hypot(self.x1 - self.x0, self.y1 - self.y0))

    def x_at(self, y: float) -> float:
        """Return the x of a (near-)vertical rule at height ``y``, extrapolating past its ends."""
        if self.y1 == self.y0:
            return (self.x0 + self.x1) / 2
        return self.x0 + (self.x1 - self.x0) * (y - self.y0) / (self.y1 - self.y0)


@dataclass
class Ruling:
    """The rules of a page: pixel masks (for removal) and fitted segments (for structure)."""

    horizontal_mask: np.ndarray  # bool, pixels of horizontal rules
    vertical_mask: np.ndarray  # bool, pixels of vertical rules
    horizontal: list[Rule] = field(default_factory=list)
    vertical: list[Rule] = field(default_factory=list)


@dataclass
class Grid:
    """Table grid in working-frame pixels: column x-ranges (left to right) and row y-ranges (top down)."""

    columns: list[tuple[float, float]] = field(default_factory=list)
    rows: list[tuple[float, float]] = field(default_factory=list)

    @property
    def found(self) -> bool:
        """Return True when the page has a table (at least two columns)."""
        return len(self.columns) >= 2

    def column_at(self, x: float) -> int | None:
        """Return the index of the column holding ``x``, or None outside the table."""
        for i, (a, b) in enumerate(self.columns):
            if a <= x < b:
                return i
        return None

    def row_at(self, y: float) -> int | None:
        """Return the index of the row band holding ``y``, or None above or below the table."""
        for i, (a, b) in enumerate(self.rows):
            if a <= y < b:
                return i
        return None


def _fit_segments(mask: np.ndarray, vertical: bool, min_length: float) -> list[Rule]:
    """Return one straight segment per connected run of ``mask`` at least ``min_length`` long."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    rules = []
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        length = h if vertical else w
        if length < min_length:
            continue
        ys, xs = np.nonzero(labels[y : y + h, x : x + w] == i)
        ys = ys + y
        xs = xs + x
        if vertical:
            # x as a linear function of y: tolerates a slightly leaning rule.
            b, a = np.polyfit(ys, xs, 1) if h > 1 else (0.0, float(xs.mean()))
            y0, y1 = float(y), float(y + h - 1)
            rules.append(Rule(a + b * y0, y0, a + b * y1, y1, area / max(h, 1)))
        else:
            b, a = np.polyfit(xs, ys, 1) if w > 1 else (0.0, float(ys.mean()))
            x0, x1 = float(x), float(x + w - 1)
            rules.append(Rule(x0, a + b * x0, x1, a + b * x1, area / max(w, 1)))
    return rules


def _rank_open(mask: np.ndarray, ksize: tuple[int, int], fill: float) -> np.ndarray:
    """Return the pixels of ``mask`` inside a window of ``ksize`` (w, h) that is ≥ ``fill`` ink (uint8 0/1)."""
    share = cv2.boxFilter(mask.astype(np.float32), -1, ksize, normalize=True, borderType=cv2.BORDER_CONSTANT)
    seeds = (share >= fill).astype(np.uint8)
    # Grow each qualifying window centre back to the whole window, then keep only ink.
    grown = cv2.dilate(seeds, cv2.getStructuringElement(cv2.MORPH_RECT, ksize))
    return grown & mask.astype(np.uint8)


def _thin_only(mask: np.ndarray, vertical: bool, max_thickness: float) -> np.ndarray:
    """Return ``mask`` without the components thicker (area / length) than ``max_thickness`` pixels."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return mask
    length = stats[:, 3] if vertical else stats[:, 2]
    thick = stats[:, 4] / np.maximum(length, 1) > max_thickness
    thick[0] = False
    if not thick.any():
        return mask
    return np.where(thick[labels], 0, mask).astype(np.uint8)


def detect_rules(ink: np.ndarray, line_spacing: float) -> Ruling:
    """Return the horizontal and vertical rules of a levelled ink mask.

    ``line_spacing`` (pixels between text rows) sets the scale: a vertical rule
    must be straight over three rows, longer than any ascender or long ``ſ``; a
    horizontal one longer than a flourish under a word.
    """
    h, w = ink.shape
    img = ink.astype(np.uint8)
    kv = int(max(25, 3.0 * line_spacing))
    kh = int(max(25, 4.0 * line_spacing))
    # A rank opening: keep runs that are at least 70 % ink over the kernel's
    # length, so a faint rule broken by the binarization still counts. Rows of
    # bold printed capitals reach 70 % too, so horizontal runs must be ~solid.
    vert = _rank_open(img, (1, kv), 0.7)
    horiz = _thin_only(_rank_open(img, (kh, 1), 0.9), False, 0.3 * line_spacing)
    # Bridge the short breaks of a faded or crossed rule before measuring its length.
    vert_joined = cv2.morphologyEx(
        vert, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (1, int(line_spacing)))
    )
    horiz_joined = cv2.morphologyEx(
        horiz, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (int(line_spacing), 1))
    )
    v_rules = _fit_segments(vert_joined, vertical=True, min_length=max(kv, 0.08 * h))
    h_rules = _fit_segments(horiz_joined, vertical=False, min_length=kh)
    # Removal masks: the opened pixels grown by two pixels across the rule, so
    # the anti-aliased fringe goes too.
    vmask = cv2.dilate(vert, cv2.getStructuringElement(cv2.MORPH_RECT, (5, 1))).astype(bool)
    hmask = cv2.dilate(horiz, cv2.getStructuringElement(cv2.MORPH_RECT, (1, 5))).astype(bool)
    return Ruling(hmask, vmask, h_rules, v_rules)


def rule_band(ruling: Ruling, shape: tuple[int, int], margin: float, vertical: bool = True) -> np.ndarray:
    """Return a mask of the strip ``margin`` pixels either side of each fitted rule (its thickness added)."""
    band = np.zeros(shape, np.uint8)
    for r in ruling.vertical if vertical else ruling.horizontal:
        width = max(1, int(round(r.thickness + 2 * margin)))
        cv2.line(band, (int(round(r.x0)), int(round(r.y0))), (int(round(r.x1)), int(round(r.y1))), 1, width)
    return band.astype(bool)


def remove_rules(ink: np.ndarray, ruling: Ruling) -> np.ndarray:
    """Return the ink mask without the pixels of its rules."""
    return ink & ~ruling.horizontal_mask & ~ruling.vertical_mask


def table_grid(ruling: Ruling, shape: tuple[int, int], min_column: float) -> Grid:
    """Return the table grid: columns between long vertical rules, rows between long horizontal rules.

    Vertical rules closer than ``min_column`` pixels (double rules, a rule and
    the page edge) bound no column of their own.
    """
    h, w = shape
    tall = [r for r in ruling.vertical if r.length >= 0.25 * h]
    if len(tall) < 2:
        return Grid()
    mid = h / 2
    xs = sorted(r.x_at(mid) for r in tall)
    merged = [xs[0]]
    for x in xs[1:]:
        if x - merged[-1] < min_column:
            merged[-1] = (merged[-1] + x) / 2
        else:
            merged.append(x)
    columns = list(zip(merged[:-1], merged[1:], strict=True))
    if not columns:
        return Grid()
    left, right = merged[0], merged[-1]
    top = min(r.y0 for r in tall)
    bottom = max(r.y1 for r in tall)
    wide = sorted(
        (r.y0 + r.y1) / 2 for r in ruling.horizontal if min(r.x1, right) - max(r.x0, left) >= 0.4 * (right - left)
    )
    # Row bounds: the table's top and bottom and every wide rule between, a
    # double rule counted once.
    bounds = [top]
    for y in wide:
        if y - bounds[-1] >= min_column and bottom - y >= min_column:
            bounds.append(y)
    bounds.append(bottom)
    rows = list(zip(bounds[:-1], bounds[1:], strict=True))
    return Grid(columns, rows)


def _label_band(text: np.ndarray, top: float, bottom: float, spacing: float) -> tuple[int, int] | None:
    """Return the (y0, y1) rows of the lowest line of header text between ``top`` and ``bottom``, or None."""
    y0, y1 = int(max(0, top)), int(max(0, bottom))
    if y1 - y0 < 0.5 * spacing:
        return None
    profile = text[y0:y1].sum(axis=1)
    if not profile.any():
        return None
    inked = profile > 0.25 * profile.max()
    # Skip the blank strip (and the rule's fringe) just above the body, then take the run of inked rows.
    rows = np.nonzero(inked)[0]
    end = int(rows[-1])
    start = end
    while start > 0 and (inked[start - 1] or (end - start < 0.2 * spacing)):
        start -= 1
    if end - start > 1.2 * spacing:
        return None  # a stamp or a drawing, not a line of labels
    return y0 + start, y0 + end + 1


def subcolumn_rules(ruling: Ruling, grid: Grid, ink: np.ndarray, spacing: float) -> list[Rule]:
    """Return the vertical rules that only subdivide a column of the table body (francs | centimes).

    The lowest line of the header holds the columns' labels. A rule that does
    not reach above that line, and whose x a label runs across, divides one
    labelled column: a text row that crosses it is one line (the ground truth
    writes "3 75" as one line). ``ink`` is the page's ink mask, rules
    included: removing a rule that starts inside a label takes the letters it
    touches too. ``spacing`` is the line spacing, both in the ruling's pixels.
    """
    if not grid.found or len(grid.rows) < 2:
        return []
    body = max(range(len(grid.rows)), key=lambda i: grid.rows[i][1] - grid.rows[i][0])
    if body == 0:
        return []  # no header band above the body
    body_top = grid.rows[body][0]
    band = _label_band(remove_rules(ink, ruling), grid.rows[body - 1][0], body_top - 0.15 * spacing, spacing)
    if band is None:
        return []
    y0, y1 = band
    # The labels as solid horizontal runs: letter and word gaps closed.
    k = max(3, int(round(0.5 * spacing)))
    runs = cv2.morphologyEx(ink[y0:y1].astype(np.uint8), cv2.MORPH_CLOSE, np.ones((1, k), np.uint8))
    half = max(1, int(round(0.15 * spacing)))
    ym = (y0 + y1) / 2
    high = [r for r in ruling.vertical if min(r.y0, r.y1) < y0 - 0.3 * spacing]
    out = []
    for r in ruling.vertical:
        if min(r.y0, r.y1) < y0 - 0.3 * spacing or max(r.y0, r.y1) < body_top:
            continue
        x = r.x_at(ym)
        if any(abs(o.x_at(ym) - x) < 0.5 * spacing for o in high):
            continue  # a piece of a column rule broken where it faded
        xi = int(round(x))
        if xi - half < 0 or xi + half >= runs.shape[1]:
            continue
        if runs[:, xi - half : xi + half + 1].all(axis=1).any():
            out.append(r)
    return out
