"""Line-image augmentation for training: slant, scale, stroke width, elastic warp, blur, noise, rules.

Each transform imitates a way another clerk's hand or another scan differs
from the training pages; all work on uint8 grayscale crops (dark ink on light
paper) and return the same.
"""

from __future__ import annotations

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


def augment_line(img: np.ndarray, rng: np.random.Generator, height: int = LINE_HEIGHT) -> np.ndarray:
    """Return a randomly distorted copy of a line crop, resized back to ``height`` pixels."""
    out = img
    if rng.random() < 0.6:
        out = slant(out, float(rng.uniform(-0.35, 0.35)))
    if rng.random() < 0.3:
        out = elastic(out, rng, alpha=float(rng.uniform(1.0, 2.5)), sigma=float(rng.uniform(3, 6)))
    if rng.random() < 0.3:
        k = np.ones((2, 2), np.uint8)
        out = cv2.erode(out, k) if rng.random() < 0.5 else cv2.dilate(out, k)
    # Vertical margin: clerks' lines sit differently in their polygons.
    if rng.random() < 0.5:
        top, bottom = (int(v) for v in rng.integers(0, 6, 2))
        out = cv2.copyMakeBorder(out, top, bottom, 0, 0, cv2.BORDER_CONSTANT, value=_paper(out))
    out = resize_to_height(out, height)
    w = out.shape[1]
    scale = float(rng.uniform(0.8, 1.2))
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
