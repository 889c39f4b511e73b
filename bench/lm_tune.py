"""Tune the names-LM decoder's weights on the validation lines and store the best as its defaults.

    .venv/bin/python bench/lm_tune.py [--quick] [--dry-run] [--model models/registre-crnn.pt] [--lm models/names]

Validation lines are the cached crops of ``ocr.corpus`` whose split is not
``train`` (``--lines N``: a fixed random sample of N of them). The
recognizer's log-probabilities are computed once per model file and cached
in ``.cache/lm-val-<model digest>-b<blank penalty>.npz`` (only the latest is kept), so a rerun
after the model improved recomputes them and a rerun with the same
model goes straight to the search. Stage 1 tries LM weight ``alpha`` x word
bonus ``beta``; stage 2 the OOV and name offsets around the best of stage 1;
stage 3 the common-word offset around the best of stage 2.
The loss is relative CER + relative WER against greedy decoding. The chosen
settings go into the ``decoder`` section of ``<lm>.json``, which
``BeamDecoder.load`` reads. To show that tuning on the lines it is scored on
does not flatter the result, a two-fold figure is printed too: each half of the
pages decoded with the setting that is best on the other half. ``--quick``
searches a few settings on 300 lines and writes nothing.

``--lexicon`` tunes the lexicon rescoring instead (``lm.lexicon``, issue #5):
its margin and candidate distances (:data:`LEXICON_GRID`) on top of the stored
weights, chosen by the same loss, with the same two-fold figure; they go into
the same section (``--quick``: 300 lines, nothing written).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lm.build import DEFAULT_LM, LMFiles, lm_prefix, read_info, write_info  # noqa: E402
from lm.decoder import BeamDecoder, DecoderConfig, GreedyDecoder  # noqa: E402
from ocr.corpus import DEFAULT_DATA, load_line_cache  # noqa: E402
from ocr.metrics import ErrorRates  # noqa: E402

LINE_CACHE = REPO / ".cache" / "lines-all-h48.pkl"
DEFAULT_MODEL = REPO / "models" / "registre-crnn.pt"


def machine() -> str:
    """Return the CPU model and core count of this machine."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


@dataclass
class ValidationSet:
    """Recognizer log-probabilities of the validation lines with their references and provenance."""

    logprobs: list[np.ndarray]
    texts: list[str]
    pages: list[str]
    volumes: list[str]
    splits: list[str]
    labels: list[str]
    model_version: str
    seconds_per_line: float

    def subset(self, idx: list[int]) -> ValidationSet:
        """Return the lines at ``idx``."""
        return ValidationSet(
            [self.logprobs[i] for i in idx],
            [self.texts[i] for i in idx],
            [self.pages[i] for i in idx],
            [self.volumes[i] for i in idx],
            [self.splits[i] for i in idx],
            self.labels,
            self.model_version,
            self.seconds_per_line,
        )


def validation_set(model: Path = DEFAULT_MODEL, cache_dir: Path = REPO / ".cache") -> ValidationSet:
    """Return the validation lines' log-probabilities under ``model``, computed once per model file and cached."""
    # The training job replaces the model file while we read: work on a private copy.
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "model.pt"
        shutil.copyfile(model, copy)
        digest = hashlib.sha256(copy.read_bytes()).hexdigest()[:12]
        from ocr.inference import BLANK_PENALTY

        # The recognizer's log-probabilities come with its blank penalty: a new penalty is a new cache.
        cache = cache_dir / f"lm-val-{digest}-b{BLANK_PENALTY:g}.npz"
        if cache.exists():
            data = np.load(cache, allow_pickle=False)
            meta = json.loads(str(data["meta"]))
            offsets = data["offsets"]
            flat = data["logprobs"]
            lps = [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
            return ValidationSet(
                lps,
                *(meta[k] for k in ("texts", "pages", "volumes", "splits", "labels")),
                meta["model_version"],
                meta["seconds_per_line"],
            )
        import torch  # noqa: F401 - bench/ may use torch; lm/ never does

        from ocr.inference import Recognizer

        recognizer = Recognizer.load(str(copy), device="cpu")
    samples = [s for s in load_line_cache(DEFAULT_DATA, LINE_CACHE) if s.split.startswith("val")]
    t0 = time.perf_counter()
    lps = recognizer.logprobs([s.image for s in samples])
    per_line = (time.perf_counter() - t0) / max(1, len(samples))
    meta = {
        "texts": [s.text for s in samples],
        "pages": [s.page for s in samples],
        "volumes": [s.volume for s in samples],
        "splits": [s.split for s in samples],
        "labels": recognizer.charset.labels,
        "model_version": recognizer.version or digest,
        "seconds_per_line": per_line,
    }
    offsets = np.cumsum([0] + [len(lp) for lp in lps])
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = cache.with_suffix(".tmp.npz")
    np.savez(tmp_path, logprobs=np.concatenate(lps).astype(np.float32), offsets=offsets, meta=json.dumps(meta))
    tmp_path.replace(cache)
    # One model's log-probabilities are ~120 MB: keep only the current model's.
    for old in cache_dir.glob("lm-val-*.npz"):
        if old != cache:
            old.unlink(missing_ok=True)
    return ValidationSet(
        [lp.astype(np.float32) for lp in lps],
        meta["texts"],
        meta["pages"],
        meta["volumes"],
        meta["splits"],
        meta["labels"],
        meta["model_version"],
        per_line,
    )


def score(texts: list[str], hyps: list[str]) -> ErrorRates:
    """Return summed CER/WER counts of hypotheses against references."""
    rates = ErrorRates()
    for ref, hyp in zip(texts, hyps, strict=True):
        rates.add(ref, hyp)
    return rates


def decode_texts(decoder: BeamDecoder | GreedyDecoder, vs: ValidationSet) -> list[str]:
    """Return the decoded text of every line of ``vs``."""
    return [line.text for line in decoder.decode_batch(vs.logprobs)]


def objective(rates: ErrorRates, greedy: ErrorRates) -> float:
    """Return the tuning loss: relative CER plus relative WER against greedy (lower is better)."""
    return rates.cer / max(greedy.cer, 1e-9) + rates.wer / max(greedy.wer, 1e-9)


#: Stage 1 searches the LM weight and word bonus; stage 2 the OOV and name offsets around the best of stage 1;
#: stage 3 the common-word offset around the best of stage 2 (for an LM with a common-word class, ``lm.words``).
STAGE1 = {"alpha": (0.15, 0.2, 0.25, 0.3, 0.35, 0.45), "beta": (1.0, 1.5, 2.25, 3.0)}
STAGE2 = {"unk_score_offset": (-10.0, -6.0, -3.0), "name_score_offset": (-2.0, -1.0, 0.0)}
QUICK_STAGE1 = {"alpha": (0.3, 0.6), "beta": (0.5, 2.0)}
QUICK_STAGE2 = {"unk_score_offset": (-10.0, -5.0), "name_score_offset": (0.0,)}
STAGE3 = {"word_score_offset": (-2.0, -1.0, 0.0, 1.0)}
BASE = {"unk_score_offset": -6.0, "name_score_offset": -1.0, "word_score_offset": 0.0}


def product(axes: dict[str, tuple[float, ...]], base: dict[str, float]) -> list[dict[str, float]]:
    """Return every combination of the axes' values, on top of ``base``."""
    keys = list(axes)
    return [{**base, **dict(zip(keys, values, strict=True))} for values in itertools.product(*axes.values())]


def search(
    decoder: BeamDecoder, vs: ValidationSet, greedy: ErrorRates, quick: bool, word_class: bool = False
) -> tuple[list[dict[str, float]], list[list[str]]]:
    """Return every setting tried and the decoded texts of ``vs`` under each (stages, see :data:`STAGE1`)."""
    settings: list[dict[str, float]] = []
    hyps: list[list[str]] = []

    def run(batch: list[dict[str, float]]) -> None:
        for s in batch:
            if s in settings:
                continue
            decoder.set_params(**s)
            settings.append(s)
            hyps.append(decode_texts(decoder, vs))

    def best() -> dict[str, float]:
        return settings[min(range(len(settings)), key=lambda k: objective(score(vs.texts, hyps[k]), greedy))]

    run(product(QUICK_STAGE1 if quick else STAGE1, BASE))
    run(product(QUICK_STAGE2 if quick else STAGE2, best()))
    if word_class and not quick:
        run(product(STAGE3, best()))
    return settings, hyps


def subset_rates(vs: ValidationSet, hyps: list[str], idx: list[int]) -> ErrorRates:
    """Return the error rates of the lines at ``idx``."""
    return score([vs.texts[i] for i in idx], [hyps[i] for i in idx])


def two_fold(vs: ValidationSet, greedy_hyps: list[str], all_hyps: list[list[str]]) -> ErrorRates:
    """Return the error rates when each half of the pages is decoded with the setting that is best on the other half."""
    pages = sorted(set(vs.pages))
    fold_of = {p: i % 2 for i, p in enumerate(pages)}
    folds = [[i for i, p in enumerate(vs.pages) if fold_of[p] == f] for f in (0, 1)]
    held_out = ErrorRates()
    for f in (0, 1):
        tune, test = folds[f], folds[1 - f]
        g = subset_rates(vs, greedy_hyps, tune)
        best = min(range(len(all_hyps)), key=lambda k: objective(subset_rates(vs, all_hyps[k], tune), g))
        held_out += subset_rates(vs, all_hyps[best], test)
    return held_out


#: Lexicon rescoring settings tried by ``--lexicon`` (margin in natural log: negative accepts slightly worse scores).
LEXICON_GRID = {
    "lexicon_max_distance": (1, 2),
    "lexicon_long_word": (0, 8),
    "lexicon_names_max_distance": (0, 2),
    "lexicon_margin": (0.0, -2.0, -3.0, -4.0, -6.0),
}


def print_best(best: dict, rates: ErrorRates, held_out: ErrorRates, greedy: ErrorRates) -> None:
    """Print the best setting's error rates and the two-fold estimate, each relative to greedy."""
    print(
        f"best: {best}: CER {rates.cer:.4f} ({rates.cer / greedy.cer - 1:+.1%} vs greedy), "
        f"WER {rates.wer:.4f} ({rates.wer / greedy.wer - 1:+.1%})"
    )
    print(
        f"two-fold (each half of the pages decoded with the best setting of the other half): "
        f"CER {held_out.cer:.4f} ({held_out.cer / greedy.cer - 1:+.1%}), "
        f"WER {held_out.wer:.4f} ({held_out.wer / greedy.wer - 1:+.1%})"
    )


def search_lexicon(
    decoder: BeamDecoder, vs: ValidationSet, grid: dict[str, tuple[float, ...]] = LEXICON_GRID
) -> tuple[list[dict[str, float]], list[list[str]]]:
    """Return the lexicon settings tried (rescoring off first) and the decoded texts of ``vs`` under each."""
    settings: list[dict[str, float]] = [{"lexicon_rescore": False}]
    decoder.set_lexicon_rescoring(False)
    hyps = [decode_texts(decoder, vs)]
    for s in product(grid, {"lexicon_rescore": True}):
        decoder.set_lexicon_rescoring(True, **{k: v for k, v in s.items() if k != "lexicon_rescore"})
        settings.append(s)
        hyps.append(decode_texts(decoder, vs))
    return settings, hyps


def validation_and_greedy(args: argparse.Namespace) -> tuple[ValidationSet, list[str], ErrorRates]:
    """Return the validation lines (300 of them with ``--quick``), their greedy readings and its error rates."""
    vs = validation_set(args.model)
    n = 300 if args.quick else args.lines
    if n and n < len(vs.texts):
        # A fixed random sample (seed 0): the same lines for every setting and every rerun.
        rng = np.random.default_rng(0)
        vs = vs.subset(sorted(rng.choice(len(vs.texts), size=n, replace=False).tolist()))
    greedy_hyps = decode_texts(GreedyDecoder(vs.labels), vs)
    return vs, greedy_hyps, score(vs.texts, greedy_hyps)


def tune_lexicon(args: argparse.Namespace) -> None:
    """Search :data:`LEXICON_GRID` with the stored weights, print the table and store the best (see module doc)."""
    t_start = time.perf_counter()
    vs, greedy_hyps, greedy = validation_and_greedy(args)
    overrides = {"processes": args.processes} | ({"beam_width": args.beam_width} if args.beam_width else {})
    with BeamDecoder.load(vs.labels, args.lm, **overrides) as decoder:
        beam_width = decoder.config.beam_width
        settings, all_hyps = search_lexicon(decoder, vs)
    rates = [score(vs.texts, h) for h in all_hyps]
    best = min(range(len(settings)), key=lambda k: objective(rates[k], greedy))
    held_out = two_fold(vs, greedy_hyps, all_hyps)
    print(f"machine: {machine()}")
    print(
        f"model {vs.model_version}, LM {read_info(lm_prefix(args.lm)).get('version')}, {len(vs.texts)} lines, "
        f"beam {beam_width}, {len(settings)} settings, {time.perf_counter() - t_start:.0f} s"
    )
    keys = list(LEXICON_GRID)
    print(
        "| lexicon rescoring | "
        + " | ".join(k.removeprefix("lexicon_") for k in keys)
        + " | CER | WER | rel. CER | rel. WER |"
    )
    print("|---|" + "---:|" * (len(keys) + 4))
    print(f"| greedy |{' |' * len(keys)} {greedy.cer:.4f} | {greedy.wer:.4f} | | |")
    for s, r in zip(settings, rates, strict=True):
        cells = " | ".join(f"{s[k]:g}" if k in s else "" for k in keys)
        print(
            f"| {'yes' if s['lexicon_rescore'] else 'no'} | {cells} | {r.cer:.4f} | {r.wer:.4f} "
            f"| {r.cer / greedy.cer - 1:+.1%} | {r.wer / greedy.wer - 1:+.1%} |"
        )
    print_best(settings[best], rates[best], held_out, greedy)
    if args.quick or args.dry_run:
        return
    info = read_info(lm_prefix(args.lm))
    chosen = {k: int(v) if type(getattr(DecoderConfig, k)) is int else v for k, v in settings[best].items()}
    info["decoder"] = {
        **info.get("decoder", {}),
        **chosen,
        "lexicon_tuned_on": {
            "model": vs.model_version,
            "beam_width": beam_width,
            "lines": len(vs.texts),
            "cer": round(rates[best].cer, 5),
            "wer": round(rates[best].wer, 5),
            "two_fold_cer": round(held_out.cer, 5),
            "two_fold_wer": round(held_out.wer, 5),
        },
    }
    write_info(lm_prefix(args.lm), info)
    print(f"wrote the lexicon settings to {lm_prefix(args.lm)}.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--lm", type=Path, default=DEFAULT_LM)
    parser.add_argument(
        "--beam-width", type=int, default=None, help=f"default {DecoderConfig.beam_width}; --lexicon: the stored one"
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a 4-point grid on 300 lines, and nothing is written")
    parser.add_argument("--dry-run", action="store_true", help="print the result without writing the LM's JSON")
    parser.add_argument("--lexicon", action="store_true", help="tune the lexicon rescoring on the stored weights")
    parser.add_argument(
        "--lines", type=int, default=0, help="tune on this many validation lines drawn at random (0: all of them)"
    )
    args = parser.parse_args()
    if args.lexicon:
        tune_lexicon(args)
        return
    args.beam_width = args.beam_width or DecoderConfig.beam_width

    t_start = time.perf_counter()
    vs, greedy_hyps, greedy = validation_and_greedy(args)
    config = DecoderConfig(beam_width=args.beam_width, processes=args.processes)
    with BeamDecoder(vs.labels, args.lm, config) as decoder:
        word_class = LMFiles(lm_prefix(args.lm)).words.exists()
        settings, all_hyps = search(decoder, vs, greedy, args.quick, word_class)
    rated = sorted(
        ((s, score(vs.texts, h)) for s, h in zip(settings, all_hyps, strict=True)),
        key=lambda r: objective(r[1], greedy),
    )
    best, best_rates = rated[0]
    held_out = two_fold(vs, greedy_hyps, all_hyps)

    print(f"machine: {machine()}")
    print(
        f"model {vs.model_version}, LM {read_info(lm_prefix(args.lm)).get('version')}, {len(vs.texts)} lines, "
        f"beam {args.beam_width}, {len(settings)} settings, {time.perf_counter() - t_start:.0f} s"
    )
    print("| alpha | beta | unk offset | name offset | word offset | CER | WER |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| greedy | | | | | {greedy.cer:.4f} | {greedy.wer:.4f} |")
    for s, r in rated[:10]:
        print(
            f"| {s['alpha']:g} | {s['beta']:g} | {s['unk_score_offset']:g} | {s['name_score_offset']:g} "
            f"| {s['word_score_offset']:g} | {r.cer:.4f} | {r.wer:.4f} |"
        )
    print_best(best, best_rates, held_out, greedy)
    if args.quick or args.dry_run:
        return
    info = read_info(lm_prefix(args.lm))
    # Lexicon settings are tuned after the weights (--lexicon) and kept; rerun --lexicon after new weights.
    info["decoder"] = {
        **{k: v for k, v in info.get("decoder", {}).items() if k.startswith("lexicon_")},
        **best,
        "beam_width": args.beam_width,
        "tuned_on": {
            "model": vs.model_version,
            "lm": info.get("version"),
            "lines": len(vs.texts),
            "greedy_cer": round(greedy.cer, 5),
            "greedy_wer": round(greedy.wer, 5),
            "cer": round(best_rates.cer, 5),
            "wer": round(best_rates.wer, 5),
            "two_fold_cer": round(held_out.cer, 5),
            "two_fold_wer": round(held_out.wer, 5),
        },
    }
    write_info(lm_prefix(args.lm), info)
    print(f"wrote the decoder defaults to {lm_prefix(args.lm)}.json")


if __name__ == "__main__":
    main()
