"""The LECTAUREP training corpus: which pages train, which validate, and a cache of line crops.

Validation pages never enter training. Two kinds are held out:

* seen hands: the last pages of dufour-1 and riant-4, and the second page of two
  random-set-1 registers whose first page trains;
* unseen hands: both pages of two random-set-1 registers (one notary's clerk
  each), so no line of that hand is ever trained on.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ocr.groundtruth import GroundTruthPage, find_ground_truth, read_alto
from segmentation.crop import LINE_HEIGHT, crop_line

log = logging.getLogger(__name__)

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

UNSEEN_HAND_REGISTERS = ("FRAN_0025_0934", "FRAN_0025_0989")
SEEN_HAND_VALIDATION = (
    # dufour-1: the last 8 pages of the volume.
    "DAFANCH96_048MIC07691_L-1",
    "DAFANCH96_048MIC07692_L-0",
    "DAFANCH96_048MIC07692_L-1",
    "DAFANCH96_048MIC07693_L-0",
    "DAFANCH96_048MIC07693_L-1",
    "DAFANCH96_048MIC07694_L-0",
    "DAFANCH96_048MIC07694_L-1",
    "DAFANCH96_048MIC07695_L-0",
    # riant-4: the last 3 pages.
    "DAFANCH96_048MIC06491_L-0",
    "DAFANCH96_048MIC06491_L-1",
    "DAFANCH96_048MIC06492_L-0",
    # random-set-1: second page of two registers whose first page trains.
    "FRAN_0025_0422_L-1",
    "FRAN_0025_0434_L-1",
)


def split_of(page_id: str) -> str:
    """Return ``train``, ``val-seen`` or ``val-unseen`` for a LECTAUREP page id."""
    if page_id.startswith(UNSEEN_HAND_REGISTERS):
        return "val-unseen"
    if page_id in SEEN_HAND_VALIDATION:
        return "val-seen"
    return "train"


@dataclass
class LineSample:
    """A cached line crop with its text and provenance."""

    image: np.ndarray  # uint8, LINE_HEIGHT x W
    text: str
    page: str
    line_id: str
    volume: str
    split: str
    type: str


def page_lines(page: GroundTruthPage, gray: np.ndarray, height: int = LINE_HEIGHT) -> list[tuple[str, np.ndarray]]:
    """Return ``(line_id, crop)`` for every line of ``page`` with a usable polygon, on a grayscale scan."""
    out = []
    for line in page.lines:
        try:
            out.append((line.id, crop_line(gray, line.polygon, line.baseline, height)))
        except ValueError as exc:
            log.warning("%s %s: skipped (%s)", page.id, line.id, exc)
    return out


def build_line_cache(data_dir: Path, cache: Path, height: int = LINE_HEIGHT) -> list[LineSample]:
    """Crop every transcribed line of ``data_dir/lectaurep/train`` and pickle them to ``cache``."""
    samples: list[LineSample] = []
    root = data_dir / "lectaurep" / "train"
    for xml in find_ground_truth(root):
        page = read_alto(xml)
        assert page.image_path is not None
        gray = cv2.imread(str(page.image_path), cv2.IMREAD_GRAYSCALE)
        texts = {ln.id: ln for ln in page.lines}
        split = split_of(page.id)
        for line_id, crop in page_lines(page, gray, height):
            gt = texts[line_id]
            if not gt.text:
                continue
            samples.append(LineSample(crop, gt.text, page.id, line_id, xml.parent.name, split, gt.type))
        log.info("%s: %d lines", page.id, len(page.lines))
    write_pickle(samples, cache)
    return samples


def build_segmented_cache(
    data_dir: Path, cache: Path, line_model: Path | None = None, height: int = LINE_HEIGHT
) -> list[LineSample]:
    """Crop the training pages' lines where the learned segmenter finds them, and pickle them to ``cache``.

    Each line the segmenter finds that matches a transcribed ground-truth line
    (polygon IoU >= 0.5, as ``registre eval`` matches them) is cropped from
    its predicted polygon and baseline and labelled with that line's text and
    id. Training on these as well as on the ground-truth crops teaches the
    recognizer the crops it reads in production. Validation pages are skipped.
    """
    from segmentation.evaluate import match_lines
    from segmentation.learned import DEFAULT_LINE_MODEL
    from segmentation.lines import SegmentationParams, segment_page
    from segmentation.loading import load_page

    params = SegmentationParams(line_model=str(line_model or DEFAULT_LINE_MODEL))
    samples: list[LineSample] = []
    xmls = [x for x in find_ground_truth(data_dir / "lectaurep" / "train") if split_of(x.stem) == "train"]
    for i, xml in enumerate(xmls):
        gt = read_alto(xml)
        assert gt.image_path is not None
        page = load_page(gt.image_path.read_bytes(), gt.image_path.name)
        found = segment_page(page, params).lines
        pairs = match_lines([ln.polygon for ln in found], [ln.polygon for ln in gt.lines])
        n = 0
        for p, g in pairs:
            if p is None or g is None or not gt.lines[g].text:
                continue
            try:
                crop = crop_line(page.pixels, found[p].polygon, found[p].baseline, height)
            except ValueError:
                continue
            line = gt.lines[g]
            samples.append(LineSample(crop, line.text, gt.id, line.id, xml.parent.name, "train", line.type))
            n += 1
        log.info("segmented crops %d/%d %s: %d of %d lines", i + 1, len(xmls), gt.id, n, len(gt.lines))
    write_pickle(samples, cache)
    return samples


def load_segmented_cache(data_dir: Path, cache: Path, line_model: Path | None = None) -> list[LineSample]:
    """Return the segmented training crops of :func:`build_segmented_cache`, building them when missing."""
    if cache.exists():
        with cache.open("rb") as f:
            return pickle.load(f)
    return build_segmented_cache(data_dir, cache, line_model)


def write_pickle(obj: object, path: Path) -> None:
    """Pickle ``obj`` to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)


#: Split of the pre-rendered synthetic lines a packed cache may carry (see :func:`pack_lines`).
SYNTHETIC = "synthetic"
PACKED_FORMAT = "registre-lines/webp-1"


def pack_lines(samples: Sequence[LineSample], path: Path, quality: int = 85) -> int:
    """Write ``samples`` to ``path`` with each crop WebP-encoded; return the file's size in bytes.

    A compact copy of the line cache for a machine that has no ``../shared``
    (a rented GPU): lossy WebP at quality 85 is a sixth of the raw crops' size
    and differs from them by 1.4 grey levels on average, less than the noise
    that training augmentation adds.
    """
    rows = []
    for s in samples:
        ok, buf = cv2.imencode(".webp", s.image, [cv2.IMWRITE_WEBP_QUALITY, quality])
        if not ok:
            raise ValueError(f"{s.page}/{s.line_id}: WebP encoding failed")
        rows.append((buf.tobytes(), s.text, s.page, s.line_id, s.volume, s.split, s.type))
    write_pickle({"format": PACKED_FORMAT, "lines": rows}, path)
    return path.stat().st_size


def _unpack(data: dict) -> list[LineSample]:
    if data.get("format") != PACKED_FORMAT:
        raise ValueError(f"unknown line-cache format {data.get('format')!r}")
    out = []
    for buf, *meta in data["lines"]:
        img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_GRAYSCALE)
        out.append(LineSample(img, *meta))
    return out


def load_line_cache(data_dir: Path, cache: Path, height: int = LINE_HEIGHT) -> list[LineSample]:
    """Return the cached line crops (plain or packed), building the cache first when it is missing."""
    if cache.exists():
        with cache.open("rb") as f:
            data = pickle.load(f)
        return _unpack(data) if isinstance(data, dict) else data
    return build_line_cache(data_dir, cache, height)
