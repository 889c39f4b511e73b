"""The training corpus: every transcribed page under ``../shared/data``, its hand and split, and a line cache.

A page is any image with ALTO or PAGE-XML beside it, whatever the folder. Its
*key* is its path relative to the data folder without the extension
(``cremma-mss-19/lettres-veuillot/f136``): page stems repeat across folders.
The corpus is the key's first folder, the volume its last folder, and the
hand follows the data README: a register (``FRAN_0025_NNNN``) in
random-set-1, a will (``..._will_<WILL>-<page>``) among the soldiers' wills, a
folder of cremma-mss-19, a volunteer's page of copiste-dun-jour, the volume
elsewhere.

``ocr/splits.toml`` names the validation pages. Nothing of a held-out hand
(``val-unseen``) ever trains: not the recognizer, the line finder or the LM.
"""

from __future__ import annotations

import functools
import logging
import pickle
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ocr.charset import label_text
from ocr.groundtruth import GroundTruthPage, find_ground_truth, read_ground_truth
from segmentation.crop import LINE_HEIGHT, crop_line

log = logging.getLogger(__name__)

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SPLITS_FILE = Path(__file__).resolve().parent / "splits.toml"
SPLITS = ("train", "val-seen", "val-unseen")


def hand_of(key: str) -> str:
    """Return the hand a page key belongs to (a register, a will, a folder, a volunteer, else its volume)."""
    folder, _, stem = key.rpartition("/")
    if folder.endswith("random-set-1") and (m := re.match(r"FRAN_\d+_\d+", stem)):
        return f"{folder}/{m.group(0)}"
    if folder.startswith("testaments-poilus") and (m := re.search(r"_will_(.+)-\d+$", stem)):
        return f"{folder}/{m.group(1)}"
    if folder.startswith("copiste-dun-jour") and (m := re.match(r".*?_\d{4}", stem)):
        return f"{folder}/{m.group(0)}"
    return folder


@dataclass(frozen=True)
class Splits:
    """Validation pages (``val-seen``) and held-out hands (``val-unseen``); every other page trains."""

    seen_pages: frozenset[str]
    unseen_hands: frozenset[str]

    @classmethod
    def load(cls, path: Path = SPLITS_FILE) -> Splits:
        """Return the splits declared in ``path`` (TOML: ``[val-seen] pages``, ``[val-unseen] hands``)."""
        with path.open("rb") as f:
            data = tomllib.load(f)
        return cls(
            frozenset(data.get("val-seen", {}).get("pages", [])),
            frozenset(data.get("val-unseen", {}).get("hands", [])),
        )

    def split_of_key(self, key: str) -> str:
        """Return ``train``, ``val-seen`` or ``val-unseen`` for a page key."""
        if hand_of(key) in self.unseen_hands:
            return "val-unseen"
        if key in self.seen_pages:
            return "val-seen"
        return "train"


@functools.cache
def default_splits() -> Splits:
    """Return the repository's split (``ocr/splits.toml``)."""
    return Splits.load()


@dataclass(frozen=True)
class CorpusPage:
    """A transcribed page of the data folder: its XML, key, corpus, volume, hand and split."""

    xml: Path
    key: str
    split: str

    @property
    def corpus(self) -> str:
        """Return the corpus (the key's first folder, ``lectaurep`` for ``lectaurep/train/...``)."""
        return self.key.split("/", 1)[0]

    @property
    def volume(self) -> str:
        """Return the volume (the page's folder name: ``dufour-1``, ``prudhommes-1858``, ``lettres-veuillot``)."""
        return self.key.rsplit("/", 2)[-2]

    @property
    def hand(self) -> str:
        """Return the hand the page is written in (see :func:`hand_of`)."""
        return hand_of(self.key)


def page_key(xml: Path, data_dir: Path = DEFAULT_DATA) -> str:
    """Return the key of a ground-truth file under ``data_dir``: its relative path without the extension."""
    return Path(xml).resolve().relative_to(Path(data_dir).resolve()).with_suffix("").as_posix()


def corpus_pages(data_dir: Path = DEFAULT_DATA, splits: Splits | None = None) -> list[CorpusPage]:
    """Return every page with ALTO or PAGE-XML beside its image under ``data_dir``, sorted by key."""
    splits = splits or default_splits()
    data_dir = Path(data_dir)
    pages = []
    for xml in find_ground_truth(data_dir):
        if xml.parent.name == "names":
            continue
        key = page_key(xml, data_dir)
        pages.append(CorpusPage(xml, key, splits.split_of_key(key)))
    return pages


@functools.cache
def _stem_keys(data_dir: Path) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for page in corpus_pages(data_dir):
        keys.setdefault(page.xml.stem, []).append(page.key)
    return keys


def split_of(page: str | Path, data_dir: Path = DEFAULT_DATA) -> str:
    """Return ``train``, ``val-seen`` or ``val-unseen`` for a page key, XML path, or unique page stem."""
    if isinstance(page, Path):
        try:
            return default_splits().split_of_key(page_key(page, data_dir))
        except ValueError:  # outside the data folder: judge it by its stem
            page = page.stem
    if "/" in page:
        return default_splits().split_of_key(page)
    keys = _stem_keys(Path(data_dir)) if Path(data_dir).is_dir() else {}
    found = keys.get(page, [])
    if len(found) > 1:
        raise ValueError(f"page stem {page!r} is ambiguous ({', '.join(found)}): pass its key or path")
    if found:
        return default_splits().split_of_key(found[0])
    # Not in the data folder (a test fixture, a copied page): LECTAUREP stems are unique, judge it alone.
    splits = default_splits()
    for hand in splits.unseen_hands:
        if hand.endswith("random-set-1/" + page[:14]):
            return "val-unseen"
    if any(k.endswith("/" + page) for k in splits.seen_pages):
        return "val-seen"
    return "train"


@dataclass
class LineSample:
    """A cached line crop with its text and provenance (``page`` is the page key)."""

    image: np.ndarray  # uint8, LINE_HEIGHT x W
    text: str
    page: str
    line_id: str
    volume: str
    split: str
    type: str
    corpus: str = ""
    hand: str = ""


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
    """Crop every transcribed line of every corpus page under ``data_dir`` and pickle them to ``cache``."""
    samples: list[LineSample] = []
    pages = corpus_pages(data_dir)
    for i, cp in enumerate(pages):
        page = read_ground_truth(cp.xml)
        assert page.image_path is not None
        gray = cv2.imread(str(page.image_path), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            log.warning("%s: unreadable image, skipped", page.image_path)
            continue
        texts = {ln.id: ln for ln in page.lines}
        n = 0
        for line_id, crop in page_lines(page, gray, height):
            gt = texts[line_id]
            text = label_text(gt.text) if gt.text else None
            if not text:
                continue
            samples.append(LineSample(crop, text, cp.key, line_id, cp.volume, cp.split, gt.type, cp.corpus, cp.hand))
            n += 1
        log.info("%d/%d %s (%s): %d lines", i + 1, len(pages), cp.key, cp.split, n)
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
    pages = [cp for cp in corpus_pages(data_dir) if cp.split == "train"]
    for i, cp in enumerate(pages):
        gt = read_ground_truth(cp.xml)
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
            text = label_text(line.text)
            if not text:
                continue
            samples.append(LineSample(crop, text, cp.key, line.id, cp.volume, "train", line.type, cp.corpus, cp.hand))
            n += 1
        log.info("segmented crops %d/%d %s: %d of %d lines", i + 1, len(pages), cp.key, n, len(gt.lines))
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
        rows.append((buf.tobytes(), s.text, s.page, s.line_id, s.volume, s.split, s.type, s.corpus, s.hand))
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
