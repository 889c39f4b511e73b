import cv2
import numpy as np
import pytest

from segmentation.crop import LINE_HEIGHT, baseline_angle, crop_line, resize_to_height


def draw_slanted_line(angle_deg: float) -> tuple[np.ndarray, list, list]:
    """A page with one dark bar of 'text' along a baseline at ``angle_deg``, and a second line below."""
    page = np.full((400, 800), 235, np.uint8)
    x0, y0, length = 100, 200, 500
    t = np.radians(angle_deg)
    x1, y1 = int(x0 + length * np.cos(t)), int(y0 + length * np.sin(t))
    cv2.line(page, (x0, y0 - 12), (x1, y1 - 12), 20, 16)
    cv2.line(page, (100, 330), (600, 330), 20, 16)  # a neighbouring line outside the polygon
    polygon = [(x0 - 5, y0 - 40), (x1 + 5, y1 - 40), (x1 + 5, y1 + 10), (x0 - 5, y0 + 10)]
    return page, polygon, [(x0, y0), (x1, y1)]


def test_crop_has_fixed_height_and_proportional_width():
    page, polygon, baseline = draw_slanted_line(0)
    crop = crop_line(page, polygon, baseline)
    assert crop.dtype == np.uint8 and crop.shape[0] == LINE_HEIGHT
    assert 400 < crop.shape[1] < 600


def test_outside_polygon_is_masked_to_paper():
    page, polygon, baseline = draw_slanted_line(0)
    page[150:160, 100:600] = 0  # ink just above the polygon (y >= 160 is inside)
    crop = crop_line(page, polygon, baseline)
    # The top rows came from outside the polygon and must read as paper, not ink.
    assert crop[:3].min() > 200


@pytest.mark.parametrize("angle", [-8.0, 6.0])
def test_slanted_baseline_is_straightened(angle):
    page, polygon, baseline = draw_slanted_line(angle)
    assert baseline_angle(baseline) == pytest.approx(angle, abs=0.3)
    crop = crop_line(page, polygon, baseline, height=LINE_HEIGHT)
    ink_rows = np.nonzero((crop < 128).mean(axis=1) > 0.5)[0]
    # A level bar fills its rows across most of the width; a slanted one would not.
    assert len(ink_rows) >= 3


def test_degenerate_polygons_raise():
    page = np.full((100, 100), 255, np.uint8)
    with pytest.raises(ValueError):
        crop_line(page, [(1, 1), (2, 2)], [])
    with pytest.raises(ValueError):
        crop_line(page, [(500, 500), (600, 500), (600, 600)], [])


def test_resize_to_height_keeps_aspect():
    img = np.zeros((96, 300), np.uint8)
    assert resize_to_height(img, 48).shape == (48, 150)
    assert resize_to_height(np.zeros((10, 1), np.uint8), 48).shape[1] >= 1
