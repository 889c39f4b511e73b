"""Line-image augmentation for training: slant, scale, stroke width, elastic warp, blur, noise, rules.

Each transform imitates a way another clerk's hand or another scan differs
from the training pages; all work on uint8 grayscale crops (dark ink on light
paper) and return the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from segmentation.crop import LINE_HEIGHT, resize_to_height


def _paper(img: np.ndarray) -> int:
    return int(np.percentile(img, 90))


def slant(img: np.ndarray, shear: float) -> np.ndarray:
    """Return ``img`` sheared horizontally by ``shear`` (x += shear * (y - h/2)), widened to fit."""
    h, w = img.shape
    extra = int(abs(shear) * h) + 1
    m = np.float32([[1, shear, extra / 2 - shear * h / 2], [0, 1, 0]])
    return cv2.warpAffine(img, m, (w + extra, h), flags=cv2.INTER_LINEAR, borderValue=_paper(img))


def elastic(img: np.ndarray, rng: np.random.Generator, alpha: float, sigma: float) -> np.ndarray:
    """Return ``img`` under a smooth random displacement field (Simard et al., 2003)."""
    h, w = img.shape
    dx = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma) * alpha
    dy = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma) * alpha
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, xs + dx, ys + dy, cv2.INTER_LINEAR, borderValue=_paper(img))


def baseline_wave(img: np.ndarray, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Return ``img`` with its rows bent along a smooth random curve: a baseline that rises and falls."""
    h, w = img.shape
    knots = rng.uniform(-amplitude, amplitude, max(2, w // 60 + 2)).astype(np.float32)
    dy = cv2.resize(knots[None, :], (w, 1), interpolation=cv2.INTER_CUBIC)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, xs, ys + dy, cv2.INTER_LINEAR, borderValue=_paper(img))


@dataclass(frozen=True)
class Augmentation:
    """How far :func:`augment_line` distorts a line: probabilities and ranges of each transform."""

    #: Width scale range after the height is fixed; ``log_width`` draws it uniformly in log space, so
    #: squeezing by a factor is as likely as stretching by it.
    width: tuple[float, float] = (0.8, 1.2)
    log_width: bool = False
    elastic_p: float = 0.3
    elastic_alpha: tuple[float, float] = (1.0, 2.5)
    stroke_p: float = 0.3
    #: Probability and amplitude (pixels at the crop's own scale) of a wavy baseline; 0 skips the draw.
    baseline_p: float = 0.0
    baseline_amplitude: float = 3.0
    #: Probability and largest horizontal shear of a slant change (x moves by up to ``slant`` x height).
    slant_p: float = 0.6
    slant: float = 0.35


#: ``standard``: what every shipped model so far trained with. ``writer``: wider in the ways hands differ
#: (letter width, wavy baselines, stroke weight, elastic shape), for hands the model never saw (run 8 of the
#: model card). ``writer-strong``: further still in each, and more slant; it fell behind ``writer`` (run 9).
AUGMENTATIONS = {
    "standard": Augmentation(),
    "writer": Augmentation(
        width=(0.65, 1.5), log_width=True, elastic_p=0.5, elastic_alpha=(1.0, 3.5), stroke_p=0.4, baseline_p=0.4
    ),
    "writer-strong": Augmentation(
        width=(0.55, 1.8),
        log_width=True,
        elastic_p=0.6,
        elastic_alpha=(1.0, 4.5),
        stroke_p=0.5,
        baseline_p=0.5,
        baseline_amplitude=4.0,
        slant_p=0.7,
        slant=0.5,
    ),
}


def augment_line(
    img: np.ndarray, rng: np.random.Generator, height: int = LINE_HEIGHT, aug: Augmentation = AUGMENTATIONS["standard"]
) -> np.ndarray:
    """Return a randomly distorted copy of a line crop, resized back to ``height`` pixels."""
    out = img
    if rng.random() < aug.slant_p:
        out = slant(out, float(rng.uniform(-aug.slant, aug.slant)))
    if rng.random() < aug.elastic_p:
        out = elastic(out, rng, alpha=float(rng.uniform(*aug.elastic_alpha)), sigma=float(rng.uniform(3, 6)))
    if aug.baseline_p and rng.random() < aug.baseline_p:
        out = baseline_wave(out, rng, aug.baseline_amplitude * out.shape[0] / LINE_HEIGHT)
    if rng.random() < aug.stroke_p:
        k = np.ones((2, 2), np.uint8)
        out = cv2.erode(out, k) if rng.random() < 0.5 else cv2.dilate(out, k)
    # Vertical margin: clerks' lines sit differently in their polygons.
    if rng.random() < 0.5:
        top, bottom = (int(v) for v in rng.integers(0, 6, 2))
        out = cv2.copyMakeBorder(out, top, bottom, 0, 0, cv2.BORDER_CONSTANT, value=_paper(out))
    out = resize_to_height(out, height)
    w = out.shape[1]
    lo, hi = aug.width
    scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if aug.log_width else float(rng.uniform(lo, hi))
    out = cv2.resize(out, (max(8, round(w * scale)), height), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.15:
        # A ruled line crossing or touching the text, as in register tables.
        y = int(rng.integers(height * 3 // 4, height))
        cv2.line(out, (0, y), (out.shape[1], y + int(rng.integers(-2, 3))), int(rng.integers(60, 160)), 1)
    f = out.astype(np.float32)
    if rng.random() < 0.5:
        # Ink and paper tone: contrast and brightness.
        f = (f - 128) * rng.uniform(0.6, 1.2) + 128 + rng.uniform(-30, 30)
    if rng.random() < 0.25:
        f = cv2.GaussianBlur(f, (0, 0), float(rng.uniform(0.5, 1.2)))
    if rng.random() < 0.3:
        f = f + rng.normal(0, rng.uniform(3, 12), f.shape)
    return np.clip(f, 0, 255).astype(np.uint8)
