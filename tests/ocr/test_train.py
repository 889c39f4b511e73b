"""A tiny real training run: loss falls, checkpoints are written, and a second call resumes."""

import json
import pickle

import numpy as np
import pytest

from ocr.corpus import LineSample
from ocr.train import TrainConfig, make_batches, train


def draw_sample(rng: np.random.Generator, text: str, split: str) -> LineSample:
    # One vertical stroke per character: a learnable toy script.
    w = 8 * len(text) + 8
    img = np.full((48, w), 230, np.uint8)
    for i, c in enumerate(text):
        h = 10 + (ord(c) - ord("a")) * 6
        img[24 - h // 2 : 24 + h // 2, 6 + 8 * i : 9 + 8 * i] = 30
    return LineSample(img, text, f"p-{split}", f"l{rng.integers(1e9)}", "toy", split, "default")


@pytest.fixture()
def toy_cache(tmp_path):
    rng = np.random.default_rng(0)
    words = ["ab", "abc", "cab", "ba", "bca", "acab"]
    samples = [draw_sample(rng, words[i % 6], "train") for i in range(96)]
    samples += [draw_sample(rng, w, "val-seen") for w in words]
    cache = tmp_path / "cache.pkl"
    cache.write_bytes(pickle.dumps(samples))
    return cache


def toy_config(tmp_path, cache, name: str, **overrides) -> TrainConfig:
    """Return a small CPU training config on the toy cache, run in ``tmp_path/name``."""
    settings = dict(
        epochs=4, batch_size=8, lr=3e-3, augment=False, lstm_hidden=32, log_every=0, patience=100, warmup_steps=4
    )
    settings.update(overrides)
    return TrainConfig(run_dir=tmp_path / name, cache=cache, export=tmp_path / f"{name}.pt", **settings)


def test_training_learns_and_resumes(tmp_path, toy_cache):
    cfg = toy_config(tmp_path, toy_cache, "run")
    state = train(cfg)
    assert state.epoch == 4
    losses = [h["loss"] for h in state.history]
    assert losses[-1] < losses[0] * 0.6
    assert (tmp_path / "run" / "last.pt").exists() and (tmp_path / "run.pt").exists()
    history = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]

    cfg.epochs = 5
    resumed = train(cfg)
    assert resumed.epoch == 5 and len(resumed.history) == 5
    assert resumed.history[:4] == state.history


def test_bf16_autocast_on_cpu_trains(tmp_path, toy_cache):
    state = train(toy_config(tmp_path, toy_cache, "bf16", epochs=3, bf16=True, device="cpu"))
    losses = [h["loss"] for h in state.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_batches_cover_every_line_once_and_group_widths():
    import random

    widths = list(np.random.default_rng(1).integers(20, 900, 500))
    batches = make_batches(widths, 16, random.Random(0))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(500))
    spread = np.mean([max(widths[i] for i in b) - min(widths[i] for i in b) for b in batches])
    assert spread < 200


def test_fine_tuning_starts_from_given_weights_with_warmup_and_cosine_decay(tmp_path, toy_cache):
    base = toy_config(tmp_path, toy_cache, "base", epochs=6)
    trained = train(base)
    start_loss = trained.history[0]["loss"]
    fine = toy_config(
        tmp_path,
        toy_cache,
        "fine",
        epochs=3,
        lr=1e-3,
        init_from=tmp_path / "base.pt",
        cosine=True,
        min_lr_ratio=0.1,
        warmup_steps=6,
    )
    tuned = train(fine)
    # The first epoch already trains from the learned weights, not from random ones.
    assert tuned.history[0]["loss"] < start_loss * 0.6
    lrs = [h["lr"] for h in tuned.history]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] <= 1e-3 and lrs[-1] >= 1e-4
    # Nothing is exported unless it beats the starting weights' recorded validation CER.
    import torch

    start_cer = torch.load(tmp_path / "base.pt", weights_only=True)["validation"]["cer/val-seen"]
    exported = (tmp_path / "fine.pt").exists()
    assert exported == (min(h["cer/val-seen"] for h in tuned.history) < start_cer)
