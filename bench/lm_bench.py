"""Benchmark the decoders on the validation lines: accuracy with and without the names LM, and speed.

    .venv/bin/python bench/lm_bench.py [--quick] [--model models/registre-crnn.pt] [--lm models/names]

Accuracy (CER, WER, name accuracy) on every validation line (``--quick``: 300)
for greedy decoding, beam search without LM, with the LM, with the LM plus
hotwords, and with the LM plus lexicon rescoring (``lm.lexicon``, settings of
the LM's JSON), without and with hotwords. Hotwords of a line are the surnames
(INSEE list) written on the *training* pages of the same volume folder — what
an archivist could list for a register before running it. Name accuracy is the share of reference words whose
core (punctuation stripped) is a surname or first name of the INSEE lists
(capitalized or upper case) that the hypothesis reads exactly, after aligning
the words of both.

Speed: decoding lines/s at several beam widths with 1 and 2 processes on the
same lines (without LM, with the LM, with the LM and lexicon rescoring), and
the recognizer's own lines/s on 2 threads, measured in the same run (the
machine may be shared: CPU seconds per line are printed too).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rapidfuzz.distance import Levenshtein

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lm_tune import DEFAULT_MODEL, LINE_CACHE, ValidationSet, machine, score, validation_set  # noqa: E402

from lm.build import DEFAULT_LM, LMFiles, lm_prefix, read_info, read_lexicon  # noqa: E402
from lm.corpus import training_volume_lines  # noqa: E402
from lm.decoder import BeamDecoder, DecoderConfig, GreedyDecoder  # noqa: E402
from lm.names import SURNAME_CLASS, NameLexicon  # noqa: E402
from lm.tokens import split_word  # noqa: E402
from ocr.corpus import DEFAULT_DATA, load_line_cache  # noqa: E402


def volume_hotwords(lexicon: NameLexicon, data_dir: Path = DEFAULT_DATA) -> dict[str, list[str]]:
    """Return ``{volume: surnames written on its training pages}`` (capitalized or upper-case surname-list words)."""
    out: dict[str, list[str]] = {}
    for volume, lines in training_volume_lines(data_dir).items():
        words: dict[str, None] = {}
        for text in lines:
            for word in text.split():
                core = split_word(word)[1]
                if core[:1].isupper() and SURNAME_CLASS in lexicon.classes_of(core):
                    words[core] = None
        out[volume] = list(words)
    return out


def name_accuracy(refs: Sequence[str], hyps: Sequence[str], lexicon: NameLexicon) -> tuple[int, int]:
    """Return ``(name words read exactly, name words)`` over aligned word cores."""
    right = total = 0
    for ref, hyp in zip(refs, hyps, strict=True):
        r = [split_word(w)[1] for w in ref.split()]
        h = [split_word(w)[1] for w in hyp.split()]
        is_name = [bool(core) and bool(lexicon.classes_of(core)) for core in r]
        total += sum(is_name)
        for op in Levenshtein.opcodes(r, h):
            if op.tag == "equal":
                right += sum(is_name[op.src_start : op.src_end])
    return right, total


def decode_by_volume(
    vs: ValidationSet, decoder: BeamDecoder, hotwords: dict[str, list[str]], weight: float
) -> list[str]:
    """Return the texts of ``vs`` decoded volume by volume, each with its volume's hotwords at ``weight``."""
    hyps = [""] * len(vs.texts)
    for volume in sorted(set(vs.volumes)):
        idx = [i for i, v in enumerate(vs.volumes) if v == volume]
        decoder.set_hotwords(hotwords.get(volume, []), weight)
        for i, line in zip(idx, decoder.decode_batch([vs.logprobs[i] for i in idx]), strict=True):
            hyps[i] = line.text
    return hyps


def lexicon_settings(config: DecoderConfig) -> str:
    """Return the lexicon rescoring settings of ``config`` in words."""
    text = f"distance {config.lexicon_max_distance}"
    if config.lexicon_long_word:
        text += f", +1 from {config.lexicon_long_word} letters"
    if config.lexicon_names_max_distance:
        text += f", names {config.lexicon_names_max_distance}"
    return text + f", margin {config.lexicon_margin:g}"


def time_decoder(
    decoder: BeamDecoder | GreedyDecoder, logprobs: list[np.ndarray], detailed: bool = False
) -> tuple[float, float]:
    """Return ``(lines/s wall clock, CPU s per line in this process)`` of one batch call, after a warm-up.

    ``detailed`` times ``decode_beams`` (n-best lists) instead of ``decode_batch``.
    """
    call = decoder.decode_beams if detailed else decoder.decode_batch
    call(logprobs[:4])  # starts the pool
    wall, cpu = time.perf_counter(), time.process_time()
    call(logprobs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return len(logprobs) / wall, cpu / len(logprobs)


def recognition_speed(model: Path, n: int, threads: int = 2) -> tuple[float, float]:
    """Return the recognizer's ``(lines/s, CPU s per line)`` on ``n`` validation crops with ``threads`` CPU threads."""
    import shutil
    import tempfile

    import torch

    from ocr.inference import Recognizer

    torch.set_num_threads(threads)
    crops = [s.image for s in load_line_cache(DEFAULT_DATA, LINE_CACHE) if s.split.startswith("val")][:n]
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "model.pt"
        shutil.copyfile(model, copy)
        recognizer = Recognizer.load(str(copy), device="cpu")
    recognizer.logprobs(crops[:8])
    wall, cpu = time.perf_counter(), time.process_time()
    recognizer.logprobs(crops)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return len(crops) / wall, cpu / len(crops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--lm", type=Path, default=DEFAULT_LM)
    parser.add_argument("--quick", action="store_true", help="300 lines for accuracy, 100 for speed, two beam widths")
    parser.add_argument("--speed-lines", type=int, default=400)
    parser.add_argument("--beam-widths", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--no-speed", action="store_true", help="accuracy only (speed needs an otherwise idle machine)")
    args = parser.parse_args()

    vs = validation_set(args.model)
    if args.quick:
        rng = np.random.default_rng(0)
        vs = vs.subset(sorted(rng.choice(len(vs.texts), size=min(300, len(vs.texts)), replace=False).tolist()))
    prefix = lm_prefix(args.lm)
    info = read_info(prefix)
    lexicon = read_lexicon(LMFiles(prefix).lexicon)
    tuned = DecoderConfig.from_dict(info.get("decoder", {}))
    hotwords = volume_hotwords(lexicon)

    rows: list[tuple[str, list[str]]] = []
    t_row = time.perf_counter()

    def add_row(name: str, hyps: list[str]) -> None:
        nonlocal t_row
        rows.append((name, hyps))
        print(f"  decoded: {name} ({time.perf_counter() - t_row:.0f} s)", file=sys.stderr, flush=True)
        t_row = time.perf_counter()

    add_row("greedy", [line.text for line in GreedyDecoder(vs.labels).decode_batch(vs.logprobs)])
    with BeamDecoder(vs.labels, None, DecoderConfig(beam_width=tuned.beam_width)) as plain:
        add_row(f"beam {tuned.beam_width}, no LM", [line.text for line in plain.decode_batch(vs.logprobs)])
    # One decoder for the LM rows: the LM and its 245k-name lexicon load once, hotwords change per volume.
    with BeamDecoder.load(vs.labels, prefix, lexicon_rescore=False) as with_lm:
        add_row(f"beam {tuned.beam_width} + LM", [line.text for line in with_lm.decode_batch(vs.logprobs)])
        for weight in sorted({1.0, tuned.hotword_weight, 5.0}):
            add_row(
                f"beam {tuned.beam_width} + LM + hotwords (weight {weight:g})",
                decode_by_volume(vs, with_lm, hotwords, weight),
            )
        with_lm.set_hotwords([], tuned.hotword_weight)
        with_lm.set_lexicon_rescoring(True)
        rescoring = f"lexicon rescoring ({lexicon_settings(tuned)})"
        add_row(
            f"beam {tuned.beam_width} + LM + {rescoring}", [line.text for line in with_lm.decode_batch(vs.logprobs)]
        )
        add_row(
            f"beam {tuned.beam_width} + LM + {rescoring} + hotwords (weight {tuned.hotword_weight:g})",
            decode_by_volume(vs, with_lm, hotwords, tuned.hotword_weight),
        )

    print(f"machine: {machine()}")
    print(
        f"model {vs.model_version}; LM {info.get('version')} (order {info.get('order')}, "
        f"alpha {tuned.alpha:g}, beta {tuned.beta:g}, unk {tuned.unk_score_offset:g}); "
        f"{len(vs.texts)} validation lines of {len(set(vs.pages))} pages"
    )
    print(
        "hotwords per volume (surnames on its training pages): "
        + ", ".join(f"{v} {len(h)}" for v, h in sorted(hotwords.items()))
    )
    greedy = score(vs.texts, rows[0][1])
    print()
    print("| decoder | CER | WER | rel. CER | rel. WER | names right | val-seen CER | val-unseen CER |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, hyps in rows:
        r = score(vs.texts, hyps)
        right, total = name_accuracy(vs.texts, hyps, lexicon)
        per_split = {}
        for split in ("val-seen", "val-unseen"):
            idx = [i for i, s in enumerate(vs.splits) if s == split]
            per_split[split] = score([vs.texts[i] for i in idx], [hyps[i] for i in idx]).cer if idx else float("nan")
        print(
            f"| {name} | {r.cer:.4f} | {r.wer:.4f} | {r.cer / greedy.cer - 1:+.1%} | {r.wer / greedy.wer - 1:+.1%} | "
            f"{right / max(total, 1):.1%} of {total} | {per_split['val-seen']:.4f} | {per_split['val-unseen']:.4f} |"
        )

    if args.no_speed:
        return
    n_speed = 100 if args.quick else args.speed_lines
    widths = [8, 16] if args.quick else args.beam_widths
    speed_lines = vs.logprobs[:n_speed]
    frames = np.mean([len(lp) for lp in speed_lines])
    print()
    print(f"speed on {len(speed_lines)} lines ({frames:.0f} frames per line on average)")
    for threads in (1, 2):
        speed, cpu = recognition_speed(args.model, len(speed_lines), threads)
        print(f"recognizer, {threads} thread(s): {speed:.0f} lines/s, {cpu * 1000:.1f} CPU ms/line")
    g_speed, g_cpu = time_decoder(GreedyDecoder(vs.labels), speed_lines)
    print(f"greedy: {g_speed:.0f} lines/s")
    print("| beam width | LM | 1 process lines/s | CPU ms/line | 2 processes lines/s | decode_beams, 1 proc. |")
    print("|---:|---|---:|---:|---:|---:|")
    tuned_dict = info.get("decoder", {})
    # decode_batch is timed on a new decoder: rescoring starts with an empty candidate cache (but 4 warm-up lines).
    for width in widths:
        for lm, rescore in ((None, False), (prefix, False), (prefix, True)):
            cells = []
            for processes in (1, 2):
                cfg = DecoderConfig.from_dict(
                    {**tuned_dict, "beam_width": width, "processes": processes, "lexicon_rescore": rescore}
                )
                with BeamDecoder(vs.labels, lm, cfg) as dec:
                    cells.append(time_decoder(dec, speed_lines))
                    if processes == 1:
                        beams_speed = time_decoder(dec, speed_lines, detailed=True)[0]
            lm_cell = ("yes + lexicon" if rescore else "yes") if lm else "no"
            print(
                f"| {width} | {lm_cell} | {cells[0][0]:.0f} | {cells[0][1] * 1000:.1f} | {cells[1][0]:.0f} "
                f"| {beams_speed:.0f} |"
            )


if __name__ == "__main__":
    main()
