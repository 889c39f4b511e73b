import cv2
import numpy as np

from segmentation.rules import detect_rules, remove_rules, table_grid


def table_mask() -> tuple[np.ndarray, np.ndarray]:
    """A levelled table: 5 vertical rules, 3 long horizontal ones, and text-like blobs in the cells."""
    img = np.zeros((1500, 1100), np.uint8)
    for x in (60, 180, 300, 950, 1050):
        cv2.line(img, (x, 80), (x, 1450), 1, 3)
    for y in (80, 200, 1450):
        cv2.line(img, (60, y), (1050, y), 1, 3)
    text = np.zeros_like(img)
    for i in range(20):
        y = 250 + 55 * i
        cv2.putText(text, "Durand rue de la Paix", (320, y), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, 1.1, 1, 2)
        cv2.putText(text, str(100 + i), (75, y), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, 1.1, 1, 2)
        cv2.line(text, (990, y - 30), (993, y), 1, 2)  # a short upright stroke: "1"
    return (img | text).astype(bool), text.astype(bool)


def test_rules_found_and_removed_text_kept():
    ink, text = table_mask()
    ruling = detect_rules(ink, line_spacing=55)
    xs = sorted(round(r.x_at(700)) for r in ruling.vertical)
    assert len(xs) == 5 and all(abs(a - b) <= 2 for a, b in zip(xs, (60, 180, 300, 950, 1050), strict=True))
    ys = sorted(round((r.y0 + r.y1) / 2) for r in ruling.horizontal if r.length > 900)
    assert len(ys) == 3 and all(abs(a - b) <= 2 for a, b in zip(ys, (80, 200, 1450), strict=True))
    cleaned = remove_rules(ink, ruling)
    # Rules gone, writing kept (the short "1" strokes and the cursive words included).
    assert not cleaned[700, 59:62].any() and not cleaned[82, 500:600].any()
    kept = (cleaned & text).sum() / text.sum()
    assert kept > 0.97, kept


def test_bold_print_is_not_a_rule():
    ink = np.zeros((400, 1200), np.uint8)
    cv2.putText(ink, "NOMS, PRENOMS ET DOMICILES", (40, 200), cv2.FONT_HERSHEY_DUPLEX, 2.0, 1, 6)
    ruling = detect_rules(ink.astype(bool), line_spacing=40)
    assert ruling.horizontal == [] and not ruling.horizontal_mask.any()


def test_grid_columns_and_rows():
    ink, _ = table_mask()
    grid = table_grid(detect_rules(ink, 55), ink.shape, min_column=20)
    assert grid.found and len(grid.columns) == 4
    assert [round(a) for a, _ in grid.columns] == [60, 180, 300, 950]
    assert len(grid.rows) == 2  # the header band and the body
    assert grid.column_at(500) == 2 and grid.column_at(20) is None
    assert grid.row_at(150) == 0 and grid.row_at(800) == 1 and grid.row_at(40) is None


def test_subcolumn_rule_found_only_under_a_label_that_spans_it():
    # Columns at 60 | 400 | 700 | 1000; the header (80-200) labels each column.
    # A rule at 850 starts at the body's top under the centred label "DROITS":
    # it divides that column (francs | centimes). A rule at 550 starts just as
    # low but no label runs across it, and the one at 300 reaches into the header.
    from segmentation.rules import subcolumn_rules

    img = np.zeros((1500, 1100), np.uint8)
    for x in (60, 400, 700, 1000):
        cv2.line(img, (x, 80), (x, 1450), 1, 3)
    for y in (80, 200, 1450):
        cv2.line(img, (60, y), (1000, y), 1, 3)
    for x in (850, 550):
        cv2.line(img, (x, 200), (x, 1450), 1, 2)
    cv2.line(img, (300, 120), (300, 1450), 1, 2)
    for label, x in (("NOMS", 120), ("DATES", 420), ("DROITS", 780)):
        cv2.putText(img, label, (x, 180), cv2.FONT_HERSHEY_DUPLEX, 1.0, 1, 2)
    for i in range(20):
        cv2.putText(img, "Durand rue", (80, 260 + 55 * i), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, 1.1, 1, 2)
    ink = img.astype(bool)
    ruling = detect_rules(ink, line_spacing=55)
    grid = table_grid(ruling, ink.shape, min_column=25)
    subs = subcolumn_rules(ruling, grid, ink, 55)
    assert [round(r.x_at(700)) for r in subs] == [850]
