"""``registre eval``: read ground-truth pages, recognize their lines, and report CER/WER and speed."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flows.settings import Settings, decoder_label, load_recognizer, segmentation_params
from ocr.groundtruth import GroundTruthError, GroundTruthPage, find_ground_truth, read_ground_truth
from ocr.metrics import ErrorRates
from segmentation.crop import crop_line

log = logging.getLogger(__name__)


class EvalError(RuntimeError):
    """An evaluation that cannot run (no pages, no model, unreadable folder)."""


@dataclass
class LineReading:
    """What the pipeline read for one line: text and confidence 0–1."""

    text: str
    confidence: float


def load_gray(path: Path) -> np.ndarray:
    """Return the page at ``path`` as uint8 grayscale, through the pipeline's validating loader."""
    from segmentation.loading import load_page

    return load_page(path.read_bytes(), path.name).pixels


def read_lines(crops: list[np.ndarray], settings: Settings) -> list[LineReading]:
    """Return the reading of each crop: recognizer log-probs, then greedy or names-LM decoding."""
    from ocr.checkpoint import ModelFileError

    if not crops:
        return []
    try:
        recognizer = load_recognizer(settings)
    except ModelFileError as exc:
        raise EvalError(str(exc)) from exc
    if not settings.use_lm:
        return [LineReading(r.text, r.confidence) for r in recognizer.recognize(crops)]
    from lm.decoder import open_decoder

    logprobs = recognizer.logprobs(crops)
    with open_decoder(recognizer.charset.labels, settings) as decoder:
        return [LineReading(d.text, d.confidence) for d in decoder.decode_batch(logprobs)]


def _write_jsonl_atomic(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _eval_gt(
    pages: list[tuple[GroundTruthPage, np.ndarray]], settings: Settings
) -> tuple[ErrorRates, list[dict], float]:
    refs = []
    for page, gray in pages:
        for line in page.lines:
            try:
                crop = crop_line(gray, line.polygon, line.baseline)
            except ValueError as exc:
                log.warning("%s %s: cannot crop (%s); counted as unread", page.id, line.id, exc)
                crop = None
            refs.append((page, line, crop))
    todo = [c for _, _, c in refs if c is not None]
    t0 = time.perf_counter()
    readings = iter(read_lines(todo, settings))
    seconds = time.perf_counter() - t0
    rates = ErrorRates()
    rows = []
    for page, line, crop in refs:
        reading = next(readings) if crop is not None else LineReading("", 0.0)
        rates.add(line.text, reading.text)
        rows.append(
            {"page": page.id, "line_id": line.id, "text": reading.text, "confidence": round(reading.confidence, 4)}
        )
    return rates, rows, seconds


def _eval_auto(
    pages: list[tuple[GroundTruthPage, np.ndarray]], settings: Settings
) -> tuple[ErrorRates, list[dict], float, dict]:
    from segmentation.evaluate import match_lines
    from segmentation.lines import segment_page
    from segmentation.types import PageImage

    params = segmentation_params(settings)
    found, gt_total, matched = 0, 0, 0
    per_page = []
    crops: list[np.ndarray] = []
    seg_seconds = 0.0
    for page, gray in pages:
        t0 = time.perf_counter()
        seg = segment_page(PageImage(gray, str(page.image_path)), params)
        seg_seconds += time.perf_counter() - t0
        pred_crops = []
        for line in seg.lines:
            try:
                pred_crops.append(crop_line(gray, line.polygon, line.baseline))
            except ValueError:
                pred_crops.append(None)
        first = len(crops)
        crops += [c for c in pred_crops if c is not None]
        index = {}
        k = first
        for i, c in enumerate(pred_crops):
            if c is not None:
                index[i] = k
                k += 1
        pairs = match_lines([ln.polygon for ln in seg.lines], [ln.polygon for ln in page.lines])
        found += len(seg.lines)
        gt_total += len(page.lines)
        matched += sum(1 for p, g in pairs if p is not None and g is not None)
        per_page.append((page, pairs, index))
    t0 = time.perf_counter()
    readings = read_lines(crops, settings)
    seconds = time.perf_counter() - t0 + seg_seconds
    rates = ErrorRates()
    rows = []
    for page, pairs, index in per_page:
        for p, g in pairs:
            hyp = readings[index[p]] if p is not None and p in index else LineReading("", 0.0)
            if g is None:
                # A predicted line with no ground truth: its text is inserted.
                rates.char_errors += len(hyp.text)
                rates.word_errors += len(hyp.text.split())
                continue
            gt_line = page.lines[g]
            rates.add(gt_line.text, hyp.text)
            rows.append(
                {"page": page.id, "line_id": gt_line.id, "text": hyp.text, "confidence": round(hyp.confidence, 4)}
            )
    seg_stats = {
        "line_precision": round(matched / found, 4) if found else 0.0,
        "line_recall": round(matched / gt_total, 4) if gt_total else 0.0,
        "predicted_lines": found,
    }
    return rates, rows, seconds, seg_stats


def load_ground_truth_pages(gt_dir: Path) -> tuple[list[tuple[GroundTruthPage, np.ndarray]], list[dict]]:
    """Return the readable ground-truth pages under ``gt_dir`` with their grayscale scans, and the skipped ones.

    A page whose XML or image cannot be read is skipped with its reason (``{"page", "reason"}``);
    :class:`EvalError` when the folder holds no readable page at all.
    """
    try:
        xmls = find_ground_truth(gt_dir)
    except FileNotFoundError as exc:
        raise EvalError(str(exc)) from exc
    if not xmls:
        raise EvalError(f"{gt_dir}: no ALTO or PAGE-XML file beside a page image")
    pages: list[tuple[GroundTruthPage, np.ndarray]] = []
    skipped = []
    from segmentation.loading import ImageError

    for xml in xmls:
        try:
            page = read_ground_truth(xml)
            if page.image_path is None:
                raise GroundTruthError(f"{xml}: no page image beside it")
            pages.append((page, load_gray(page.image_path)))
        except (GroundTruthError, ImageError, OSError) as exc:
            log.warning("skipping %s: %s", xml.name, exc)
            skipped.append({"page": xml.stem, "reason": str(exc)})
    if not pages:
        raise EvalError(f"{gt_dir}: no readable ground-truth page ({len(skipped)} skipped)")
    return pages, skipped


def run_eval(gt_dir: Path, settings: Settings, segmentation: str = "gt", predictions: Path | None = None) -> dict:
    """Return the evaluation summary of DESIGN.md (cer, wer, lines, chars, lines_per_s, seconds, ...)."""
    started = time.perf_counter()
    pages, skipped = load_ground_truth_pages(gt_dir)
    extra: dict = {}
    if segmentation == "auto":
        rates, rows, seconds, extra = _eval_auto(pages, settings)
    else:
        rates, rows, seconds = _eval_gt(pages, settings)
    if predictions:
        _write_jsonl_atomic(predictions, rows)
    return {
        "cer": round(rates.cer, 5),
        "wer": round(rates.wer, 5),
        "lines": rates.lines,
        "chars": rates.chars,
        "lines_per_s": round(rates.lines / seconds, 2) if seconds > 0 else 0.0,
        "seconds": round(time.perf_counter() - started, 3),
        "pages": len(pages),
        "segmentation": segmentation,
        "decoder": decoder_label(settings),
        **extra,
        **({"skipped_pages": skipped} if skipped else {}),
    }
