"""Segmentation benchmark per corpus: end-to-end CER, baseline P/R/F, line P/R (IoU ≥ 0.5), ms per page on one core.

Usage: python bench/segmentation_bench.py [--segmenter learned|rules] [--line-model F] [--model F]
                                         [--corpus NAME ...] [--per-group N] [--zoom Z ...]
                                         [--cer] [--train] [--quick] [--retime]

``--segmenter`` picks the line finder: ``learned`` (the U-Net of
``models/registre-lines.onnx``; the default, as in ``registre digitize``) or
``rules`` (smear, ridges, watershed).

Pages are the validation pages (``val-seen`` and ``val-unseen`` in
``ocr/splits.toml``) of every corpus under the data folder, reported per
corpus and split; ``--corpus`` keeps some corpora, ``--per-group N`` keeps N
pages per corpus and split (spread over its pages), ``--train`` adds every
fourth training page. ``--zoom 1 0.5`` scores every page at each scale, as if
scanned at that resolution (pixels, ground-truth polygons and baselines
scaled).

Figures, per corpus and scale:

* end-to-end CER (``--cer``, the headline): the recognizer (greedy) reads our
  own lines; each is matched one-to-one to a ground-truth line by their
  baselines (``segmentation.evaluate.match_baselines``: mean coverage ≥ 0.5,
  whatever the height of the transcriber's polygon), a missed line's text
  counts as deleted and an extra line's reading as inserted. Beside it the
  CER of the same pages read from their ground-truth lines, and the gap
  between the two; and, on the matched lines only, the CER
  of our crops against the ground truth's (what the polygons alone cost);
* baseline precision / recall / F in the manner of ICDAR 2017 cBAD
  (``segmentation.evaluate.baseline_counts``: tolerance a quarter of the
  interline distance), which does not depend on how loosely a transcriber drew
  a polygon, and the stricter one-to-one baseline F of kraken's metric
  (``paired_baselines``: a split or short line costs its share);
* line precision / recall at polygon IoU ≥ 0.5, and the learned finder's page
  confidence (mean, and pages flagged low).

Segmentation is timed on one pinned core with one OpenCV thread, in wall-clock
and CPU time (``--retime``: the faster of two passes); recognition, which is
not timed, gets every core.
"""

from __future__ import annotations

import os

# One core: set before numpy / OpenCV start their thread pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine  # noqa: E402

from ocr.checkpoint import DEFAULT_MODEL  # noqa: E402
from ocr.corpus import DEFAULT_DATA, CorpusPage, corpus_pages  # noqa: E402
from ocr.groundtruth import GroundTruthPage, read_ground_truth  # noqa: E402
from ocr.metrics import ErrorRates  # noqa: E402
from segmentation.crop import crop_line  # noqa: E402
from segmentation.evaluate import (  # noqa: E402
    BaselineCounts,
    MatchCounts,
    PairedBaselines,
    baseline_counts,
    count_matches,
    match_baselines,
    match_lines,
    paired_baselines,
)
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


def unpin_for_recognition() -> None:
    """Give recognition every core back: it is not what is timed here."""
    import torch

    if ALL_CORES:
        os.sched_setaffinity(0, ALL_CORES)
    torch.set_num_threads(max(1, len(ALL_CORES)))


def zoomed(data: bytes, gt: GroundTruthPage, zoom: float) -> tuple[bytes, list, list]:
    """Return a page's image rescaled by ``zoom`` (PNG bytes) and its ground-truth polygons and baselines with it."""
    polygons = [ln.polygon for ln in gt.lines]
    baselines = [ln.baseline for ln in gt.lines]
    if zoom == 1.0:
        return data, polygons, baselines
    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    small = cv2.resize(gray, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR)
    ok, png = cv2.imencode(".png", small)
    assert ok

    def scale(shapes: list) -> list:
        return [[(x * zoom, y * zoom) for x, y in shape] for shape in shapes]

    return png.tobytes(), scale(polygons), scale(baselines)


def _crop(gray: np.ndarray, polygon: list, baseline: list) -> np.ndarray | None:
    try:
        return crop_line(gray, [(round(x), round(y)) for x, y in polygon], [(round(x), round(y)) for x, y in baseline])
    except ValueError:
        return None


@dataclass
class PageResult:
    """One page at one scale: its scores, and (with ``--cer``) the crops to read and how lines were matched."""

    group: str
    counts: MatchCounts
    baselines: BaselineCounts
    paired: PairedBaselines
    confidence: float | None
    low: bool
    seg_ms: float
    seg_cpu_ms: float  # CPU time of the same: what a busy machine's other processes do not inflate
    load_ms: float
    mpix: float
    texts: list[str] = field(default_factory=list)  # ground-truth line texts
    gt_crops: list[np.ndarray | None] = field(default_factory=list)
    own_crops: list[np.ndarray | None] = field(default_factory=list)
    pairs: list[tuple[int | None, int | None]] = field(default_factory=list)


@dataclass
class GroupCer:
    """The CER figures of one group: ground-truth lines, end to end, and matched lines' crops (GT vs ours)."""

    gt_lines: ErrorRates = field(default_factory=ErrorRates)
    end_to_end: ErrorRates = field(default_factory=ErrorRates)
    matched_gt_crops: ErrorRates = field(default_factory=ErrorRates)
    matched_own_crops: ErrorRates = field(default_factory=ErrorRates)


def read_all(results: list[PageResult], model: Path) -> dict[str, GroupCer]:
    """Return the CER figures per group (and ``ALL``), reading every crop with the recognizer (greedy)."""
    from ocr.inference import Recognizer

    unpin_for_recognition()
    rec = Recognizer.load(str(model), "cpu")
    crops = [c for r in results for c in r.gt_crops + r.own_crops if c is not None]
    readings = iter(x.text for x in rec.recognize(crops))
    out: dict[str, GroupCer] = defaultdict(GroupCer)
    for r in results:
        gt_read = [next(readings) if c is not None else "" for c in r.gt_crops]
        own_read = [next(readings) if c is not None else "" for c in r.own_crops]
        for key in (r.group,) if r.group == "train pages" else (r.group, "ALL"):
            g = out[key]
            for text, hyp in zip(r.texts, gt_read, strict=True):
                g.gt_lines.add(text, hyp)
            for p, k in r.pairs:
                if k is None:  # an extra line: its reading is inserted text
                    g.end_to_end.char_errors += len(own_read[p])
                    g.end_to_end.word_errors += len(own_read[p].split())
                    continue
                g.end_to_end.add(r.texts[k], own_read[p] if p is not None else "")
                if p is not None:
                    g.matched_gt_crops.add(r.texts[k], gt_read[k])
                    g.matched_own_crops.add(r.texts[k], own_read[p])
    return out


def pick_pages(args: argparse.Namespace) -> list[tuple[CorpusPage, str]]:
    """Return the (page, kind) pairs to score: validation pages per corpus and split, and training pages if asked."""
    pages = [p for p in corpus_pages(args.data) if not args.corpus or p.corpus in args.corpus]
    groups: dict[str, list[CorpusPage]] = defaultdict(list)
    for p in pages:
        if p.split != "train":
            groups[f"{p.corpus} ({p.split})"].append(p)
    chosen: list[tuple[CorpusPage, str]] = []
    per = 1 if args.quick else args.per_group
    for _, members in sorted(groups.items()):
        if per and len(members) > per:
            members = [members[int(i)] for i in np.linspace(0, len(members) - 1, per).round()]
        chosen += [(p, "val") for p in members]
    if args.train:
        chosen += [(p, "train") for p in [p for p in pages if p.split == "train"][::4]]
    return chosen


def score_page(
    page: CorpusPage, kind: str, zoom: float, params: SegmentationParams, want_crops: bool
) -> tuple[PageResult, str]:
    """Return one page's result at ``zoom`` and a one-line summary."""
    gt = read_ground_truth(page.xml)
    data, gt_polygons, gt_baselines = zoomed(gt.image_path.read_bytes(), gt, zoom)
    t0 = time.perf_counter()
    image = load_page(data, gt.image_path.name)
    t1, c1 = time.perf_counter(), time.process_time()
    seg = segment_page(image, params)
    t2, c2 = time.perf_counter(), time.process_time()
    pairs = match_lines([ln.polygon for ln in seg.lines], gt_polygons)
    counts = count_matches(pairs)
    bl = baseline_counts([ln.baseline for ln in seg.lines], gt_baselines)
    paired = paired_baselines([ln.baseline for ln in seg.lines], gt_baselines)
    group = f"{page.corpus} ({page.split})" if kind == "val" else "train pages"
    r = PageResult(
        group,
        counts,
        bl,
        paired,
        seg.confidence,
        seg.low_confidence,
        1000 * (t2 - t1),
        1000 * (c2 - c1),
        1000 * (t1 - t0),
        image.width * image.height / 1e6,
    )
    if want_crops:
        r.texts = [ln.text for ln in gt.lines]
        r.gt_crops = [_crop(image.pixels, p, b) for p, b in zip(gt_polygons, gt_baselines, strict=True)]
        r.own_crops = [_crop(image.pixels, ln.polygon, ln.baseline) for ln in seg.lines]
        r.pairs = match_baselines([ln.baseline for ln in seg.lines], gt_baselines)
    conf = f"conf {seg.confidence:.2f}{' LOW' if seg.low_confidence else ''}" if seg.confidence is not None else ""
    line = (
        f"  {page.key[-44:]:44s} {zoom:g}x {image.width}x{image.height} lines {counts.predicted:3d}/"
        f"{counts.ground_truth:3d} P {counts.precision:.3f} R {counts.recall:.3f} BL-F {bl.f1:.3f} {conf} "
        f"{r.seg_ms:6.0f} ms"
    )
    return r, line


def report(zoom: float, results: list[PageResult], cer: dict[str, GroupCer] | None) -> None:
    """Print the tables of one scale."""
    by_group: dict[str, list[PageResult]] = defaultdict(list)
    for r in results:
        by_group[r.group].append(r)
        if r.group != "train pages":
            by_group["ALL"].append(r)
    print()
    print(f"### scale {zoom:g}x" + (" (pages and ground truth rescaled)" if zoom != 1.0 else ""))
    print()
    head = "| pages | n | gt lines | IoU P | IoU R | baseline P | baseline R | baseline F | 1:1 BL F | conf (low) |"
    rule = "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    if cer:
        head += " CER GT lines | CER end-to-end | gap (points) |"
        rule += "--:|--:|--:|"
    print(head)
    print(rule)
    for group in sorted(by_group, key=lambda g: (g == "ALL", g == "train pages", g)):
        rs = by_group[group]
        c = sum((r.counts for r in rs), MatchCounts())
        b = sum((r.baselines for r in rs), BaselineCounts())
        one = sum((r.paired for r in rs), PairedBaselines())
        confs = [r.confidence for r in rs if r.confidence is not None]
        conf = f"{statistics.mean(confs):.2f} ({sum(r.low for r in rs)})" if confs else "-"
        row = (
            f"| {group} | {len(rs)} | {c.ground_truth} | {c.precision:.3f} | {c.recall:.3f} | "
            f"{b.precision:.3f} | {b.recall:.3f} | {b.f1:.3f} | {one.f1:.3f} | {conf} |"
        )
        if cer and group in cer:
            g = cer[group]
            gap = 100 * (g.end_to_end.cer - g.gt_lines.cer)
            row += f" {g.gt_lines.cer:.4f} | {g.end_to_end.cer:.4f} | {gap:+.2f} |"
        print(row)
    val = by_group.get("ALL", [])
    if val:
        print()
        print("| time per validation page (one core) | median | p90 | max |")
        print("|---|--:|--:|--:|")
        timings = (
            ("load + validate (ms)", [r.load_ms for r in val]),
            ("segment_page (ms)", [r.seg_ms for r in val]),
            ("segment_page, CPU time (ms)", [r.seg_cpu_ms for r in val]),
        )
        for name, vals in timings:
            q = sorted(vals)
            p90 = q[min(len(q) - 1, int(0.9 * len(q)))]
            print(f"| {name} | {statistics.median(q):.0f} | {p90:.0f} | {q[-1]:.0f} |")
        mp = [r.mpix for r in val]
        print(f"(pages of {min(mp):.1f}–{max(mp):.1f} Mpx)")
    if cer and "ALL" in cer:
        g = cer["ALL"]
        print()
        print(
            f"matched lines ({g.matched_gt_crops.lines}), greedy CER: ground-truth crops {g.matched_gt_crops.cer:.4f}, "
            f"our crops {g.matched_own_crops.cer:.4f} "
            f"({100 * (g.matched_own_crops.cer - g.matched_gt_crops.cer):+.2f} points)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the data folder (every corpus under it)")
    ap.add_argument("--corpus", nargs="+", default=[], help="only these corpora (first folder of a page key)")
    ap.add_argument("--per-group", type=int, default=0, help="at most N pages per corpus and split (0: all)")
    ap.add_argument("--quick", action="store_true", help="one page per corpus and split")
    ap.add_argument("--train", action="store_true", help="also score every fourth training page")
    ap.add_argument("--cer", action="store_true", help="also end-to-end CER with the recognizer (slow)")
    ap.add_argument("--crop-gap", action="store_true", help=argparse.SUPPRESS)  # implied by --cer
    ap.add_argument("--retime", action="store_true", help="time each page twice, keep the faster")
    ap.add_argument("--zoom", type=float, nargs="+", default=[1.0], help="scales to score the pages at (0.5: half)")
    ap.add_argument("--segmenter", choices=("learned", "rules"), default="learned", help="line finder")
    ap.add_argument("--line-model", type=Path, default=DEFAULT_LINE_MODEL, help="the learned line finder's ONNX file")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="recognizer weights (--cer)")
    defaults = SegmentationParams()
    ap.add_argument("--band-threshold", type=float, default=defaults.band_threshold, help="learned: seed threshold")
    ap.add_argument("--band-floor", type=float, default=defaults.band_floor, help="learned: faint lines' seeds")
    args = ap.parse_args()
    args.cer = args.cer or args.crop_gap
    params = SegmentationParams(
        line_model=str(args.line_model) if args.segmenter == "learned" else None,
        band_threshold=args.band_threshold,
        band_floor=args.band_floor,
    )

    machine = describe_machine()  # before pinning: it counts the cores this process may use
    where = pin_one_core()
    pages = pick_pages(args)
    per_zoom: dict[float, list[PageResult]] = {}
    for zoom in args.zoom:
        results = []
        for page, kind in pages:
            r, line = score_page(page, kind, zoom, params, args.cer)
            if args.retime:
                again = score_page(page, kind, zoom, params, False)[0]
                r.seg_ms, r.seg_cpu_ms = min(r.seg_ms, again.seg_ms), min(r.seg_cpu_ms, again.seg_cpu_ms)
            results.append(r)
            print(line, flush=True)
        per_zoom[zoom] = results

    print()
    model = f" ({line_network(args.line_model).version})" if args.segmenter == "learned" else ""
    print(f"Segmentation benchmark — {machine}; segmentation timed on one core ({where}, cv2 1 thread)")
    seeds = f"; seeds: band > {params.band_threshold}" + (
        f", else > {params.band_floor}" if params.band_floor is not None else ""
    )
    print(f"line finder: {args.segmenter}{model}{seeds if args.segmenter == 'learned' else ''}")
    print(f"data: {args.data}; {sum(k == 'val' for _, k in pages)} validation pages")
    print("lines matched one-to-one at polygon IoU ≥ 0.5 (Hungarian); baselines scored as in cBAD (tolerance 0.25 x")
    print("interline distance; 1:1: lines paired one-to-one, as kraken scores them); confidence: the learned")
    print("finder's page confidence (pages flagged low)")
    if args.cer:
        print(f"CER: greedy decoding, recognizer {args.model.name}; end-to-end: lines matched by baseline, missed")
        print("lines' text counted as deleted, extra lines' readings as inserted; gap = end-to-end minus GT-line CER")
    for zoom, results in per_zoom.items():
        report(zoom, results, read_all(results, args.model) if args.cer else None)


if __name__ == "__main__":
    main()
