"""Training the CRNN with CTC: resumable, validated every epoch, best checkpoint exported.

``registre train`` calls :func:`train`. A run directory holds ``last.pt`` (model,
optimizer, scheduler, RNG and history: resume from it), ``best.pt`` (lowest
seen-hand validation CER) and ``history.jsonl``; the best model is also written
to ``models/`` when ``export`` is set.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from ocr.augment import AUGMENTATIONS, Augmentation, augment_line
from ocr.charset import FOREIGN_LETTERS, FRENCH_BASE, Charset
from ocr.checkpoint import DEFAULT_MODEL, atomic_torch_save, average_models, save_model
from ocr.corpus import DEFAULT_DATA, SYNTHETIC, LineSample, load_line_cache, load_segmented_cache
from ocr.inference import Recognizer, mixed_precision, to_tensor_batch, warn_if_slow_bf16
from ocr.metrics import ErrorRates
from ocr.model import CRNN, CRNNConfig, widen_state_dict

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved in its checkpoints."""

    data_dir: Path = DEFAULT_DATA
    run_dir: Path = Path("runs/crnn")
    cache: Path = Path(".cache/lines-all-h48.pkl")
    export: Path | None = DEFAULT_MODEL
    epochs: int = 80
    batch_size: int = 8
    lr: float = 1e-3
    #: On resume, set the learning rate to this (a hand-made decay step); None keeps the checkpoint's.
    set_lr: float | None = None
    #: A new run (no ``last.pt``) starts from these model weights instead of random ones (fine-tuning).
    init_from: Path | None = None
    #: Cosine decay of the learning rate from ``lr`` to ``lr * min_lr_ratio`` over ``epochs``; off: plateau halving.
    cosine: bool = False
    min_lr_ratio: float = 0.05
    #: Batches over which the learning rate ramps up linearly from zero at the start of a run (Goyal et al.,
    #: 2017): a fresh AdamW otherwise takes full-size steps on every weight at once, which undoes fine-tuned ones.
    warmup_steps: int = 300
    weight_decay: float = 1e-4
    #: Synthetic lines per real line in each epoch (0 disables the generator).
    synthetic_ratio: float = 0.25
    #: Draw the synthetic lines from the pre-rendered ones a packed cache carries (``registre pack-lines``)
    #: instead of rendering them: for machines without the fonts and name lists. They are augmented, since
    #: each is seen many times.
    synthetic_from_cache: bool = False
    #: Lines of a volume or corpus per epoch, as a multiple of its training lines (``{"random-set-1": 2.0,
    #: "copiste-dun-jour": 0.5}``; a volume's weight wins over its corpus's): registers stay the focus, more of
    #: the hands the model reads worst. Fractions are drawn at random.
    volume_weights: dict[str, float] = field(default_factory=dict)
    #: Share of the training lines read, each epoch, from their crop where the learned segmenter found them
    #: (``segmented_cache``, built on first use) instead of from the ground-truth polygon: the crops the
    #: recognizer meets in production. 0 trains on ground-truth crops only.
    segmented_share: float = 0.0
    segmented_cache: Path = Path(".cache/lines-seg-all-h48.pkl")
    #: Worker processes that augment and batch lines while the model trains (0: in the training process).
    workers: int = 0
    augment: bool = True
    #: Which :data:`ocr.augment.AUGMENTATIONS` profile distorts the real lines: ``standard`` or ``writer``.
    augmentation: str = "standard"
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    #: bfloat16 autocast on CPU: ~1.5x faster steps where oneDNN has AMX (Intel Sapphire Rapids and later),
    #: slower on CPUs without bf16 units. CUDA always trains in float16 mixed precision.
    bf16: bool = False
    max_minutes: float | None = None
    #: A fixed time budget: with ``cosine`` the learning rate decays over this many minutes of training
    #: (or over ``epochs``, whichever ends first), and training stops when it is spent, mid-epoch or not,
    #: after validating.
    #: For rented machines, where the time is known and the epoch speed is not.
    budget_minutes: float | None = None
    #: Stop after this many epochs without a better seen-hand validation CER.
    patience: int = 12
    lstm_hidden: int = 256
    lstm_layers: int = 2
    #: Weight of the CNN shortcut head's CTC loss beside the BiLSTM head's (:attr:`CRNNConfig.shortcut`;
    #: Retsinas et al. use 0.1). 0: no shortcut head; a model that has one keeps it.
    shortcut_weight: float = 0.0
    #: A new model's CNN widths (None: :class:`CRNNConfig`'s). With ``init_from``, wider widths than the
    #: weights' widen their CNN function-preservingly (Net2Net, :func:`ocr.model.widen_state_dict`).
    channels: tuple[int, ...] | None = None
    #: Use at most this many training lines (0: all); for smoke tests.
    limit_lines: int = 0
    log_every: int = 50

    def to_dict(self) -> dict:
        """Return the config as JSON-able data."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


@dataclass
class TrainState:
    """What a resumed run needs besides weights."""

    epoch: int = 0
    step: int = 0
    best_cer: float = float("inf")
    best_epoch: int = -1
    history: list[dict] = field(default_factory=list)
    #: Wall-clock seconds spent training and validating, over all resumes.
    seconds: float = 0.0


def fits_ctc(text_len: int, repeats: int, width: int, stride: int) -> bool:
    """Return True when a line of ``width`` pixels has enough CTC frames for its label."""
    return width // stride >= text_len + repeats


def _repeats(ids: Sequence[int]) -> int:
    return sum(1 for a, b in zip(ids, ids[1:], strict=False) if a == b)


def label_fits(ids: Sequence[int], width: int, stride: int, augmented: bool) -> bool:
    """Return True when a line ``width`` pixels wide has CTC frames for ``ids``.

    Augmentation may shrink a line to 0.8 of its width, so an augmented line must fit at that scale to train;
    a line an augmentation squeezes further (the ``writer`` profile's 0.65) is read unaugmented by
    :class:`EpochBatches`.
    """
    return fits_ctc(len(ids), _repeats(ids), int(width * 0.8) if augmented else width, stride)


def make_batches(widths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Return shuffled batches of indices of similar width (sorted within random pools)."""
    idx = list(range(len(widths)))
    rng.shuffle(idx)
    pool = batch_size * 50
    batches = []
    for s in range(0, len(idx), pool):
        chunk = sorted(idx[s : s + pool], key=lambda i: widths[i])
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


class EpochBatches(torch.utils.data.Dataset):
    """One epoch's batches, built (augmented, padded, labels flattened) on demand, in worker processes or not.

    Each batch draws its augmentation from its own generator, seeded by (seed,
    epoch, batch), so a run reads the same lines whatever the number of workers.
    With ``stride``, a line that augmentation squeezed below the width its
    labels need is read unaugmented instead (a wide ``augmentation.width`` can).
    """

    def __init__(
        self,
        items: Sequence[tuple[np.ndarray, list[int], bool]],
        batches: list[list[int]],
        seed: int,
        epoch: int,
        augmentation: Augmentation = AUGMENTATIONS["standard"],
        stride: int | None = None,
    ) -> None:
        self.items, self.batches, self.seed, self.epoch = items, batches, seed, epoch
        self.augmentation, self.stride = augmentation, stride

    def _augmented(self, img: np.ndarray, labels: list[int], rng: np.random.Generator) -> np.ndarray:
        out = augment_line(img, rng, aug=self.augmentation)
        if self.stride and not fits_ctc(len(labels), _repeats(labels), out.shape[1], self.stride):
            return img
        return out

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, b))
        picked = [self.items[i] for i in self.batches[b]]
        x, widths = to_tensor_batch([self._augmented(img, lab, rng) if aug else img for img, lab, aug in picked])
        targets = torch.tensor([k for _, lab, _ in picked for k in lab], dtype=torch.long)
        target_lengths = torch.tensor([len(lab) for _, lab, _ in picked], dtype=torch.long)
        return x, widths, targets, target_lengths


def _worker_init(_worker_id: int) -> None:
    # One thread per worker: the workers are the parallelism.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def real_items(
    keep: Sequence[LineSample],
    encoded: Sequence[list[int]],
    cfg: TrainConfig,
    segmented: dict[tuple[str, str], np.ndarray],
    rng: np.random.Generator,
) -> list[tuple[np.ndarray, list[int], bool]]:
    """Return one epoch's real lines as (image, labels, augment?) items.

    A volume's lines come ``cfg.volume_weights`` times (fractions drawn at
    random); each copy is the segmenter's crop of the line (``segmented``, by
    page and line id) with probability ``cfg.segmented_share`` where there is one.
    """
    items = []
    for s, e in zip(keep, encoded, strict=True):
        copies = 1
        if cfg.volume_weights:
            w = cfg.volume_weights.get(s.volume, cfg.volume_weights.get(s.corpus, 1.0))
            copies = int(w) + int(rng.random() < w - int(w))
        for _ in range(copies):
            image = s.image
            if segmented and rng.random() < cfg.segmented_share:
                image = segmented.get((s.page, s.line_id), image)
            items.append((image, e, cfg.augment))
    return items


def cosine_ratio(progress: float, min_ratio: float) -> float:
    """Return the learning-rate factor at ``progress`` (0..1) of a cosine decay to ``min_ratio``."""
    progress = min(max(progress, 0.0), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def evaluate_lines(recognizer: Recognizer, samples: Sequence[LineSample]) -> dict[str, ErrorRates]:
    """Return greedy error rates per split, per volume and ``all`` for the given lines."""
    was_training = recognizer.model.training
    recognizer.model.eval()
    recognizer.weights_changed()
    recs = recognizer.recognize([s.image for s in samples])
    rates: dict[str, ErrorRates] = defaultdict(ErrorRates)
    for s, r in zip(samples, recs, strict=True):
        for key in {"all", s.split, f"{s.split}/{s.corpus or s.volume}", f"{s.split}/{s.volume}"}:
            rates[key].add(s.text, r.text)
    recognizer.model.train(was_training)
    return dict(rates)


def selection_cer(rates: dict[str, ErrorRates]) -> float:
    """Return the CER a run picks its best epoch by: all validation lines, held-out hands included.

    Seen-hand pages alone reward fitting the training hands; the held-out hands
    are the test a new register puts to the model.
    """
    return rates["all"].cer


def load_extending_head(model: CRNN, state_dict: dict[str, torch.Tensor]) -> None:
    """Load ``state_dict`` into ``model``, whose output layer may have more labels than the weights.

    The old labels keep their rows; a new label starts with zero weights and a
    bias well below the others, so the model first never emits it and learns it
    from its lines without unlearning the old ones.
    """
    state_dict = dict(state_dict)
    for name in ("head", "shortcut"):
        layer = getattr(model, name)
        if layer is None:
            continue
        if f"{name}.weight" not in state_dict:
            # A shortcut head new to these weights starts from its random initialisation.
            state_dict[f"{name}.weight"], state_dict[f"{name}.bias"] = layer.weight.detach(), layer.bias.detach()
            continue
        head_w, head_b = state_dict[f"{name}.weight"], state_dict[f"{name}.bias"]
        n = head_w.shape[0]
        if n < layer.weight.shape[0]:
            w, b = layer.weight.detach().clone(), layer.bias.detach().clone()
            w[:n], w[n:] = head_w, 0.0
            b[:n], b[n:] = head_b, float(head_b[1:].min()) - 2.0
            state_dict[f"{name}.weight"], state_dict[f"{name}.bias"] = w, b
    model.load_state_dict(state_dict)


def validation_record(rates: dict[str, ErrorRates]) -> dict[str, float]:
    """Return the CER of every split and volume of :func:`evaluate_lines`, and the WER on seen hands."""
    return {
        **{f"cer/{k}": round(v.cer, 4) for k, v in sorted(rates.items())},
        "wer/val-seen": round(rates.get("val-seen", rates["all"]).wer, 4),
    }


def model_version(tag: str, seen_cer: float) -> str:
    """Return a recognizer's version: the day, what made it (``e3``: third epoch), its seen-hand CER."""
    return f"crnn-{date.today():%Y%m%d}-{tag}-cer{seen_cer:.3f}"


def resolve_device(name: str) -> str:
    """Return ``cuda`` when asked for ``auto`` and a GPU is present, else the name or ``cpu``."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def train(
    cfg: TrainConfig, synthetic: Callable[[np.random.Generator, int], list[tuple[np.ndarray, str]]] | None = None
) -> TrainState:
    """Train (or resume) a recognizer as configured; return the final state."""
    if cfg.augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation {cfg.augmentation!r}: one of {', '.join(AUGMENTATIONS)}")
    device = resolve_device(cfg.device)
    warn_if_slow_bf16(device, cfg.bf16, "registre train")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    samples = load_line_cache(cfg.data_dir, cfg.cache)
    train_set = [s for s in samples if s.split == "train"]
    val_set = [s for s in samples if s.split.startswith("val")]
    pool = [s for s in samples if s.split == SYNTHETIC]
    if cfg.synthetic_from_cache and cfg.synthetic_ratio > 0 and not pool:
        raise ValueError(f"{cfg.cache}: no pre-rendered synthetic lines (write them with `registre pack-lines`)")
    if cfg.limit_lines:
        train_set = train_set[: cfg.limit_lines]
        val_set = val_set[: max(50, cfg.limit_lines // 5)]
    last = cfg.run_dir / "last.pt"
    resume = torch.load(last, map_location="cpu", weights_only=False) if last.exists() else None
    init = None
    if resume:
        charset = Charset(resume["charset"])
        mcfg = CRNNConfig.from_dict(resume["config"])
    elif cfg.init_from:
        init = torch.load(cfg.init_from, map_location="cpu", weights_only=True)
        # Earlier weights learn the letters the new corpora bring (FOREIGN_LETTERS, any base character they lack).
        charset = Charset(list(init["charset"])).extended(FRENCH_BASE + FOREIGN_LETTERS)
        mcfg = CRNNConfig.from_dict(init["config"])
        mcfg.num_classes = len(charset)
        mcfg.shortcut = mcfg.shortcut or cfg.shortcut_weight > 0
        if cfg.channels and tuple(cfg.channels) != mcfg.channels:
            init["state_dict"] = widen_state_dict(init["state_dict"], mcfg, tuple(cfg.channels), seed=cfg.seed)
            log.info("CNN widened from %s to %s (Net2Net)", mcfg.channels, tuple(cfg.channels))
            mcfg.channels = tuple(cfg.channels)
    else:
        charset = Charset.build(s.text for s in train_set)
        mcfg = CRNNConfig(
            num_classes=len(charset),
            channels=tuple(cfg.channels or CRNNConfig.channels),
            lstm_hidden=cfg.lstm_hidden,
            lstm_layers=cfg.lstm_layers,
            shortcut=cfg.shortcut_weight > 0,
        )
    model = CRNN(mcfg)
    state = TrainState()
    if init is not None:
        load_extending_head(model, init["state_dict"])
        log.info("new run from the weights of %s (%s)", cfg.init_from, init.get("version"))
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=3)
    py_rng = random.Random(cfg.seed)
    np_rng = np.random.default_rng(cfg.seed)
    if resume:
        model.load_state_dict(resume["state_dict"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        state = TrainState(**resume["state"])
        py_rng.setstate(resume["py_rng"])
        np_rng.bit_generator.state = resume["np_rng"]
        log.info("resumed %s at epoch %d (best CER %.4f)", last, state.epoch, state.best_cer)
        if cfg.set_lr:
            for group in opt.param_groups:
                group["lr"] = cfg.set_lr
            sched.num_bad_epochs = 0
            log.info("learning rate set to %g", cfg.set_lr)

    # Every label must fit the frames its line yields; report the ones that cannot.
    encoded, keep = [], []
    stride = mcfg.width_stride
    unknown_chars = 0
    for s in train_set:
        ids = charset.encode(s.text)
        if not ids:
            continue
        if charset.unknown(s.text):
            # A label with a character the model has no output for would teach it a wrong alignment.
            unknown_chars += 1
            continue
        if not label_fits(ids, s.image.shape[1], stride, augmented=True):
            log.warning(
                "line %s/%s cannot fit its %d labels in %d px: not trained on",
                s.page,
                s.line_id,
                len(ids),
                s.image.shape[1],
            )
            continue
        encoded.append(ids)
        keep.append(s)
    log.info(
        "training on %d lines (%d dropped: %d for a character outside the charset, the rest for width), "
        "validating on %d",
        len(keep),
        len(train_set) - len(keep),
        unknown_chars,
        len(val_set),
    )
    # The segmenter's crop of a training line, where it found the line and its label fits that crop.
    segmented: dict[tuple[str, str], np.ndarray] = {}
    if cfg.segmented_share > 0:
        for s in load_segmented_cache(cfg.data_dir, cfg.segmented_cache):
            if s.split == "train" and label_fits(charset.encode(s.text), s.image.shape[1], stride, augmented=True):
                segmented[(s.page, s.line_id)] = s.image
        log.info(
            "%d training lines also have a segmenter's crop (read %.0f %% of the time)",
            len(segmented),
            100 * cfg.segmented_share,
        )
    unknown = set(cfg.volume_weights) - {s.volume for s in keep} - {s.corpus for s in keep}
    if unknown:
        log.warning("--volume-weights: no training lines of %s", ", ".join(sorted(unknown)))
    pool_items = []
    if cfg.synthetic_from_cache:
        for s in pool:
            ids = charset.encode(s.text)
            if ids and label_fits(ids, s.image.shape[1], stride, augmented=True):
                pool_items.append((s.image, ids, True))
        log.info("%d pre-rendered synthetic lines to draw from", len(pool_items))
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    scaler = torch.amp.GradScaler("cuda", enabled=device == "cuda")
    recognizer = Recognizer(model, charset, device=device)
    started = time.monotonic()

    budget_s = cfg.budget_minutes * 60 if cfg.budget_minutes else None
    if init is not None and state.step == 0:
        # Export only what beats the starting weights on the same validation lines (their own record may come
        # from another split): measure them first, as epoch -1 of the history.
        rates = evaluate_lines(recognizer, val_set)
        state.best_cer = selection_cer(rates)
        record = {"epoch": -1, "step": 0, "init_from": str(cfg.init_from), **validation_record(rates)}
        log.info("starting weights: %s", json.dumps(record))
        with (cfg.run_dir / "history.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
    while state.epoch < cfg.epochs:
        model.train()
        epoch_started = time.monotonic()
        # (image, labels, augment?): rendered synthetic lines come already distorted by their renderer.
        items = real_items(keep, encoded, cfg, segmented, np_rng)
        n_synth = int(len(keep) * cfg.synthetic_ratio)
        if pool_items and n_synth:
            picks = np_rng.choice(len(pool_items), min(n_synth, len(pool_items)), replace=False)
            items += [pool_items[int(i)] for i in picks]
        elif synthetic is not None and n_synth:
            for img, text in synthetic(np_rng, n_synth):
                ids = charset.encode(text)
                if ids and label_fits(ids, img.shape[1], stride, augmented=False):
                    items.append((img, ids, False))
        batches = make_batches([it[0].shape[1] for it in items], cfg.batch_size, py_rng)
        if not cfg.cosine:
            epoch_lrs = [group["lr"] for group in opt.param_groups]
        if cfg.workers:
            # Shut OpenCV's thread pool down before forking: a worker that inherits a live pool hangs in its
            # own cv2.setNumThreads (seen in pthread_cond_destroy), and the augmentation runs in the workers.
            cv2.setNumThreads(1)
        loader = torch.utils.data.DataLoader(
            EpochBatches(items, batches, cfg.seed, state.epoch, AUGMENTATIONS[cfg.augmentation], stride),
            batch_size=None,
            num_workers=cfg.workers,
            worker_init_fn=_worker_init if cfg.workers else None,
            pin_memory=device == "cuda",
            prefetch_factor=8 if cfg.workers else None,
        )
        t0, seen, loss_sum = time.monotonic(), 0, 0.0
        for b, (x, widths, targets, target_lengths) in enumerate(loader):
            if cfg.cosine:
                # Cosine decay (Loshchilov & Hutter, SGDR) per step, from the epoch (so resumes agree) or the
                # time budget spent, whichever is further along.
                progress = (state.epoch + b / len(batches)) / cfg.epochs
                if budget_s:
                    progress = max(progress, (state.seconds + time.monotonic() - epoch_started) / budget_s)
                epoch_lrs = [cfg.lr * cosine_ratio(progress, cfg.min_lr_ratio)] * len(opt.param_groups)
            scale = min(1.0, (state.step + 1) / max(cfg.warmup_steps, 1))
            for group, base in zip(opt.param_groups, epoch_lrs, strict=True):
                group["lr"] = base * scale
            x = x.to(device, non_blocking=True)
            # float16 with loss scaling (the scaler above) on CUDA; bfloat16, which needs none, on CPU when asked.
            with mixed_precision(device, cfg.bf16):
                lp, shortcut_lp = model.forward_train(x, shortcut=cfg.shortcut_weight > 0)
            input_lengths = model.output_lengths(widths).clamp(max=lp.shape[0])
            targets = targets.to(device)
            loss = ctc(lp.float(), targets, input_lengths, target_lengths)
            if shortcut_lp is not None and cfg.shortcut_weight > 0:
                loss = loss + cfg.shortcut_weight * ctc(shortcut_lp.float(), targets, input_lengths, target_lengths)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            scaler.step(opt)
            scaler.update()
            state.step += 1
            seen += len(widths)
            # Summed on the device: a .item() per step would wait for the GPU at every batch.
            loss_sum = loss_sum + loss.detach() * len(widths)
            if cfg.log_every and b % cfg.log_every == 0:
                rate = seen / max(time.monotonic() - t0, 1e-6)
                log.info(
                    "epoch %d batch %d/%d loss %.3f (epoch mean %.3f, %.0f lines/s)",
                    state.epoch,
                    b,
                    len(batches),
                    loss.item(),
                    float(loss_sum) / seen,
                    rate,
                )
            if budget_s and state.seconds + time.monotonic() - epoch_started >= budget_s:
                # A fixed budget ends mid-epoch, so runs compared on the same minutes saw the same time.
                log.info("time budget spent at batch %d/%d of epoch %d", b + 1, len(batches), state.epoch)
                break
        train_s = time.monotonic() - t0
        if not cfg.cosine:
            # Undo the warm-up scaling, so the plateau schedule (and the next epoch) starts from the real rate.
            for group, base in zip(opt.param_groups, epoch_lrs, strict=True):
                group["lr"] = base
        rates = evaluate_lines(recognizer, val_set)
        seen_cer = rates.get("val-seen", rates["all"]).cer
        val_cer = selection_cer(rates)
        if not cfg.cosine:
            sched.step(val_cer)
        record = {
            "epoch": state.epoch,
            "step": state.step,
            "loss": float(loss_sum) / max(seen, 1),
            "lines_per_s": seen / max(train_s, 1e-6),
            "lr": opt.param_groups[0]["lr"],
            "minutes": (time.monotonic() - started) / 60,
            **validation_record(rates),
        }
        state.history.append(record)
        log.info("epoch %d: %s", state.epoch, json.dumps(record))
        with (cfg.run_dir / "history.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        state.epoch += 1
        state.seconds += time.monotonic() - epoch_started
        version = model_version(f"e{state.epoch}", seen_cer)
        if val_cer < state.best_cer:
            state.best_cer, state.best_epoch = val_cer, state.epoch
            meta = {"validation": record, "train_config": cfg.to_dict()}
            save_model(cfg.run_dir / "best.pt", model, charset, version, meta)
            if cfg.export:
                save_model(Path(cfg.export), model, charset, version, meta)
        atomic_torch_save(
            {
                "config": mcfg.to_dict(),
                "charset": charset.chars,
                "state_dict": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "state": asdict(state),
                "py_rng": py_rng.getstate(),
                "np_rng": np_rng.bit_generator.state,
                "train_config": cfg.to_dict(),
                "version": version,
            },
            last,
        )
        if state.epoch - state.best_epoch >= cfg.patience:
            log.info("no improvement for %d epochs: stopping", cfg.patience)
            break
        if budget_s and state.seconds >= budget_s:
            log.info("time budget of %.1f minutes spent: stopping", cfg.budget_minutes)
            break
        if cfg.max_minutes and (time.monotonic() - started) / 60 >= cfg.max_minutes:
            log.info("time budget of %.0f minutes reached: stopping (resume with the same command)", cfg.max_minutes)
            break
    return state


def export_average(paths: Sequence[Path], out: Path, data_dir: Path, cache: Path) -> dict:
    """Average model files (:func:`ocr.checkpoint.average_models`), validate the average, write it to ``out``.

    Its version names the validation CER on seen hands, as a trained model's does;
    its metadata names the models averaged. Returns the validation record.
    """
    model, charset, versions = average_models(list(paths))
    samples = [s for s in load_line_cache(data_dir, cache) if s.split.startswith("val")]
    if not samples:
        raise ValueError(f"{cache}: no validation lines to check the average on")
    rates = evaluate_lines(Recognizer(model, charset, "average", "cpu"), samples)
    record = validation_record(rates)
    version = model_version(f"avg{len(versions)}", rates.get("val-seen", rates["all"]).cer)
    save_model(out, model, charset, version, {"validation": record, "averaged": versions})
    return {"version": version, **record}
