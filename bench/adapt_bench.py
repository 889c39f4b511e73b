"""Adaptation benchmark: how much a few corrected lines of a held-out register lower the CER on the rest of it.

Usage: python bench/adapt_bench.py [--mode corrected|read|read-other|both] [--hands H1,H2] [--pool-lines 0]
                                   [--steps 300] [--lr 3e-4] [--threads 2] [--curve] [--no-lm]

For each held-out hand of ocr/splits.toml (by default the four LECTAUREP registers of
val-unseen, whose lines no model ever trained on), the first half of its pages plays the
pages an archivist corrects, the other half the rest of the register (a hand of one page:
every other line). ``registre adapt``'s procedure (:func:`ocr.adapt.adapt`, its defaults:
every 10th corrected line held out to choose the weights) runs on the corrected pages; the
others are read before and after, greedy and with the default decoder (names LM).
``--pool-lines N`` keeps N corrected lines spread over those pages (how few are enough);
``--curve`` instead follows the other pages' greedy CER every 100 steps (a diagnostic:
choosing the steps on it would flatter).

``--mode read`` measures ``registre adapt --pages`` with no correction: every line of the hand is
read by the model and the default decoder, the model trains on those readings, and the same lines
are read again (as a user adapts to a register's scans, then reads them). ``--mode read-other``: the
readings of the first half train, and the other half (pages not read) is read before and after.
``--mode both``: the
corrected half adapts first, that model reads the other half, and a second round trains on both
(``registre adapt GT_DIR --pages SCANS``); the other half is read before and after.
``--mode pipeline`` measures ``registre digitize --adapt`` / ``registre eval --adapt``: each hand's
pages (a folder per register) are found by the line finder and read, the model adapts to those
readings (:func:`flows.adaptation.model_for_register`, the code the commands run), and the pages
are evaluated as ``registre eval`` does, on ground-truth lines and on registre's own lines
(``--segmentation auto``), greedy and with the default decoder, before and after.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine  # noqa: E402

from lm.decoder import open_decoder  # noqa: E402
from ocr.adapt import AdaptConfig, AdaptLine, adapt, adapt_register  # noqa: E402
from ocr.checkpoint import DEFAULT_MODEL  # noqa: E402
from ocr.corpus import DEFAULT_DATA, load_line_cache  # noqa: E402
from ocr.inference import Recognizer  # noqa: E402
from ocr.metrics import ErrorRates  # noqa: E402

LECTAUREP_UNSEEN = ",".join(f"lectaurep/train/random-set-1/FRAN_0025_{n}" for n in ("0934", "0989", "1209", "1333"))


def readings(model: Path, lines: list[AdaptLine], lm: bool) -> tuple[list[str], list[str]]:
    """Return ``model``'s greedy texts of ``lines`` and (with ``lm``, else none) its default decoder's."""
    rec = Recognizer.load(str(model), device="cpu")
    got = rec.recognize([ln.image for ln in lines])
    if not lm:
        return [r.text for r in got], []
    with open_decoder(rec.charset.labels) as decoder:
        return [r.text for r in got], [d.text for d in decoder.decode_batch([r.logprobs for r in got])]


def read(model: Path, lines: list[AdaptLine], lm: bool) -> tuple[ErrorRates, ErrorRates]:
    """Return greedy and (with ``lm``) default-decoder error rates of ``model`` on ``lines``."""
    greedy_texts, decoded_texts = readings(model, lines, lm)
    greedy, decoded = ErrorRates(), ErrorRates()
    for ln, text in zip(lines, greedy_texts, strict=True):
        greedy.add(ln.text, text)
    if lm:
        for ln, text in zip(lines, decoded_texts, strict=True):
            decoded.add(ln.text, text)
    return greedy, decoded


def reader(lines: list[AdaptLine]):
    """Return ``read(model)``: ``lines`` labelled by ``model``'s reading with the default decoder."""

    def read_with(model: Path) -> list[AdaptLine]:
        texts = readings(model, lines, lm=True)[1]
        return [AdaptLine(ln.page, ln.line_id, ln.image, text) for ln, text in zip(lines, texts, strict=True)]

    return read_with


def split_hand(lines: list[AdaptLine]) -> tuple[list[AdaptLine], list[AdaptLine]]:
    """Return (corrected, rest): the first half of a hand's pages and the others; one page: every other line.

    A page's lines come column by column (a register's numbers, then its names), so halves of one page
    would adapt on one kind of cell and test on another.
    """
    pages = sorted({ln.page for ln in lines})
    if len(pages) == 1:
        return lines[::2], lines[1::2]
    first = set(pages[: len(pages) // 2])
    return [ln for ln in lines if ln.page in first], [ln for ln in lines if ln.page not in first]


def pipeline(hands: list[str], model: Path, rounds: int = 1) -> None:
    """Print before/after CER of ``registre eval`` (gt and auto, greedy and LM) with each register's adapted model."""
    import os

    from flows.adaptation import model_for_register
    from flows.evaluation import run_eval
    from flows.records import assign_page_ids
    from flows.settings import Settings
    from flows.storage import open_storage
    from ocr.checkpoint import load_model
    from ocr.corpus import corpus_pages
    from ocr.groundtruth import read_ground_truth

    base = Settings(model=model, adapt_rounds=rounds)
    base_version = load_model(model)[2]
    pages = [p for p in corpus_pages() if p.hand in hands and p.split.startswith("val")]
    cells = ("gt greedy", "gt lm", "auto greedy", "auto lm")
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    print("| register | lines | characters | adapt s | " + " | ".join(f"{c} before | after" for c in cells) + " |")
    print("| --- | ---: | ---: | ---: | " + " | ".join("---: | ---:" for _ in cells) + " |")
    with tempfile.TemporaryDirectory() as tmp:
        for hand in hands:
            folder = Path(tmp) / hand.rsplit("/", 1)[-1]
            folder.mkdir()
            for page in (p for p in pages if p.hand == hand):
                image = read_ground_truth(page.xml).image_path
                for f in (page.xml, image):
                    os.symlink(f.resolve(), folder / f.name)
            store = open_storage(str(folder))
            keys = sorted(store.list_keys())
            t0 = time.monotonic()
            adapted = model_for_register("", keys, assign_page_ids(keys), store, base, Path(tmp), base_version)
            seconds = time.monotonic() - t0
            row = []
            for cell in cells:
                seg, decoder = cell.split()
                for which, m in (("before", model), ("after", Path(adapted.model))):
                    settings = base.model_copy(update={"model": m, "use_lm": decoder == "lm"})
                    result = run_eval(folder, settings, segmentation=seg)
                    row.append(result["cer"])
                    totals[(cell, which)][0] += result["cer"] * result["chars"]
                    totals[(cell, which)][1] += result["chars"]
            print(
                f"| {folder.name} | {result['lines']} | {result['chars']} | {seconds:.0f} | "
                + " | ".join(f"{c:.1%}" for c in row)
                + " |",
                flush=True,
            )
    row = [totals[(c, w)][0] / max(totals[(c, w)][1], 1) for c in cells for w in ("before", "after")]
    print("| **all** | | | | " + " | ".join(f"{c:.1%}" for c in row) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument(
        "--hands", default=LECTAUREP_UNSEEN, help="Held-out hands (ocr.corpus.hand_of keys), comma-separated."
    )
    ap.add_argument(
        "--mode",
        choices=("corrected", "read", "read-other", "both", "pipeline"),
        default="corrected",
        help="Lines adapted on: the corrected half; every line as read (no correction); the first half as read; "
        "the corrected half and the other half as read, in two rounds.",
    )
    ap.add_argument("--pool-lines", type=int, default=0, help="Corrected lines to adapt on (0: all).")
    ap.add_argument("--steps", type=int, default=AdaptConfig.steps)
    ap.add_argument("--lr", type=float, default=AdaptConfig.lr)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1, help="--mode pipeline: rounds of self-training per register.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--curve", action="store_true", help="Follow the other pages' CER along the steps instead.")
    ap.add_argument("--no-lm", action="store_true")
    ap.add_argument("--json", type=Path, help="Append one JSON record per hand to this file.")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.mode == "pipeline":
        print(f"machine: {describe_machine()}")
        print(f"model: {args.model}  mode pipeline (eval --adapt)  rounds {args.rounds}  threads {args.threads}")
        pipeline(args.hands.split(","), args.model, args.rounds)
        return
    samples = load_line_cache(DEFAULT_DATA, Path(".cache/lines-all-h48.pkl"))
    by_hand = defaultdict(list)
    for s in samples:
        if s.split == "val-unseen":
            by_hand[s.hand].append(AdaptLine(s.page, s.line_id, s.image, s.text))
    print(f"machine: {describe_machine()}")
    print(
        f"model: {args.model}  mode {args.mode}  steps {args.steps}  lr {args.lr}  threads {args.threads}  "
        f"seed {args.seed}"
    )
    rows = []
    totals = defaultdict(ErrorRates)
    for hand in args.hands.split(","):
        lines = by_hand.get(hand)
        if not lines:
            raise SystemExit(f"{hand}: not a held-out hand of ocr/splits.toml")
        pool, rest = split_hand(lines) if args.mode != "read" else ([], lines)
        # What trains as the model reads it (no correction): every line, the first half, or the other half.
        read_lines = {"read": rest, "read-other": pool, "both": rest}.get(args.mode)
        if args.mode == "read-other":
            pool = []
        if args.pool_lines and args.pool_lines < len(pool):
            # Spread over the pages: their first lines are one column's short cells.
            pool = [pool[round(i * len(pool) / args.pool_lines)] for i in range(args.pool_lines)]
        cfg = AdaptConfig(steps=args.steps, lr=args.lr, seed=args.seed)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "adapted.pt"
            t0 = time.monotonic()
            if args.curve:
                result, rounds = adapt(pool, out, args.model, cfg, held_out=rest), 1
            else:
                read_fn = reader(read_lines) if read_lines is not None else None
                result, rounds = adapt_register(pool, out, args.model, cfg, read_fn)
            seconds = time.monotonic() - t0
            before = read(args.model, rest, not args.no_lm)
            after = read(out, rest, not args.no_lm) if result.written else before
        for name, rates in zip(("before", "before_lm", "after", "after_lm"), (*before, *after), strict=True):
            totals[name] += rates
        row = {
            "hand": hand,
            "corrected_lines": len(pool),
            "test_lines": len(rest),
            "greedy_before": round(before[0].cer, 4),
            "greedy_after": round(after[0].cer, 4),
            "lm_before": round(before[1].cer, 4) if not args.no_lm else None,
            "lm_after": round(after[1].cer, 4) if not args.no_lm else None,
            "mode": args.mode,
            "rounds": rounds,
            "read_lines": result.read_lines,
            "best_step": result.best_step,
            "held_out_curve": result.curve,
            "adapt_seconds": round(seconds, 1),
            "train_lines_per_s": result.lines_per_s,
            "steps": args.steps,
            "lr": args.lr,
            "curve": args.curve,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            with args.json.open("a") as f:
                f.write(json.dumps(row) + "\n")
    print()
    print("| hand | corrected lines | test lines | greedy before | after | with LM before | after | adapt s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        lm = f"{r['lm_before']:.1%} | {r['lm_after']:.1%}" if r["lm_before"] is not None else "– | –"
        print(
            f"| {r['hand'].rsplit('/', 1)[-1]} | {r['corrected_lines']} | {r['test_lines']} | "
            f"{r['greedy_before']:.1%} | {r['greedy_after']:.1%} | {lm} | {r['adapt_seconds']:.0f} |"
        )
    lm = "– | –" if args.no_lm else f"{totals['before_lm'].cer:.1%} | {totals['after_lm'].cer:.1%}"
    print(f"| **all** | | | {totals['before'].cer:.1%} | {totals['after'].cer:.1%} | {lm} | |")


if __name__ == "__main__":
    main()
