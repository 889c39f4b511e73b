import cv2
import numpy as np
import pytest

from segmentation.deskew import estimate_skew, page_transform, rotate, rotate_mask


def ruled_mask(h: int = 1200, w: int = 900) -> np.ndarray:
    img = np.zeros((h, w), np.uint8)
    for x in (80, 200, 600, 820):
        cv2.line(img, (x, 60), (x, h - 60), 255, 3)
    for y in range(150, h - 60, 45):
        cv2.line(img, (220, y), (580, y), 255, 8)  # text rows as bars
    return img > 0


@pytest.mark.parametrize("angle", [-3.0, -0.7, 0.0, 0.4, 2.5])
def test_estimated_skew_levels_the_page(angle):
    mask = ruled_mask()
    turned, _ = rotate_mask(mask, angle)
    # Rotating by the estimate undoes the turn.
    assert estimate_skew(turned) == pytest.approx(-angle, abs=0.1)


def test_empty_mask_has_no_skew():
    assert estimate_skew(np.zeros((100, 100), bool)) == 0.0


def test_transform_maps_points_both_ways():
    tf = page_transform((4400, 3000), 0.5, 1.3)
    pts = np.array([[0, 0], [2999, 0], [1500, 2200], [10, 4399]], float)
    back = tf.to_original(tf.to_working(pts))
    assert np.allclose(back, pts, atol=1e-6)
    # The working frame holds the whole turned page.
    w, h = tf.size
    work = tf.to_working(pts)
    assert (work[:, 0] >= -1).all() and (work[:, 0] <= w + 1).all()
    assert (work[:, 1] >= -1).all() and (work[:, 1] <= h + 1).all()


def test_rotated_image_keeps_content_where_the_transform_says():
    img = np.full((400, 300), 255, np.uint8)
    img[100:110, 200:210] = 0
    turned, tf = rotate(img, 7.0)
    cx, cy = tf.to_working([[204.5, 104.5]])[0]
    assert turned[int(round(cy)), int(round(cx))] < 100
    assert turned.shape[0] > 400 and turned.shape[1] > 300  # canvas grown, no corner cut


def test_composed_transform():
    scale = page_transform((1000, 800), 0.25)
    rot = page_transform((250, 200), 1.0, 2.0)
    both = scale.then(rot)
    p = np.array([[400.0, 500.0]])
    assert np.allclose(both.to_working(p), rot.to_working(scale.to_working(p)))
    assert both.scale == 0.25 and both.angle == 2.0
