"""A tiny real training run: loss falls, checkpoints are written, and a second call resumes."""

import inspect
import json
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ocr.corpus import SYNTHETIC, LineSample, load_line_cache, pack_lines
from ocr.train import EpochBatches, TrainConfig, cosine_ratio, make_batches, real_items, train


def in_own_interpreter(test):
    """Run a test that forks DataLoader workers in a fresh pytest process.

    Earlier tests of the suite leave state in this interpreter (Prefect's
    temporary server and its threads) that makes a forked worker exit with
    code 1 at its end; `registre train` never shares its process with them.
    """

    def wrapper(*args, **kwargs):
        if os.environ.get("REGISTRE_TEST_CHILD"):
            return test(*args, **kwargs)
        env = {**os.environ, "REGISTRE_TEST_CHILD": "1"}
        node = f"{Path(__file__).resolve()}::{test.__name__}"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]

    wrapper.__name__ = test.__name__
    wrapper.__signature__ = inspect.signature(test)
    return wrapper


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


def toy_samples() -> list[LineSample]:
    """The toy cache's lines, as a list (the ``toy_cache`` fixture pickles the same ones)."""
    rng = np.random.default_rng(0)
    words = ["ab", "abc", "cab", "ba", "bca", "acab"]
    samples = [draw_sample(rng, words[i % 6], "train") for i in range(96)]
    return samples + [draw_sample(rng, w, "val-seen") for w in words]


def test_packed_cache_loads_back_close_to_the_plain_one_and_smaller(tmp_path):
    samples = toy_samples()
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(samples))
    packed = tmp_path / "packed" / "lines.pkl"
    size = pack_lines(samples, packed, quality=85)
    assert size == packed.stat().st_size
    assert size < plain.stat().st_size
    back = load_line_cache(tmp_path / "no-data", packed)
    assert len(back) == len(samples)
    for a, b in zip(samples, back, strict=True):
        assert (b.text, b.page, b.line_id, b.volume, b.split, b.type) == (
            a.text,
            a.page,
            a.line_id,
            a.volume,
            a.split,
            a.type,
        )
        assert b.image.dtype == np.uint8 and b.image.shape == a.image.shape
        assert np.abs(b.image.astype(int) - a.image.astype(int)).mean() < 4
    # A plain cache still loads as it did.
    assert [s.text for s in load_line_cache(tmp_path / "no-data", plain)] == [s.text for s in samples]


def test_unknown_packed_format_is_refused(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"format": "something-else", "lines": []}))
    with pytest.raises(ValueError, match="format"):
        load_line_cache(tmp_path, bad)


@pytest.fixture()
def packed_with_synthetic(tmp_path):
    rng = np.random.default_rng(1)
    samples = toy_samples()
    samples += [
        LineSample(draw_sample(rng, w, SYNTHETIC).image, w, "synthetic", f"s{i}", SYNTHETIC, SYNTHETIC, "synthetic")
        for i, w in enumerate(["abca", "cba", "bb", "acb", "caab", "ab", "bac", "cc"])
    ]
    cache = tmp_path / "packed.pkl"
    pack_lines(samples, cache)
    return cache


# A deadlocked DataLoader worker fails the test in two minutes instead of hanging the suite.
@pytest.mark.timeout(320)
@in_own_interpreter
def test_workers_synthetic_from_cache_and_time_budget(tmp_path, packed_with_synthetic):
    # A budget the first batch spends: training stops there, mid-epoch, and validates. 0.6 ms: forking the
    # workers alone takes longer (0.06 s did not, once, on a fast machine, and the first batch ran above the floor).
    cfg = toy_config(
        tmp_path,
        packed_with_synthetic,
        "budget",
        epochs=50,
        workers=2,
        synthetic_from_cache=True,
        synthetic_ratio=0.25,
        augment=True,
        cosine=True,
        budget_minutes=0.00001,
        warmup_steps=1,
    )
    state = train(cfg)
    assert state.epoch == 1 and len(state.history) == 1 and state.step == 1
    assert state.seconds > 0
    assert np.isfinite(state.history[0]["loss"])
    history = [json.loads(x) for x in (tmp_path / "budget" / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0]
    # The synthetic split is neither trained on as a real line nor validated on.
    assert "cer/val-seen" in history[0] and not any(SYNTHETIC in k for k in history[0])
    # The lr decayed over the budget: the batch that spent it ran at the floor.
    assert history[0]["lr"] == pytest.approx(cfg.lr * cfg.min_lr_ratio, rel=1e-6)


def test_synthetic_from_cache_needs_synthetic_lines(tmp_path, toy_cache):
    with pytest.raises(ValueError, match="synthetic"):
        train(toy_config(tmp_path, toy_cache, "nosynth", synthetic_from_cache=True))


def toy_items(n: int = 40) -> list[tuple[np.ndarray, list[int], bool]]:
    rng = np.random.default_rng(2)
    words = ["ab", "abc", "cab", "ba", "bca", "acab"]
    return [(draw_sample(rng, words[i % 6], "train").image, [1 + (i % 3), 2], True) for i in range(n)]


@pytest.mark.timeout(320)
@in_own_interpreter
def test_epoch_batches_are_the_same_in_any_process():
    import random

    import torch

    items = toy_items()
    batches = make_batches([img.shape[1] for img, _, _ in items], 8, random.Random(0))
    ds = EpochBatches(items, batches, seed=3, epoch=1)

    def loaded(workers: int) -> list:
        loader = torch.utils.data.DataLoader(
            ds,
            batch_size=None,
            num_workers=workers,
            timeout=60 if workers else 0,
        )
        return list(loader)

    def same(a, b) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    direct = [ds[b] for b in range(len(ds))]
    assert all(same(ds[b], direct[b]) for b in range(len(ds)))
    for workers in (0, 2):
        out = loaded(workers)
        assert len(out) == len(direct)
        assert all(same(a, b) for a, b in zip(out, direct, strict=True))
    # Augmentation really is drawn: another epoch (or seed) distorts the lines otherwise.
    other = EpochBatches(items, batches, seed=3, epoch=2)
    assert not all(torch.equal(other[b][0], direct[b][0]) for b in range(len(ds)))
    # Labels follow the batch's lines.
    x, widths, targets, lengths = direct[0]
    assert x.shape[0] == len(batches[0]) == len(widths) == len(lengths)
    assert targets.tolist() == [k for i in batches[0] for k in items[i][1]]


@pytest.mark.timeout(320)
@in_own_interpreter
def test_workers_start_after_opencv_ran_in_the_training_process(tmp_path, toy_cache):
    # The training process has used OpenCV's thread pool (rendered synthetic lines, augmentation, an
    # earlier run) and the pool's threads are idle when the DataLoader forks its workers: the workers
    # must still build batches rather than deadlock on the pool's copied state.
    import time

    import cv2

    cv2.GaussianBlur(np.random.default_rng(0).random((1500, 1500)).astype(np.float32), (0, 0), 3)
    time.sleep(0.5)
    state = train(toy_config(tmp_path, toy_cache, "forked", epochs=1, workers=2, augment=True))
    assert state.epoch == 1


def test_cosine_ratio():
    assert cosine_ratio(0.0, 0.1) == pytest.approx(1.0)
    assert cosine_ratio(1.0, 0.1) == pytest.approx(0.1)
    assert cosine_ratio(0.5, 0.1) == pytest.approx(0.55)
    assert cosine_ratio(-0.5, 0.1) == pytest.approx(1.0)
    assert cosine_ratio(3.0, 0.1) == pytest.approx(0.1)
    ratios = [cosine_ratio(p, 0.05) for p in np.linspace(-0.2, 1.2, 57)]
    assert all(a >= b for a, b in zip(ratios[:-1], ratios[1:], strict=True))


def test_new_model_has_the_configured_channels(tmp_path, toy_cache):
    import torch

    from ocr.checkpoint import load_model

    train(toy_config(tmp_path, toy_cache, "narrow", epochs=1, channels=(8, 12, 16, 20)))
    last = torch.load(tmp_path / "narrow" / "last.pt", map_location="cpu", weights_only=False)
    assert last["config"]["channels"] == [8, 12, 16, 20]
    exported = torch.load(tmp_path / "narrow.pt", map_location="cpu", weights_only=True)
    assert exported["config"]["channels"] == [8, 12, 16, 20]
    model, _, _ = load_model(tmp_path / "narrow.pt")
    assert model.config.channels == (8, 12, 16, 20)
    assert model.cnn[0].out_channels == 8


def test_warmup_longer_than_an_epoch_reaches_the_full_rate(tmp_path, toy_cache):
    # Without --cosine the rate read back at each epoch start must be the unscaled one: a warm-up spanning
    # several epochs used to compound its scaling and leave the run at a fraction of --lr for good.
    cfg = toy_config(tmp_path, toy_cache, "warm", epochs=4, lr=1e-3, warmup_steps=24)  # 12 batches an epoch
    state = train(cfg)
    assert state.history[0]["step"] == 12
    assert [h["lr"] for h in state.history] == pytest.approx([1e-3] * 4)


def test_an_epoch_reads_the_segmented_crop_of_a_line_in_the_given_share():
    rng = np.random.default_rng(0)
    keep = [draw_sample(rng, "abc", "train") for _ in range(400)]
    encoded = [[1, 2, 3]] * len(keep)
    # The segmenter found three lines in four.
    segmented = {(s.page, s.line_id): np.zeros((48, 30), np.uint8) for s in keep[::4] + keep[1::4] + keep[2::4]}

    def share_read(share: float, **kw) -> float:
        items = real_items(keep, encoded, TrainConfig(segmented_share=share, **kw), segmented, rng)
        return sum(img.shape[1] == 30 for img, _, _ in items) / len(items), len(items)

    assert share_read(0.0) == (0.0, 400)
    assert share_read(1.0) == (0.75, 400)
    half, n = share_read(0.5, volume_weights={"toy": 2.0})
    assert n == 800 and 0.3 < half < 0.45


def test_training_loads_the_segmented_crops_whose_labels_fit(tmp_path, toy_cache, caplog):
    lines = [s for s in pickle.loads(toy_cache.read_bytes()) if s.split == "train"]
    seg_lines = [LineSample(s.image.copy(), s.text, s.page, s.line_id, s.volume, s.split, s.type) for s in lines]
    seg_lines[0].image = seg_lines[0].image[:, :4]  # too narrow for its label
    seg = tmp_path / "seg.pkl"
    seg.write_bytes(pickle.dumps(seg_lines))
    with caplog.at_level(logging.INFO, logger="ocr.train"):
        state = train(toy_config(tmp_path, toy_cache, "seg", epochs=2, segmented_share=0.5, segmented_cache=seg))
    assert f"{len(lines) - 1} training lines also have a segmenter's crop" in caplog.text
    assert state.epoch == 2


def test_init_from_narrower_weights_widens_them(tmp_path, toy_cache):
    import torch

    train(toy_config(tmp_path, toy_cache, "narrow", epochs=1, channels=(8, 12, 16, 20)))
    narrow = [json.loads(x) for x in (tmp_path / "narrow" / "history.jsonl").read_text().splitlines()]
    train(toy_config(tmp_path, toy_cache, "wide", epochs=1, channels=(8, 16, 24, 32), init_from=tmp_path / "narrow.pt"))
    wide = [json.loads(x) for x in (tmp_path / "wide" / "history.jsonl").read_text().splitlines()]
    # Epoch -1 measures the starting weights: the widened network reads what the narrow one did.
    assert wide[0]["epoch"] == -1
    assert abs(wide[0]["cer/all"] - narrow[-1]["cer/all"]) < 0.02
    last = torch.load(tmp_path / "wide" / "last.pt", map_location="cpu", weights_only=False)
    assert last["config"]["channels"] == [8, 16, 24, 32]


def test_the_seed_decides_the_run(tmp_path, toy_cache):
    # Same seed, same run (weights, line order, augmentation); another seed, another run: arms to average.
    def first_loss(name: str, seed: int) -> float:
        state = train(toy_config(tmp_path, toy_cache, name, epochs=1, augment=True, seed=seed))
        return state.history[0]["loss"]

    a, b, c = first_loss("a", 0), first_loss("b", 0), first_loss("c", 1)
    assert a == b
    assert a != c
