"""Drawn register pages for the segmentation tests: ruled tables with handwriting-like text and their truth.

A module of its own (not conftest.py) so tests import it by a name no other test folder uses."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

WORDS = (
    "Martin",
    "veuve",
    "Durand",
    "rue",
    "de",
    "la",
    "Paix",
    "notaire",
    "Paris",
    "vente",
    "maison",
    "Bernard",
    "Louis",
    "quittance",
    "Lefebvre",
    "Marie",
    "vingt",
    "mars",
    "acte",
    "entre",
)
FONT = cv2.FONT_HERSHEY_SCRIPT_SIMPLEX
#: Distance between the text rows of the drawn page, pixels.
SPACING = 50


@dataclass
class DrawnLine:
    """A text line drawn on the test page: its column, text and box (x0, y0, x1, y1) in page pixels."""

    column: int | None
    text: str
    box: tuple[int, int, int, int]
    baseline_y: int

    @property
    def centre(self) -> tuple[float, float]:
        """Return the centre of the line's ink box."""
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2


@dataclass
class DrawnPage:
    """A drawn register page: grayscale pixels, the lines drawn on it and the x of its vertical rules."""

    gray: np.ndarray
    lines: list[DrawnLine]
    rule_xs: list[int]


def _put(img: np.ndarray, text: str, x: int, base: int, scale: float, ink: int) -> tuple[int, int, int, int]:
    (w, h), below = cv2.getTextSize(text, FONT, scale, 2)
    cv2.putText(img, text, (x, base), FONT, scale, ink, 2, cv2.LINE_AA)
    return x, base - h, x + w, base + below


def draw_register(
    seed: int = 0, rows: int = 24, width: int = 1500, height: int = 1900, francs_centimes: bool = False
) -> DrawnPage:
    """Return a ruled register page: number, date and wide text columns, a printed header, uneven light.

    The paper gets a lighting gradient, faint bleed-through (mirrored pale
    text) and a few specks of dust, none of which is a line. With
    ``francs_centimes`` the DROITS column is split below its header by a rule
    between francs and centimes, and each amount ("3 75") is written across it.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    # Darker towards the left edge: the gutter of a bound volume.
    paper = 228 - 40 * np.exp(-xx / 250.0) - 10 * (yy / height)
    gray = paper.astype(np.float64)
    bleed = np.zeros((height, width), np.uint8)
    for i in range(rows):
        cv2.putText(bleed, " ".join(rng.choice(WORDS, 4)), (500, 300 + i * SPACING), FONT, 1.2, 255, 2)
    gray -= 18 * (cv2.flip(bleed, 1) > 0)  # faint, mirrored: text from the other side of the leaf
    img = np.clip(gray, 0, 255).astype(np.uint8)

    rule_xs = [90, 220, 360, 1300, 1420]
    top, header_bottom, bottom = 110, 210, height - 80
    for x in rule_xs:
        cv2.line(img, (x, top), (x, bottom), 40, 3)
    for y in (top, header_bottom, bottom):
        cv2.line(img, (rule_xs[0], y), (rule_xs[-1], y), 40, 3)
    sub_x = (rule_xs[3] + rule_xs[4]) // 2 + 10
    if francs_centimes:
        cv2.line(img, (sub_x, header_bottom), (sub_x, bottom), 40, 2)
    lines: list[DrawnLine] = []
    for col, label in enumerate(("No", "DATES", "NOMS ET DOMICILES", "DROITS")):
        x0, x1 = rule_xs[col], rule_xs[col + 1]
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_DUPLEX, 0.8, 1)
        x = (x0 + x1 - tw) // 2
        cv2.putText(img, label, (x, 170), cv2.FONT_HERSHEY_DUPLEX, 0.8, 30, 1, cv2.LINE_AA)
        lines.append(DrawnLine(col, label, (x, 170 - th, x + tw, 170), 170))
    for i in range(rows):
        base = 270 + i * SPACING
        if i % 3 == 0:
            lines.append(DrawnLine(0, str(100 + i), _put(img, str(100 + i), 110, base, 1.1, 25), base))
            lines.append(DrawnLine(1, str(1 + i // 3), _put(img, str(1 + i // 3), 260, base, 1.1, 25), base))
            if francs_centimes:
                fx0, fy0, fx1, fy1 = _put(img, "3", sub_x - 26, base, 1.0, 25)
                cx0, cy0, cx1, cy1 = _put(img, "75", sub_x + 8, base, 1.0, 25)
                lines.append(DrawnLine(3, "3 75", (fx0, min(fy0, cy0), cx1, max(fy1, cy1)), base))
            else:
                lines.append(DrawnLine(3, "2.20", _put(img, "2.20", 1325, base, 1.0, 25), base))
        n_words = int(rng.integers(3, 7))
        text = " ".join(rng.choice(WORDS, n_words))
        while cv2.getTextSize(text, FONT, 1.2, 2)[0][0] > 1300 - 380 - 20:
            text = text.rsplit(" ", 1)[0]
        lines.append(DrawnLine(2, text, _put(img, text, 380, base, 1.2, 20), base))
    for _ in range(25):  # dust: single dark pixels pairs
        y, x = int(rng.integers(0, height - 2)), int(rng.integers(0, width - 2))
        img[y : y + 2, x : x + 2] = 60
    return DrawnPage(img, lines, rule_xs)


def rotate_page(page: DrawnPage, angle: float) -> tuple[DrawnPage, np.ndarray]:
    """Return the page turned by ``angle`` degrees (OpenCV convention) and the 2x3 matrix used."""
    h, w = page.gray.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    turned = cv2.warpAffine(page.gray, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=220)
    lines = []
    for ln in page.lines:
        x0, y0, x1, y1 = ln.box
        pts = np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]], np.float64) @ m.T
        bx0, by0 = pts.min(axis=0)
        bx1, by1 = pts.max(axis=0)
        lines.append(DrawnLine(ln.column, ln.text, (int(bx0), int(by0), int(bx1), int(by1)), ln.baseline_y))
    return DrawnPage(turned, lines, page.rule_xs), m


def draw_letter(seed: int = 0, rows: int = 14, width: int = 1200, height: int = 1500) -> DrawnPage:
    """Return an unruled page of prose, as a letter or a will: a page number at the top right, lines of uneven
    length from the left margin, an indented first line, a signature at the bottom right. Lines are in reading
    order; ``column`` is None for all (no table)."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width), 226, np.uint8)
    lines = [DrawnLine(None, "12", _put(img, "12", width - 150, 90, 1.0, 30), 90)]
    for i in range(rows):
        base = 200 + i * 70
        x = 220 if i == 0 else 100
        text = " ".join(rng.choice(WORDS, int(rng.integers(4, 8))))
        while cv2.getTextSize(text, FONT, 1.3, 2)[0][0] > width - 100 - x:
            text = text.rsplit(" ", 1)[0]
        lines.append(DrawnLine(None, text, _put(img, text, x, base, 1.3, 25), base))
    base = 200 + rows * 70 + 60
    lines.append(DrawnLine(None, "Louis Martin", _put(img, "Louis Martin", width - 450, base, 1.3, 25), base))
    return DrawnPage(img, lines, [])
