"""Recognizer benchmark: CER/WER per corpus on validation lines (seen vs unseen hands), Tesseract beside it, lines/s.

Usage: python bench/recognizer_bench.py [--model models/registre-crnn.pt] [--lm] [--tesseract] [--quick] [--reread]
       python bench/recognizer_bench.py --device cuda   # GPU lines/s for a range of batch sizes

Lines are the ground-truth crops of the validation pages and held-out hands of
ocr/splits.toml (never trained on), grouped by split, split and corpus, split
and volume. Decoding is greedy; ``--lm`` adds the default decoder of
``registre digitize`` (beam search with the names LM and its tuned settings;
the decoders' variants are benchmarked by bench/lm_bench.py); ``--reread`` reads unsure
lines again squeezed and stretched, as ``registre digitize --reread`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine  # noqa: E402

from lm.decoder import open_decoder  # noqa: E402
from ocr.corpus import DEFAULT_DATA, LineSample, load_line_cache  # noqa: E402
from ocr.inference import REREAD_SCALES, Recognizer, greedy_decode  # noqa: E402
from ocr.metrics import ErrorRates  # noqa: E402


def group_keys(s: LineSample) -> list[str]:
    """Return the table rows a validation line counts in: its split, split and corpus, split and volume, all."""
    keys = [s.split, f"{s.split}/{s.corpus}", f"{s.split}/{s.corpus}/{s.volume}", "all"]
    return list(dict.fromkeys(keys))


def tesseract_read(crops: list[np.ndarray]) -> list[str]:
    """Return Tesseract 5 (`fra`, single-line mode) readings of the crops, upscaled to ~x-height it expects.

    One Tesseract process reads them all from a list file (its pages come back
    separated by form feeds), so the model is loaded once, not once per line.
    """
    if not crops:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, crop in enumerate(crops):
            path = Path(tmp) / f"{i:06d}.png"
            big = cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(path), cv2.copyMakeBorder(big, 10, 10, 10, 10, cv2.BORDER_REPLICATE))
            paths.append(str(path))
        listing = Path(tmp) / "lines.txt"
        listing.write_text("\n".join(paths) + "\n")
        res = subprocess.run(
            ["tesseract", str(listing), "-", "-l", "fra", "--psm", "7"],
            capture_output=True,
            text=True,
            timeout=60 + 5 * len(crops),
            env={**os.environ, "OMP_THREAD_LIMIT": "1"},
            check=True,
        )
    out = [t.strip() for t in res.stdout.split("\f")]
    if len(out) != len(crops):
        raise RuntimeError(f"tesseract returned {len(out)} readings for {len(crops)} lines")
    return out


def tesseract_cached(samples: list, cache: Path) -> list[str]:
    """Return Tesseract's readings of the samples' crops, reusing ``cache`` (JSON keyed by page/line id).

    Tesseract's readings do not change with our model, and reading ~2,000 lines
    one process each takes minutes, so they are kept between runs.
    """
    known: dict[str, str] = json.loads(cache.read_text()) if cache.exists() else {}
    keys = [f"{s.page}/{s.line_id}" for s in samples]
    todo = [i for i, k in enumerate(keys) if k not in known]
    for i, text in zip(todo, tesseract_read([samples[i].image for i in todo]), strict=True):
        known[keys[i]] = text
    if todo:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(known, ensure_ascii=False))
        tmp.replace(cache)
    return [known[k] for k in keys]


def throughput(recognizer: Recognizer, crops: list[np.ndarray], threads: int, repeats: int = 2) -> float:
    """Return recognition lines/s (log-probs + greedy decode) with ``threads`` torch threads; best of repeats."""
    torch.set_num_threads(threads)
    recognizer.recognize(crops[:64])  # warm-up
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        recognizer.recognize(crops)
        best = max(best, len(crops) / (time.perf_counter() - t0))
    return best


def gpu_throughput(recognizer: Recognizer, crops: list[np.ndarray], budgets: list[int]) -> list[dict]:
    """Return lines/s on the GPU for each batch budget (pixels per batch), with the mean lines per batch."""
    out = []
    for budget in budgets:
        recognizer.max_batch_pixels = budget
        recognizer.recognize(crops[:256])  # warm-up: cuDNN picks its kernels for these shapes
        torch.cuda.synchronize()
        best = 0.0
        for _ in range(3):
            t0 = time.perf_counter()
            recognizer.recognize(crops)
            torch.cuda.synchronize()
            best = max(best, len(crops) / (time.perf_counter() - t0))
        per_batch = len(crops) / len(recognizer.batches(crops))
        out.append({"batch_pixels": budget, "lines_per_batch": round(per_batch, 1), "lines_per_s": round(best, 1)})
    return out


def main() -> None:
    """Print the benchmark table and a JSON summary."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cache", type=Path, default=Path(".cache/lines-all-h48.pkl"))
    ap.add_argument("--tesseract", action="store_true", help="also read the lines with Tesseract 5 fra")
    ap.add_argument("--quick", action="store_true", help="every 5th validation line")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-speed", action="store_true", help="skip the throughput measurement")
    ap.add_argument("--tesseract-cache", type=Path, default=Path(".cache/tesseract-val.json"))
    ap.add_argument("--device", default="cpu", help="cpu, or cuda: lines/s over a range of batch sizes")
    ap.add_argument("--lm", action="store_true", help="also decode with the default decoder (names LM)")
    ap.add_argument(
        "--backend", default="auto", choices=["auto", "torch", "onnx"], help="auto: ONNX Runtime on CPU, torch on CUDA"
    )
    ap.add_argument(
        "--int8", action=argparse.BooleanOptionalAction, default=True, help="int8 BiLSTM weights (onnx backend)"
    )
    ap.add_argument(
        "--reread",
        action="store_true",
        help="read unsure lines again squeezed and stretched (registre digitize --reread)",
    )
    ap.add_argument(
        "--speed-corpus",
        default="lectaurep",
        help="measure lines/s on this corpus's lines (register lines; 'all': every measured line)",
    )
    args = ap.parse_args()

    samples = [s for s in load_line_cache(args.data, args.cache) if s.split.startswith("val")]
    if args.quick:
        samples = samples[::5]
    torch.set_num_threads(args.threads)
    rec = Recognizer.load(
        args.model,
        args.device,
        backend=args.backend,
        int8=args.int8,
        reread_scales=REREAD_SCALES if args.reread else (),
    )
    crops = [s.image for s in samples]
    logprobs = rec.logprobs(crops)
    readings = [greedy_decode(lp, rec.charset) for lp in logprobs]
    groups: dict[str, ErrorRates] = defaultdict(ErrorRates)
    for s, r in zip(samples, readings, strict=True):
        for key in group_keys(s):
            groups[key].add(s.text, r.text)
    with_lm: dict[str, ErrorRates] = defaultdict(ErrorRates)
    lm_version = ""
    if args.lm:
        with open_decoder(rec.charset.labels) as decoder:
            lm_version = decoder.version
            for s, d in zip(samples, decoder.decode_batch(logprobs), strict=True):
                for key in group_keys(s):
                    with_lm[key].add(s.text, d.text)
    tess: dict[str, ErrorRates] = defaultdict(ErrorRates)
    if args.tesseract:
        if not shutil.which("tesseract"):
            sys.exit("tesseract not found: apt-get install tesseract-ocr tesseract-ocr-fra")
        for s, text in zip(samples, tesseract_cached(samples, args.tesseract_cache), strict=True):
            for key in group_keys(s):
                tess[key].add(s.text, text)

    gpu_rates = []
    if args.device.startswith("cuda"):
        # Pixels per batch; a line is 48 px high and ~400 px wide on average: ~36 to ~2,300 lines.
        gpu_rates = gpu_throughput(rec, crops, [48 * 48 * 300 * 2**k for k in range(7)])
    timed = crops if args.speed_corpus == "all" else [s.image for s in samples if s.corpus == args.speed_corpus]
    if not timed and not args.no_speed:
        sys.exit(f"--speed-corpus {args.speed_corpus}: no validation lines of that corpus")
    rates = {} if args.no_speed or gpu_rates else {t: throughput(rec, timed, t) for t in sorted({1, args.threads})}
    print(f"machine: {describe_machine()}")
    print(
        f"model: {rec.version}  backend: {rec.backend}{' int8' if rec.int8 else ''}  lines: {len(samples)}"
        + ("  reread " + "/".join(map(str, REREAD_SCALES)) if args.reread else "")
        + "  decoding: greedy"
        + (f", {lm_version}" if lm_version else "")
    )
    print()
    lm_head, lm_rule = (" LM CER | LM WER |", " ---: | ---: |") if with_lm else ("", "")
    print("| validation set | lines | CER | WER |" + lm_head + (" Tesseract CER | Tesseract WER |" if tess else ""))
    print("| --- | ---: | ---: | ---: |" + lm_rule + (" ---: | ---: |" if tess else ""))
    for key in sorted(groups, key=lambda k: (k == "all", k)):
        g = groups[key]
        row = f"| {key} | {g.lines} | {g.cer:.1%} | {g.wer:.1%} |"
        if with_lm:
            row += f" {with_lm[key].cer:.1%} | {with_lm[key].wer:.1%} |"
        if tess:
            row += f" {tess[key].cer:.1%} | {tess[key].wer:.1%} |"
        print(row)
    print()
    for t, r in rates.items():
        print(f"recognition throughput, {t} CPU thread(s), {len(timed)} {args.speed_corpus} lines: {r:.0f} lines/s")
    if gpu_rates:
        print("| pixels per batch | lines per batch | lines/s |")
        print("| ---: | ---: | ---: |")
        for g in gpu_rates:
            print(f"| {g['batch_pixels']:,} | {g['lines_per_batch']} | {g['lines_per_s']:.0f} |")
    summary = {
        "model": rec.version,
        "backend": rec.backend,
        "int8": rec.int8,
        "reread": list(rec.reread_scales),
        "cer": {k: round(v.cer, 4) for k, v in groups.items()},
        "wer": {k: round(v.wer, 4) for k, v in groups.items()},
        "lm": lm_version,
        "lm_cer": {k: round(v.cer, 4) for k, v in with_lm.items()},
        "lm_wer": {k: round(v.wer, 4) for k, v in with_lm.items()},
        "tesseract_cer": {k: round(v.cer, 4) for k, v in tess.items()},
        "lines_per_s": {str(t): round(r, 1) for t, r in rates.items()},
        "gpu": gpu_rates,
        "machine": describe_machine(),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
