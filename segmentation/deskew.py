"""Deskew: estimate the page angle from its rules and text rows; map points between scan and working frame.

Angles are in degrees and follow OpenCV's convention (positive turns the image
counter-clockwise on screen). ``estimate_skew`` returns the angle to rotate the
page by so that its rules are level: positive when the content slopes down to
the right in the scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

#: Largest skew searched, in degrees; register scans are placed by hand on a copy stand.
MAX_SKEW = 5.0


def _profile_score(mask: np.ndarray, angle: float) -> float:
    """Return how sharply ``mask`` rotated by ``angle`` concentrates into rows and columns (higher = level)."""
    h, w = mask.shape
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    turned = cv2.warpAffine(mask, rot, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    rows = turned.sum(axis=1, dtype=np.float64)
    cols = turned.sum(axis=0, dtype=np.float64)
    # Rules and text rows give peaked profiles when level; the sum of squares
    # rewards peaks (Postl's projection-profile criterion, both axes at once).
    return float(np.dot(rows, rows) + np.dot(cols, cols))


def _best_angle(mask: np.ndarray, angles: np.ndarray) -> float:
    scores = np.array([_profile_score(mask, float(a)) for a in angles])
    i = int(np.argmax(scores))
    if 0 < i < len(angles) - 1:
        # Parabolic interpolation between the grid's neighbours.
        s0, s1, s2 = scores[i - 1], scores[i], scores[i + 1]
        den = s0 - 2 * s1 + s2
        if den < 0:
            step = float(angles[1] - angles[0])
            return float(angles[i] + 0.5 * step * (s0 - s2) / den)
    return float(angles[i])


def estimate_skew(ink: np.ndarray, max_angle: float = MAX_SKEW) -> float:
    """Return the page skew of a boolean ink mask in degrees (rotate by it to level the rules).

    Projection profiles of the mask are scored over a coarse grid of angles on a
    small copy, then refined around the best one at twice the resolution.
    """
    if ink.ndim != 2 or not ink.any():
        return 0.0
    h, w = ink.shape
    src = ink.astype(np.float32)
    coarse_scale = min(1.0, 500 / max(h, w))
    fine_scale = min(1.0, 1000 / max(h, w))
    small = cv2.resize(src, None, fx=coarse_scale, fy=coarse_scale, interpolation=cv2.INTER_AREA)
    angle = _best_angle(small, np.arange(-max_angle, max_angle + 1e-9, 0.25))
    fine = cv2.resize(src, None, fx=fine_scale, fy=fine_scale, interpolation=cv2.INTER_AREA)
    angle = _best_angle(fine, np.arange(angle - 0.3, angle + 0.3 + 1e-9, 0.05))
    return float(np.clip(angle, -max_angle, max_angle))


@dataclass(frozen=True)
class PageTransform:
    """Affine map from original-scan pixels to the working frame (scaled, then rotated about the centre)."""

    matrix: np.ndarray  # 2x3 float64, original -> working
    size: tuple[int, int]  # working frame (width, height) in pixels
    scale: float  # working pixels per original pixel
    angle: float  # degrees of rotation applied (OpenCV convention)

    @property
    def inverse(self) -> np.ndarray:
        """Return the 2x3 matrix from working-frame to original-scan pixels."""
        return cv2.invertAffineTransform(self.matrix)

    def to_working(self, points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        """Return (N, 2) float points mapped from original-scan pixels into the working frame."""
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        return pts @ self.matrix[:, :2].T + self.matrix[:, 2]

    def to_original(self, points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        """Return (N, 2) float points mapped from the working frame back to original-scan pixels."""
        inv = self.inverse
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        return pts @ inv[:, :2].T + inv[:, 2]

    def then(self, other: PageTransform) -> PageTransform:
        """Return the transform applying ``self`` first, then ``other`` (whose input is self's frame)."""
        m = np.vstack([other.matrix, [0, 0, 1]]) @ np.vstack([self.matrix, [0, 0, 1]])
        return PageTransform(m[:2], other.size, self.scale * other.scale, self.angle + other.angle)

    def apply(self, image: np.ndarray, border: int | bool = 255, interpolation: int | None = None) -> np.ndarray:
        """Return ``image`` (original-scan pixels) resampled into the working frame."""
        if interpolation is None:
            interpolation = cv2.INTER_AREA if self.scale < 1 and self.angle == 0 else cv2.INTER_LINEAR
        if self.angle == 0:
            w, h = self.size
            if image.dtype == bool:
                out = cv2.resize(image.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
                return out.astype(bool)
            return cv2.resize(image, (w, h), interpolation=interpolation)
        if image.dtype == bool:
            out = cv2.warpAffine(image.astype(np.uint8), self.matrix, self.size, flags=cv2.INTER_NEAREST, borderValue=0)
            return out.astype(bool)
        return cv2.warpAffine(image, self.matrix, self.size, flags=interpolation, borderValue=int(border))


def page_transform(shape: tuple[int, int], scale: float, angle: float = 0.0) -> PageTransform:
    """Return the transform that scales an original page of ``shape`` (h, w) and rotates it by ``angle``.

    The working frame grows to hold the rotated page whole, so no corner is cut.
    """
    h, w = shape
    sw, sh = w * scale, h * scale
    if angle == 0:
        size = (max(1, round(sw)), max(1, round(sh)))
        m = np.array([[size[0] / w, 0, 0], [0, size[1] / h, 0]], np.float64)
        return PageTransform(m, size, scale, 0.0)
    t = np.radians(angle)
    cos, sin = abs(np.cos(t)), abs(np.sin(t))
    nw, nh = int(np.ceil(sw * cos + sh * sin)), int(np.ceil(sw * sin + sh * cos))
    rot = cv2.getRotationMatrix2D((sw / 2, sh / 2), angle, 1.0)
    rot[0, 2] += nw / 2 - sw / 2
    rot[1, 2] += nh / 2 - sh / 2
    m = rot @ np.array([[scale, 0, 0], [0, scale, 0], [0, 0, 1]], np.float64)
    return PageTransform(m, (nw, nh), scale, float(angle))


def rotate_mask(mask: np.ndarray, angle: float) -> tuple[np.ndarray, PageTransform]:
    """Return a boolean mask rotated by ``angle`` degrees on an enlarged canvas, and the transform used."""
    tf = page_transform(mask.shape[:2], 1.0, angle)
    turned = cv2.warpAffine(mask.astype(np.uint8) * 255, tf.matrix, tf.size, flags=cv2.INTER_LINEAR, borderValue=0)
    return turned > 127, tf


def rotate(image: np.ndarray, angle: float, border: int = 255) -> tuple[np.ndarray, PageTransform]:
    """Return ``image`` rotated by ``angle`` degrees on an enlarged canvas, and the transform used."""
    tf = page_transform(image.shape[:2], 1.0, angle)
    return tf.apply(image, border=border, interpolation=cv2.INTER_LINEAR), tf


def deskew(gray: np.ndarray, ink: np.ndarray, max_angle: float = MAX_SKEW) -> tuple[np.ndarray, PageTransform]:
    """Return the page levelled by its estimated skew, and the transform back to the scan."""
    angle = estimate_skew(ink, max_angle)
    if abs(angle) < 0.05:
        angle = 0.0
    tf = page_transform(gray.shape[:2], 1.0, angle)
    return tf.apply(gray, border=255, interpolation=cv2.INTER_LINEAR), tf
