"""Line-crop extraction: polygon mask, baseline straightening, fixed-height normalization."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from segmentation.types import Point

#: Height in pixels of every crop handed to the recognizer.
LINE_HEIGHT = 48


def baseline_angle(baseline: Sequence[Point]) -> float:
    """Return the baseline slope in degrees (positive: the line rises to the right in image terms)."""
    if len(baseline) < 2:
        return 0.0
    (x0, y0), (x1, y1) = baseline[0], baseline[-1]
    if x1 == x0:
        return 0.0
    return math.degrees(math.atan2(y1 - y0, x1 - x0))


def crop_line(
    page: np.ndarray,
    polygon: Sequence[Point],
    baseline: Sequence[Point] = (),
    height: int = LINE_HEIGHT,
    pad: int = 4,
) -> np.ndarray:
    """Return the line as a uint8 grayscale crop of fixed ``height`` and proportional width.

    Pixels outside the polygon are set to the crop's paper colour so neighbouring
    lines and rules do not leak in; the crop is rotated so the baseline is level.
    Raises ValueError for a degenerate polygon.
    """
    if page.ndim != 2:
        raise ValueError("crop_line expects a 2-D grayscale page")
    pts = np.asarray(polygon, dtype=np.int32).reshape(-1, 2)
    if len(pts) < 3:
        raise ValueError("a line polygon needs at least 3 points")
    h, w = page.shape
    x0, y0 = np.clip(pts.min(axis=0) - pad, 0, [w - 1, h - 1])
    x1, y1 = np.clip(pts.max(axis=0) + pad + 1, 1, [w, h])
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError("line polygon has no area inside the page")
    region = page[y0:y1, x0:x1]
    mask = np.zeros(region.shape, np.uint8)
    cv2.fillPoly(mask, [pts - [x0, y0]], 255)
    if mask.any():
        # Paper colour: a bright percentile of the inside, robust to ink density.
        paper = int(np.percentile(region[mask > 0], 90))
    else:
        paper = 255
    crop = np.where(mask > 0, region, np.uint8(paper)).astype(np.uint8)

    angle = baseline_angle(baseline)
    if abs(angle) > 0.5 and abs(angle) < 45:
        ch, cw = crop.shape
        rot = cv2.getRotationMatrix2D((cw / 2, ch / 2), angle, 1.0)
        cos, sin = abs(rot[0, 0]), abs(rot[0, 1])
        nw, nh = int(ch * sin + cw * cos), int(ch * cos + cw * sin)
        rot[0, 2] += nw / 2 - cw / 2
        rot[1, 2] += nh / 2 - ch / 2
        crop = cv2.warpAffine(crop, rot, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=paper)
        # Trim rows/columns that are pure paper after rotation.
        ink = crop < paper - 1
        if ink.any():
            ys, xs = np.nonzero(ink)
            crop = crop[max(ys.min() - pad, 0) : ys.max() + pad + 1, max(xs.min() - pad, 0) : xs.max() + pad + 1]
    return resize_to_height(crop, height)


def resize_to_height(crop: np.ndarray, height: int = LINE_HEIGHT) -> np.ndarray:
    """Return ``crop`` scaled to ``height`` pixels, keeping its aspect ratio (width ≥ 1)."""
    ch, cw = crop.shape[:2]
    if ch == height:
        return crop
    width = max(1, round(cw * height / ch))
    interp = cv2.INTER_AREA if ch > height else cv2.INTER_CUBIC
    return cv2.resize(crop, (width, height), interpolation=interp)
