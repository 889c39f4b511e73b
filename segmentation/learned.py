"""Run the learned line finder (``ocr.linefinder``'s U-Net, shipped as ONNX) with OpenCV's DNN module.

The network marks each line's core band and the region its ink fills, at a
fixed share of the scan's pixels (``scale`` in the model's JSON; ``predict``'s
``zoom`` rescales a page whose lines are smaller or larger than those it was
trained on, see ``segmentation.learned_rows.network_zoom``). Here one line
is seeded per band component and grown over the region by a watershed on the
band probability (so two touching lines part where the band fades between
them); every ink pixel of the page then belongs to the line whose basin holds
it, or to none (noise, rules, stamps, marks outside any line).

The network file is read once per process and kept (a page costs one forward
pass, ~0.6 s on one core for a 13-Mpx scan).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from skimage.segmentation import watershed

#: Where ``registre train-lines`` writes the network and where the segmenter looks for it.
DEFAULT_LINE_MODEL = Path(__file__).resolve().parent.parent / "models" / "registre-lines.onnx"


class LineModelError(RuntimeError):
    """The line-finder network is missing or cannot be read."""


@dataclass
class LineMaps:
    """The network's probability maps of one page and their scale (map pixels per working pixel)."""

    band: np.ndarray  # float32, H x W
    region: np.ndarray  # float32, H x W
    scale: float


@dataclass
class LineNetwork:
    """An ONNX line finder loaded in OpenCV, with the settings it was trained at."""

    net: cv2.dnn.Net
    scale: float  # network pixels per scan pixel
    multiple: int  # input sides are padded to a multiple of this
    version: str
    lock: threading.Lock

    @classmethod
    def load(cls, path: str | Path = DEFAULT_LINE_MODEL) -> LineNetwork:
        """Return the network at ``path`` (an ``.onnx`` file with its ``.json`` beside it)."""
        path = Path(path)
        meta_path = path.with_suffix(".json")
        if not path.exists() or not meta_path.exists():
            raise LineModelError(f"{path}: no line-finder network (run `registre train-lines`)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            net = cv2.dnn.readNetFromONNX(str(path))
        except (OSError, ValueError, cv2.error) as exc:
            raise LineModelError(f"{path}: cannot read the line-finder network ({exc})") from exc
        version = str(meta.get("version") or path.stem)
        return cls(net, float(meta["scale"]), int(meta["multiple"]), version, threading.Lock())

    def predict(self, gray: np.ndarray, work_scale: float, zoom: float = 1.0) -> LineMaps:
        """Return the band and region probabilities of a working-frame page (``work_scale``: pixels per scan pixel).

        ``zoom`` multiplies the network's own scale: a page whose lines are
        smaller or larger than those it was trained on is shown to it rescaled.
        """
        f = self.scale * zoom / work_scale
        small = cv2.resize(gray, None, fx=f, fy=f, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
        h, w = small.shape
        m = self.multiple
        ph, pw = -(-h // m) * m, -(-w // m) * m
        padded = np.full((ph, pw), 255, np.uint8)
        padded[:h, :w] = small
        blob = (1.0 - padded.astype(np.float32) / 255.0)[None, None]
        with self.lock:  # an OpenCV Net is not safe to run from two threads at once
            self.net.setInput(blob)
            out = self.net.forward()[0, :, :h, :w]
        prob = 1.0 / (1.0 + np.exp(-out))
        return LineMaps(prob[0], prob[1], h / gray.shape[0])


_CACHE: dict[Path, LineNetwork] = {}
_CACHE_LOCK = threading.Lock()


def line_network(path: str | Path = DEFAULT_LINE_MODEL) -> LineNetwork:
    """Return the network at ``path``, loaded once per process."""
    key = Path(path).resolve()
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = LineNetwork.load(key)
        return _CACHE[key]


def _band_seeds(band: np.ndarray, min_area: int) -> tuple[int, np.ndarray]:
    """Return (count + 1, int32 labels) of the components of ``band`` with at least ``min_area`` pixels."""
    n, seeds, stats, _ = cv2.connectedComponentsWithStats(band.astype(np.uint8), connectivity=8)
    small = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] < min_area) + 1
    if len(small):
        seeds[np.isin(seeds, small)] = 0
    return n, seeds


def line_basins(
    maps: LineMaps,
    band_threshold: float = 0.5,
    region_threshold: float = 0.5,
    min_area: int = 4,
    band_floor: float | None = None,
) -> np.ndarray:
    """Return an int32 label map (map pixels): 0 outside lines, ``k`` in the basin of line ``k`` (1-based).

    Seeds are the band's connected components of at least ``min_area`` pixels;
    each grows over the region (and its own band) by a watershed on the band
    probability, highest first. With ``band_floor`` (below ``band_threshold``),
    a component of the band above the floor that holds no seed is a seed too:
    the high threshold splits lines the network joins, and a faint line it is
    less sure of is still found.
    """
    n, seeds = _band_seeds(maps.band > band_threshold, min_area)
    if band_floor is not None and band_floor < band_threshold:
        _, low = _band_seeds(maps.band > band_floor, min_area)
        seeded = np.unique(low[(seeds > 0) & (low > 0)])
        faint = (low > 0) & ~np.isin(low, seeded)
        seeds[faint] = low[faint] + n
    mask = (maps.region > region_threshold) | (seeds > 0)
    basins = watershed(-maps.band, markers=seeds, mask=mask)
    return basins.astype(np.int32)
