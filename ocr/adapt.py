"""Adapting the recognizer to one register: from a few of its lines transcribed by hand, its own readings, or both.

A hand the model never saw reads at 25–35 % CER; the same model fine-tuned for two
minutes on 2 CPU cores on one page of that hand's lines, corrected by an archivist,
reads the register's other pages at 18 instead of 27 % with the names LM
(bench/adapt_bench.py, bench/results/adapt.md). Fine-tuned instead on the register's
lines as the model and the names LM read them (no correction: self-training), it reads
them a few points better too. This is what ``registre adapt`` runs: short, step-counted
training from the given weights on the given lines only, with the writer augmentation,
BatchNorm statistics frozen (a page is too few lines to re-estimate them), and every
``holdout_every``-th corrected line kept aside to decide which weights to keep: the
starting ones stay when no checkpoint reads the held-out lines better.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ocr.augment import AUGMENTATIONS
from ocr.charset import Charset
from ocr.checkpoint import DEFAULT_MODEL, file_digest, read_model_file, save_model
from ocr.inference import Recognizer
from ocr.metrics import ErrorRates
from ocr.model import CRNN, CRNNConfig
from ocr.train import EpochBatches, cosine_ratio, label_fits, load_extending_head, make_batches

log = logging.getLogger(__name__)


class AdaptError(ValueError):
    """Adaptation that cannot run: no usable lines, a bad setting."""


@dataclass
class AdaptConfig:
    """Settings of :func:`adapt`; the defaults are the ones bench/adapt_bench.py measured."""

    steps: int = 300
    lr: float = 3e-4
    batch_size: int = 8
    #: Linear warm-up over these steps, then a cosine decay to ``min_lr_ratio`` of ``lr``.
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1
    augmentation: str = "writer"
    #: Every n-th line is held out to choose the weights (0: none; all lines train and the last weights are kept).
    holdout_every: int = 10
    #: Below this many lines nothing is held out (too few to measure anything).
    min_lines_for_holdout: int = 30
    #: Read the held-out lines every this many steps (and at the end); the best reading's weights are kept.
    eval_every: int = 100
    #: Keep BatchNorm's running statistics from the base model (re-estimating them on one hand made every
    #: held-out hand worse; models/README.md).
    freeze_batchnorm: bool = True
    seed: int = 0
    threads: int = 0


@dataclass
class AdaptLine:
    """One transcribed line: where it comes from, its crop (uint8, the model's height) and its text."""

    page: str
    line_id: str
    image: np.ndarray
    text: str


@dataclass
class AdaptResult:
    """What :func:`adapt` did: lines used, held-out CER before and after, the weights it kept."""

    base_version: str
    version: str
    train_lines: int
    #: Of them, lines labelled by the model's own reading (the register's pages, no correction).
    read_lines: int
    held_out_lines: int
    #: Lines not trained on: a label longer than its crop's frames can carry, or an empty text.
    dropped_lines: int
    new_characters: list[str]
    steps: int
    best_step: int
    cer_before: float | None
    cer_after: float | None
    seconds: float
    lines_per_s: float
    #: Held-out CER at every evaluated step, ``{step: cer}``.
    curve: dict[int, float] = field(default_factory=dict)
    written: Path | None = None

    @property
    def improved(self) -> bool:
        """True when weights other than the starting ones were kept."""
        return self.best_step > 0

    def to_dict(self) -> dict:
        """Return the result as JSON-able data."""
        out = asdict(self)
        out["written"] = str(self.written) if self.written else None
        out["improved"] = self.improved
        return out


def _reader(model: CRNN, charset: Charset) -> Recognizer:
    """Return a recognizer reading as ``registre digitize`` does on CPU (ONNX Runtime, int8), on a copy."""
    return Recognizer(copy.deepcopy(model).eval().fuse_for_inference(), charset, int8=True)


def _cer(model: CRNN, charset: Charset, lines: Sequence[AdaptLine]) -> float:
    rates = ErrorRates()
    for line, rec in zip(lines, _reader(model, charset).recognize([ln.image for ln in lines]), strict=True):
        rates.add(line.text, rec.text)
    return rates.cer


def _freeze_batchnorm(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def adapted_version(base_version: str, lines: Sequence[AdaptLine], cfg: AdaptConfig, root: str = "") -> str:
    """Return the adapted model's version: the root's, ``+adapt-`` and a digest of the base, lines and settings.

    The same lines and settings give the same version, so a rerun of ``registre digitize`` with the
    adapted model skips the pages it already read with it. ``root`` is the shipped model an adapted
    base came from (a second round keeps one ``+adapt-`` suffix); by default the base itself.
    """
    digest = hashlib.sha256()
    if root and root != base_version:
        digest.update(f"{base_version}\0".encode())
    for line in lines:
        digest.update(f"{line.page}\0{line.line_id}\0{line.text}\0".encode())
    digest.update(repr(sorted(asdict(cfg).items())).encode())
    return f"{root or base_version}+adapt-{digest.hexdigest()[:8]}"


def adapt(
    lines: Sequence[AdaptLine],
    out: Path,
    base: Path = DEFAULT_MODEL,
    cfg: AdaptConfig | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    held_out: Sequence[AdaptLine] | None = None,
    readings: Sequence[AdaptLine] = (),
) -> AdaptResult:
    """Fine-tune the recognizer at ``base`` on ``lines`` and write the adapted model to ``out``.

    ``lines`` are corrected lines; ``readings`` are lines of the register labelled by a model's own
    reading (no correction): they train alongside, never held out. ``progress(step, steps, lines_per_s)``
    is called every few steps. Nothing is written when held-out lines exist and no checkpoint reads them
    better than the base model (``result.written`` is None); with none (no corrected lines, or
    ``holdout_every=0``) the last weights are kept. ``held_out`` replaces the lines held out of ``lines``
    (all of ``lines`` then train): for benchmarks that follow the CER of other lines along the steps.
    """
    cfg = cfg or AdaptConfig()
    if cfg.steps < 1 or cfg.lr <= 0 or cfg.batch_size < 1:
        raise AdaptError("steps, batch size and learning rate must be positive")
    if cfg.augmentation not in AUGMENTATIONS:
        raise AdaptError(f"augmentation {cfg.augmentation!r}: one of {', '.join(AUGMENTATIONS)}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    data = read_model_file(Path(base))
    base_version = str(data.get("version", file_digest(Path(base))))
    root_version = str(data.get("adapted_from") or base_version)
    usable = [ln for ln in lines if ln.text.strip()]
    read = [ln for ln in readings if ln.text.strip()]
    if not usable and not read:
        raise AdaptError("no transcribed line to adapt on")
    old = Charset(list(data["charset"]))
    new_chars = sorted(set().union(*(old.unknown(ln.text) for ln in usable)))
    charset = old.extended(new_chars) if new_chars else old
    mcfg = CRNNConfig.from_dict(data["config"])
    mcfg.num_classes = len(charset)
    model = CRNN(mcfg)
    load_extending_head(model, data["state_dict"])
    if new_chars:
        log.info("characters new to the model, learned from these lines: %s", " ".join(new_chars))

    held: list[AdaptLine] = []
    train_lines: list[AdaptLine] = []
    if held_out is not None:
        held, train_lines = [ln for ln in held_out if ln.text.strip()], list(usable)
    else:
        every = cfg.holdout_every if len(usable) >= cfg.min_lines_for_holdout else 0
        for i, line in enumerate(usable):
            (held if every and i % every == every - 1 else train_lines).append(line)
    stride = mcfg.width_stride
    items = []
    n_read = 0
    for line, is_read in [(ln, False) for ln in train_lines] + [(ln, True) for ln in read]:
        ids = charset.encode(line.text)
        if label_fits(ids, line.image.shape[1], stride, augmented=True):
            items.append((line.image, ids, True))
            n_read += is_read
        else:
            log.warning(
                "%s %s: %d characters do not fit a %d px crop; not trained on",
                line.page,
                line.line_id,
                len(ids),
                line.image.shape[1],
            )
    if not items:
        raise AdaptError(f"none of the {len(train_lines) + len(read)} training lines fits its crop")

    started = time.monotonic()
    curve: dict[int, float] = {}
    best_state, best_step = None, 0
    if held:
        curve[0] = _cer(model, charset, held)
        log.info("held-out CER of the base model on %d lines: %.4f", len(held), curve[0])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    rng = random.Random(cfg.seed)
    step, epoch, seen, train_s = 0, 0, 0, 0.0
    # Held-out readings run on a fused copy, so the model stays in this mode throughout.
    model.train()
    if cfg.freeze_batchnorm:
        _freeze_batchnorm(model)
    while step < cfg.steps:
        batches = make_batches([it[0].shape[1] for it in items], cfg.batch_size, rng)
        dataset = EpochBatches(items, batches, cfg.seed, epoch, AUGMENTATIONS[cfg.augmentation], stride)
        for b in range(len(dataset)):
            if step >= cfg.steps:
                break
            t0 = time.monotonic()
            x, widths, targets, target_lengths = dataset[b]
            warm = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
            for group in opt.param_groups:
                group["lr"] = cfg.lr * warm * cosine_ratio(step / cfg.steps, cfg.min_lr_ratio)
            lp, _ = model.forward_train(x, shortcut=False)
            input_lengths = model.output_lengths(widths).clamp(max=lp.shape[0])
            loss = ctc(lp.float(), targets, input_lengths, target_lengths)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            step += 1
            seen += len(widths)
            train_s += time.monotonic() - t0
            if progress and (step % 10 == 0 or step == cfg.steps):
                progress(step, cfg.steps, seen / max(train_s, 1e-6))
            if held and (step % cfg.eval_every == 0 or step == cfg.steps):
                curve[step] = _cer(model, charset, held)
                log.info("step %d: held-out CER %.4f", step, curve[step])
                if curve[step] < curve[best_step]:
                    best_step, best_state = step, copy.deepcopy(model.state_dict())
        epoch += 1
    if not held:
        best_step, best_state = step, model.state_dict()
    model.eval()
    result = AdaptResult(
        base_version=base_version,
        version=adapted_version(base_version, usable + read, cfg, root_version),
        train_lines=len(items),
        read_lines=n_read,
        held_out_lines=len(held),
        # Blank lines, and training lines whose labels do not fit their crops (``held_out`` is not of ``lines``).
        dropped_lines=len(lines) + len(readings) - len(items) - (len(held) if held_out is None else 0),
        new_characters=new_chars,
        steps=step,
        best_step=best_step,
        cer_before=curve.get(0),
        cer_after=curve.get(best_step) if held else None,
        seconds=round(time.monotonic() - started, 1),
        lines_per_s=round(seen / max(train_s, 1e-6), 1),
        curve=curve,
    )
    if best_state is not None:
        model.load_state_dict(best_state)
        meta = {"adapted_from": root_version, "adaptation": {**result.to_dict(), "config": asdict(cfg)}}
        meta["adaptation"].pop("written")
        save_model(Path(out), model, charset, result.version, meta)
        result.written = Path(out)
    return result


def adapt_register(
    corrected: Sequence[AdaptLine],
    out: Path,
    base: Path = DEFAULT_MODEL,
    cfg: AdaptConfig | None = None,
    read: Callable[[Path], Sequence[AdaptLine]] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    say: Callable[[str], None] = log.info,
) -> tuple[AdaptResult, int]:
    """Adapt to one register from its ``corrected`` lines, its lines as a model reads them, or both.

    ``read(model)`` returns the register's lines labelled by ``model``'s reading (the caller reads them:
    line finder, recognizer, names LM). Without ``read``: one round on the corrected lines. Without
    corrected lines: one round on the base model's readings (self-training; nothing held out, the last
    weights kept). With both, two rounds: the corrected lines, then they and the first round's readings,
    from the first round's weights, the corrected held-out lines choosing; the second is dropped when it
    reads them no better. Returns the kept result and how many rounds it took.
    """
    cfg = cfg or AdaptConfig()
    if read is None:
        say(f"adapting on {len(corrected)} corrected lines")
        return adapt(corrected, out, base, cfg, progress=progress), 1
    if not corrected:
        readings = read(Path(base))
        say(f"adapting on {len(readings)} lines as the model reads them")
        return adapt([], out, base, cfg, progress=progress, readings=readings), 1
    out = Path(out)
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".round1")
    os.close(fd)
    first_path = Path(name)
    try:
        say(f"round 1: adapting on {len(corrected)} corrected lines")
        first = adapt(corrected, first_path, base, cfg, progress=progress)
        reader = first_path if first.written else Path(base)
        readings = read(reader)
        second = None
        if readings:
            say(f"round 2: adding {len(readings)} lines as the round's model reads them")
            second = adapt(corrected, out, reader, cfg, progress=progress, readings=readings)
        if second is not None and second.written:
            return second, 2
        say("round 2 read the held-out lines no better: keeping round 1" if readings else "no line read")
        if first.written:
            os.replace(first_path, out)
            first.written = out
        return first, 1
    finally:
        with contextlib.suppress(FileNotFoundError):
            first_path.unlink()
