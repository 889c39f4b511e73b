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
) -> tuple[ErrorRates, list[dict], float, dict[str, int]]:
    """Return the error rates, prediction rows, reading seconds and line counts (found, gt_total, matched)."""
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
    return rates, rows, seconds, {"found": found, "gt_total": gt_total, "matched": matched}


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


def _adapted_groups(
    gt_dir: Path, pages: list[tuple[GroundTruthPage, np.ndarray]], settings: Settings
) -> tuple[list[tuple[list, Settings]], list[dict], str]:
    """Return the pages grouped by register (folder), each with the settings of its adapted model (``--adapt``).

    Each register's scans are read and the model adapts to its readings as ``registre digitize --adapt``
    does (the ground-truth text is never used). Also returns the registers' summaries and the work folder
    holding the weights (the caller removes it).
    """
    from flows.adaptation import group_by_register, model_for_register
    from flows.records import assign_page_ids
    from flows.storage import open_storage
    from ocr.checkpoint import ModelFileError, load_model

    try:
        base_version = load_model(settings.model)[2]
    except ModelFileError as exc:
        raise EvalError(str(exc)) from exc
    store = open_storage(str(gt_dir))
    key_of = {id(page): page.image_path.relative_to(gt_dir).as_posix() for page, _ in pages}
    ids = assign_page_ids(key_of.values())
    workdir = tempfile.mkdtemp(prefix="registre-adapted-")
    groups, registers = [], []
    for register, keys in group_by_register(sorted(key_of.values())).items():
        model = model_for_register(register, keys, ids, store, settings, Path(workdir), base_version)
        registers.append(model.to_dict())
        members = set(keys)
        group = [(page, gray) for page, gray in pages if key_of[id(page)] in members]
        groups.append((group, settings.model_copy(update={"model": Path(model.model)})))
    return groups, registers, workdir


def run_eval(gt_dir: Path, settings: Settings, segmentation: str = "gt", predictions: Path | None = None) -> dict:
    """Return the evaluation summary of DESIGN.md (cer, wer, lines, chars, lines_per_s, seconds, ...).

    With ``settings.adapt`` each register (folder) of ``gt_dir`` is read by the model adapted to its own
    scans, as ``registre digitize --adapt`` reads it; ``adapt_seconds`` and ``registers`` say how.
    """
    import shutil

    started = time.perf_counter()
    pages, skipped = load_ground_truth_pages(gt_dir)
    extra: dict = {}
    groups, workdir = [(pages, settings)], None
    if settings.adapt:
        adapt_started = time.perf_counter()
        groups, extra["registers"], workdir = _adapted_groups(gt_dir, pages, settings)
        extra["adapt_seconds"] = round(time.perf_counter() - adapt_started, 1)
    try:
        rates, rows, seconds, counts = ErrorRates(), [], 0.0, {"found": 0, "gt_total": 0, "matched": 0}
        for group, group_settings in groups:
            if segmentation == "auto":
                group_rates, group_rows, group_seconds, group_counts = _eval_auto(group, group_settings)
                counts = {k: counts[k] + group_counts[k] for k in counts}
            else:
                group_rates, group_rows, group_seconds = _eval_gt(group, group_settings)
            rates += group_rates
            rows += group_rows
            seconds += group_seconds
    finally:
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if segmentation == "auto":
        found, matched = counts["found"], counts["matched"]
        extra["line_precision"] = round(matched / found, 4) if found else 0.0
        extra["line_recall"] = round(matched / counts["gt_total"], 4) if counts["gt_total"] else 0.0
        extra["predicted_lines"] = found
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
