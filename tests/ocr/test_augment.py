"""Augmentation profiles: what each draws, and that the trainer never squeezes a line below its labels."""

import random

import numpy as np

from ocr.augment import AUGMENTATIONS, Augmentation, augment_line, baseline_wave
from ocr.train import EpochBatches, fits_ctc, make_batches
from segmentation.crop import LINE_HEIGHT


def line(width: int = 300) -> np.ndarray:
    img = np.full((LINE_HEIGHT, width), 230, np.uint8)
    img[20:28, 10 : width - 10] = 30  # one ink stroke along the baseline
    return img


def widths(aug: Augmentation, n: int = 400) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.array([augment_line(line(), rng, aug=aug).shape[1] for _ in range(n)])


def test_writer_profile_spans_a_wider_range_of_letter_widths():
    std, writer = widths(AUGMENTATIONS["standard"]), widths(AUGMENTATIONS["writer"])
    # Slant widens a line by up to ~0.35 of its height, a vertical margin of up to 10 px narrows it when the
    # crop is brought back to its height; the width scale does the rest.
    narrowest = 0.8 * 300 * LINE_HEIGHT / (LINE_HEIGHT + 10)
    assert std.min() >= narrowest - 2 and std.max() <= 1.2 * (300 + 0.35 * LINE_HEIGHT) + 2
    assert writer.min() < 0.85 * std.min() and writer.max() > 1.15 * std.max()
    # Log-uniform: squeezing and stretching are about as likely (median near the line's own width).
    assert 0.85 * 300 < np.median(writer) < 1.2 * 300


def test_every_profile_keeps_the_line_height_and_dtype():
    rng = np.random.default_rng(1)
    for aug in AUGMENTATIONS.values():
        for _ in range(50):
            out = augment_line(line(120), rng, aug=aug)
            assert out.shape[0] == LINE_HEIGHT and out.dtype == np.uint8


def test_baseline_wave_moves_ink_up_and_down_along_the_line():
    img = line(600)
    bent = baseline_wave(img, np.random.default_rng(3), amplitude=4.0)
    rows = [np.argmin(bent[:, x]) for x in range(20, 580, 20)]  # the stroke's row in each column
    assert max(rows) - min(rows) >= 3
    assert bent.shape == img.shape


def test_squeezed_lines_that_lose_room_for_their_labels_are_read_unaugmented():
    # 30 labels need 30 frames: at stride 4 that is 120 px, the line has 130. Squeezed to 0.65 it has no room.
    labels = list(range(1, 31))
    items = [(line(130), labels, True) for _ in range(64)]
    batches = make_batches([130] * len(items), 8, random.Random(0))
    squeeze = Augmentation(width=(0.65, 0.66), elastic_p=0, stroke_p=0)
    guarded = EpochBatches(items, batches, seed=0, epoch=0, augmentation=squeeze, stride=4)
    for b in range(len(guarded)):
        x, w, _, _ = guarded[b]
        assert all(fits_ctc(len(labels), 0, int(v), 4) for v in w)
    # Without the stride the same profile does squeeze them below what CTC needs.
    bare = EpochBatches(items, batches, seed=0, epoch=0, augmentation=squeeze)
    assert any(not fits_ctc(len(labels), 0, int(v), 4) for b in range(len(bare)) for v in bare[b][1])


def test_slant_range_is_the_profiles_own():
    # Shear widens a line by |shear| x its height: none without slant, up to 0.5 x 48 px with it.
    fixed = dict(width=(1.0, 1.0), elastic_p=0, stroke_p=0)
    straight = widths(Augmentation(slant_p=0, **fixed), n=100)
    slanted = widths(Augmentation(slant_p=1, slant=0.5, **fixed), n=100)
    assert straight.max() <= 300
    assert slanted.max() > 300 + 0.35 * LINE_HEIGHT
