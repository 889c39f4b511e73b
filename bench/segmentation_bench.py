"""Segmentation benchmark: line precision/recall (IoU ≥ 0.5) on the validation pages and ms per page on one core.

Usage: python bench/segmentation_bench.py [--segmenter learned|rules] [--line-model F] [--model F]
                                         [--quick] [--train] [--cer] [--crop-gap] [--zoom Z]

``--segmenter`` picks the line finder: ``learned`` (the U-Net of
``models/registre-lines.onnx``, trained on the training pages only; the
default, as in ``registre digitize``) or ``rules`` (smear, ridges, watershed).

Pages are the LECTAUREP pages whose ``ocr.corpus.split_of`` is not ``train``;
``--train`` also scores every fourth training page (the pages the segmentation's
constants were tuned on), ``--cer`` adds end-to-end CER (recognizer on the
predicted lines, unmatched text counted as insertions/deletions) next to the
recognition-only CER on the ground-truth lines, greedy decoding. ``--zoom 0.5``
scores the pages as if scanned at half the resolution (pixels and ground-truth
polygons scaled; precision and recall only).

The process pins itself to one CPU core and one OpenCV thread before timing.
"""

from __future__ import annotations

import os

# One core: set before numpy / OpenCV start their thread pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine  # noqa: E402

from ocr.checkpoint import DEFAULT_MODEL  # noqa: E402
from ocr.corpus import DEFAULT_DATA, split_of  # noqa: E402
from ocr.groundtruth import find_ground_truth, read_alto  # noqa: E402
from ocr.metrics import ErrorRates  # noqa: E402
from segmentation.crop import crop_line  # noqa: E402
from segmentation.evaluate import MatchCounts, count_matches, match_lines  # noqa: E402
from segmentation.learned import DEFAULT_LINE_MODEL, line_network  # noqa: E402
from segmentation.lines import SegmentationParams, segment_page  # noqa: E402
from segmentation.loading import load_page  # noqa: E402

ALL_CORES = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()


def pin_one_core() -> str:
    """Pin this process to one CPU core and OpenCV to one thread; return which core."""
    cv2.setNumThreads(1)
    if ALL_CORES:
        core = min(ALL_CORES)
        os.sched_setaffinity(0, {core})
        return f"core {core}"
    return "unpinned"


def group_of(xml: Path) -> str:
    """Return the reporting group of a page: its volume and whether its hand was seen in training."""
    return f"{xml.parent.name} ({split_of(xml.stem)})"


def unpin_for_recognition() -> None:
    """Give recognition every core back: it is not what is timed here."""
    import torch

    if ALL_CORES:
        os.sched_setaffinity(0, ALL_CORES)
    torch.set_num_threads(max(1, len(ALL_CORES)))


def end_to_end_cer(xmls: list[Path], segmenter: str, model: Path, line_model: Path) -> dict[str, dict]:
    """Return ``registre eval`` summaries (greedy) with ground-truth lines and with our own segmentation."""
    from flows.evaluation import run_eval
    from flows.settings import Settings

    unpin_for_recognition()

    settings = Settings(use_lm=False, segmenter=segmenter, model=model, line_model=line_model)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for xml in xmls:
            image = read_alto(xml).image_path
            if image is None:
                continue
            (Path(tmp) / xml.name).symlink_to(xml)
            (Path(tmp) / image.name).symlink_to(image)
        for mode in ("gt", "auto"):
            out[mode] = run_eval(Path(tmp), settings, segmentation=mode)
    return out


def crop_gap(matched: list[tuple[str, np.ndarray, np.ndarray]], model: Path) -> tuple[ErrorRates, ErrorRates]:
    """Return greedy error rates on matched lines read from the ground-truth crops and from our own crops.

    The end-to-end gap has two parts: lines found wrongly (missed, split, merged:
    their text counts as deleted or inserted) and lines found but cropped
    differently from the ground truth's polygon. This measures the second.
    """
    from ocr.inference import Recognizer

    unpin_for_recognition()
    rec = Recognizer.load(str(model), "cpu")
    gt_rates, own_rates = ErrorRates(), ErrorRates()
    texts = [t for t, _, _ in matched]
    for text, a, b in zip(
        texts, rec.recognize([g for _, g, _ in matched]), rec.recognize([o for _, _, o in matched]), strict=True
    ):
        gt_rates.add(text, a.text)
        own_rates.add(text, b.text)
    return gt_rates, own_rates


def zoomed(data: bytes, polygons: list, zoom: float) -> tuple[bytes, list]:
    """Return a page's image rescaled by ``zoom`` (PNG bytes) and its ground-truth polygons scaled with it."""
    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    small = cv2.resize(gray, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_AREA)
    ok, png = cv2.imencode(".png", small)
    assert ok
    return png.tobytes(), [[(x * zoom, y * zoom) for x, y in poly] for poly in polygons]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA / "lectaurep" / "train")
    ap.add_argument("--quick", action="store_true", help="four validation pages, one timing run")
    ap.add_argument("--train", action="store_true", help="also score every fourth training page")
    ap.add_argument("--cer", action="store_true", help="also end-to-end CER with the recognizer (slow)")
    ap.add_argument("--crop-gap", action="store_true", help="CER of matched lines: our crops against GT crops")
    ap.add_argument("--iou", type=float, default=0.5)
    ap.add_argument("--zoom", type=float, default=1.0, help="rescale pages and ground truth (a lower-resolution scan)")
    ap.add_argument("--segmenter", choices=("learned", "rules"), default="learned", help="line finder")
    ap.add_argument("--line-model", type=Path, default=DEFAULT_LINE_MODEL, help="the learned line finder's ONNX file")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="recognizer weights (--cer, --crop-gap)")
    defaults = SegmentationParams()
    ap.add_argument("--band-threshold", type=float, default=defaults.band_threshold, help="learned: seed threshold")
    ap.add_argument("--band-floor", type=float, default=defaults.band_floor, help="learned: faint lines' seeds")
    args = ap.parse_args()
    if args.zoom != 1.0 and (args.cer or args.crop_gap):
        ap.error("--zoom scores precision and recall only (not with --cer or --crop-gap)")
    params = SegmentationParams(
        line_model=str(args.line_model) if args.segmenter == "learned" else None,
        band_threshold=args.band_threshold,
        band_floor=args.band_floor,
    )

    machine = describe_machine()  # before pinning: it counts the cores this process may use
    where = pin_one_core()
    xmls = find_ground_truth(args.data)
    val = [x for x in xmls if split_of(x.stem) != "train"]
    if args.quick:
        val = val[:: max(1, len(val) // 4)][:4]
    pages = [(x, "val") for x in val]
    if args.train:
        pages += [(x, "train") for x in [x for x in xmls if split_of(x.stem) == "train"][::4]]

    counts: dict[str, MatchCounts] = defaultdict(MatchCounts)
    load_ms, seg_ms, mpix = [], [], []
    matched: list[tuple[str, np.ndarray, np.ndarray]] = []
    for xml, kind in pages:
        gt = read_alto(xml)
        if gt.image_path is None:
            continue
        data = gt.image_path.read_bytes()
        gt_polygons = [ln.polygon for ln in gt.lines]
        if args.zoom != 1.0:
            data, gt_polygons = zoomed(data, gt_polygons, args.zoom)
        t0 = time.perf_counter()
        page = load_page(data, gt.image_path.name)
        t1 = time.perf_counter()
        seg = segment_page(page, params)
        t2 = time.perf_counter()
        pairs = match_lines([ln.polygon for ln in seg.lines], gt_polygons, args.iou)
        c = count_matches(pairs)
        if args.crop_gap and kind == "val":
            for p, g in pairs:
                if p is not None and g is not None and gt.lines[g].text:
                    gl, pl = gt.lines[g], seg.lines[p]
                    try:
                        gc = crop_line(page.pixels, gl.polygon, gl.baseline)
                        pc = crop_line(page.pixels, pl.polygon, pl.baseline)
                    except ValueError:
                        continue
                    matched.append((gl.text, gc, pc))
        group = group_of(xml) if kind == "val" else "train pages (tuning set)"
        counts[group] += c
        counts[f"ALL {kind}"] += c
        if kind == "val":
            load_ms.append(1000 * (t1 - t0))
            seg_ms.append(1000 * (t2 - t1))
            mpix.append(page.width * page.height / 1e6)
        print(
            f"  {xml.stem:28s} {kind:5s} {page.width}x{page.height} lines {c.predicted:3d}/{c.ground_truth:3d} "
            f"P {c.precision:.3f} R {c.recall:.3f} angle {seg.angle:+.2f}° {1000 * (t2 - t1):6.0f} ms",
            flush=True,
        )
    if not args.quick and args.zoom == 1.0:
        # A second timing pass over the same pages, warm: report the faster of the two.
        for i, (xml, _) in enumerate(p for p in pages if p[1] == "val"):
            page = load_page(read_alto(xml).image_path.read_bytes())
            t0 = time.perf_counter()
            segment_page(page, params)
            seg_ms[i] = min(seg_ms[i], 1000 * (time.perf_counter() - t0))

    print()
    model = f" ({line_network(args.line_model).version})" if args.segmenter == "learned" else ""
    print(f"Segmentation benchmark — {machine}; timed on one core ({where}, cv2 1 thread)")
    seeds = f"; seeds: band > {params.band_threshold}" + (
        f", else > {params.band_floor}" if params.band_floor is not None else ""
    )
    print(f"line finder: {args.segmenter}{model}{seeds if args.segmenter == 'learned' else ''}")
    print(f"IoU threshold {args.iou}; lines matched one-to-one (Hungarian)")
    if args.zoom != 1.0:
        print(f"pages and ground truth rescaled by {args.zoom} (as if scanned at {args.zoom:g}x the resolution)")
    print()
    print(f"| {'pages':38s} | {'pred':>5s} | {'gt':>5s} | {'matched':>7s} | {'precision':>9s} | {'recall':>6s} |")
    print(f"|{'-' * 40}|{'-' * 7}|{'-' * 7}|{'-' * 9}|{'-' * 11}|{'-' * 8}|")
    for group in sorted(counts, key=lambda g: (g.startswith("ALL"), g)):
        c = counts[group]
        print(
            f"| {group:38s} | {c.predicted:5d} | {c.ground_truth:5d} | {c.matched:7d} | "
            f"{c.precision:9.3f} | {c.recall:6.3f} |"
        )
    if seg_ms:
        print()
        print(f"| {'time per validation page (one core)':38s} | {'median':>8s} | {'p90':>8s} | {'max':>8s} |")
        print(f"|{'-' * 40}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
        for name, vals in (("load + validate (ms)", load_ms), ("segment_page (ms)", seg_ms)):
            q = sorted(vals)
            p90 = q[min(len(q) - 1, int(0.9 * len(q)))]
            print(f"| {name:38s} | {statistics.median(q):8.0f} | {p90:8.0f} | {q[-1]:8.0f} |")
        print(f"(pages of {min(mpix):.1f}–{max(mpix):.1f} Mpx)")
    if args.crop_gap:
        gt_rates, own_rates = crop_gap(matched, args.model)
        print()
        print(
            f"matched lines ({gt_rates.lines}), greedy CER: ground-truth crops {gt_rates.cer:.4f}, "
            f"our crops {own_rates.cer:.4f} ({100 * (own_rates.cer - gt_rates.cer):+.2f} points)"
        )
    if args.cer:
        res = end_to_end_cer([x for x, k in pages if k == "val"], args.segmenter, args.model, args.line_model)
        print()
        print("| segmentation | CER (greedy) | lines | line precision | line recall |")
        print("|---|---|---|---|---|")
        for mode, r in res.items():
            print(
                f"| {mode} | {r['cer']:.4f} | {r['lines']} | {r.get('line_precision', '-')} | "
                f"{r.get('line_recall', '-')} |"
            )
        print(f"end-to-end minus recognition-only CER: {100 * (res['auto']['cer'] - res['gt']['cer']):+.2f} points")


if __name__ == "__main__":
    main()
