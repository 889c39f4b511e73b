import cv2
import numpy as np
from skimage.filters import threshold_sauvola

from segmentation.binarize import (
    binarize_otsu,
    binarize_sauvola,
    normalize_background,
    paper_mask,
    threshold_sauvola_box,
)


def uneven_page() -> tuple[np.ndarray, np.ndarray]:
    """A page lit from one side (paper 120 → 235), with text, faint bleed-through; and the true ink mask."""
    h, w = 800, 1000
    light = np.linspace(120, 235, w)[None, :].repeat(h, axis=0)
    ink = np.zeros((h, w), np.uint8)
    for i in range(10):
        cv2.putText(ink, "Durand rue de la Paix", (40, 80 + 70 * i), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, 1.5, 1, 3)
    bleed = np.zeros((h, w), np.uint8)
    for i in range(10):
        cv2.putText(bleed, "Martin notaire", (300, 110 + 70 * i), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, 1.5, 1, 3)
    gray = light.copy()
    gray[bleed > 0] *= 0.9  # faint show-through from the other side of the leaf
    gray[ink > 0] *= 0.3  # the writing: much darker than its surroundings
    return np.clip(gray, 0, 255).astype(np.uint8), ink > 0


def test_sauvola_finds_text_under_uneven_light():
    gray, truth = uneven_page()
    ink = binarize_sauvola(gray)
    assert ink.dtype == bool and ink.shape == gray.shape
    recall = (ink & truth).sum() / truth.sum()
    precision = (ink & truth).sum() / max(ink.sum(), 1)
    assert recall > 0.85 and precision > 0.85, (recall, precision)
    # Otsu alone cannot: the dim side's paper is as dark as the bright side's ink.
    otsu = binarize_otsu(gray)
    assert (otsu & ~truth).sum() > 10 * (ink & ~truth).sum()


def test_flattened_background_is_even():
    gray, truth = uneven_page()
    flat = normalize_background(gray)
    paper = flat[~cv2.dilate(truth.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)]
    assert paper.std() < 8 and paper.mean() > 230


def test_blank_and_tiny_images():
    assert not binarize_sauvola(np.full((500, 400), 200, np.uint8)).any()
    tiny = np.full((8, 8), 255, np.uint8)
    tiny[2:5, 2:5] = 0
    assert binarize_sauvola(tiny).sum() == 9  # smaller than the window: Otsu


def test_paper_mask_drops_the_scanner_background():
    gray = np.full((600, 500), 15, np.uint8)  # black microfilm surround
    gray[50:560, 80:470] = 210  # the page
    mask = paper_mask(gray)
    assert mask[300, 250] and not mask[10, 10] and not mask[300, 30]
    assert 0.6 < mask.mean() < 0.7
    # Dark writing inside the page is not background.
    gray[200:260, 200:300] = 20
    assert paper_mask(gray)[230, 250]


def test_box_filter_sauvola_matches_scikit_image():
    rng = np.random.default_rng(3)
    gray = cv2.GaussianBlur((rng.random((240, 310)) * 255).astype(np.uint8), (5, 5), 2)
    for window, k in ((15, 0.2), (27, 0.34)):
        ours = threshold_sauvola_box(gray, window, k)
        ref = threshold_sauvola(gray, window_size=window, k=k)
        assert ours.dtype == np.float32 and ours.shape == gray.shape
        assert np.abs(ours - ref).max() < 1e-3  # borders included
