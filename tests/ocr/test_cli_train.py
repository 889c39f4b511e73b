"""`registre train` and `registre pack-lines` as a user runs them: option checks and a packed toy cache."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np

from ocr.corpus import PACKED_FORMAT, LineSample, load_line_cache

REGISTRE = [sys.executable, "-m", "flows.cli"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*REGISTRE, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def toy_line(text: str, split: str, i: int) -> LineSample:
    img = np.full((48, 8 * len(text) + 8), 230, np.uint8)
    for k, c in enumerate(text):
        h = 10 + (ord(c) - ord("a")) * 6
        img[24 - h // 2 : 24 + h // 2, 6 + 8 * k : 9 + 8 * k] = 30
    return LineSample(img, text, f"p-{split}", f"l{i}", "toy", split, "default")


def test_train_refuses_channels_that_are_not_four_positive_numbers(tmp_path):
    for bad in ("1,2", "8,16,0,32", "8,16,x,32"):
        out = run("train", "--channels", bad, "--run-dir", str(tmp_path / "run"), "--cache", str(tmp_path / "none"))
        assert out.returncode != 0
        assert "--channels" in out.stderr and "four positive numbers" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "last.pt").exists()


def test_train_refuses_an_unknown_augmentation_profile(tmp_path):
    out = run("train", "--augmentation", "heavy", "--run-dir", str(tmp_path / "run"), "--cache", str(tmp_path / "x"))
    assert out.returncode != 0
    assert "--augmentation" in out.stderr and "standard, writer" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()


def test_pack_lines_keeps_the_asked_splits(tmp_path):
    words = ["ab", "abc", "cab", "ba"]
    samples = [toy_line(w, "train", i) for i, w in enumerate(words * 3)]
    samples += [toy_line(w, "val-seen", 100 + i) for i, w in enumerate(words)]
    samples += [toy_line(w, "val-unseen", 200 + i) for i, w in enumerate(words)]
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(samples))
    out_file = tmp_path / "out" / "packed.pkl"
    out = run("pack-lines", str(out_file), "--cache", str(plain), "--splits", "train", "--data", str(tmp_path / "none"))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["lines"] == 12 and result["synthetic"] == 0
    with out_file.open("rb") as f:
        assert pickle.load(f)["format"] == PACKED_FORMAT
    back = load_line_cache(tmp_path / "none", out_file)
    assert [s.split for s in back] == ["train"] * 12
    assert [s.text for s in back] == [s.text for s in samples[:12]]
    assert [s.image.shape for s in back] == [s.image.shape for s in samples[:12]]


def test_train_with_segmented_crops_needs_their_cache_or_the_training_pages(tmp_path):
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps([toy_line("ab", "train", 0), toy_line("ab", "val-seen", 1)]))
    out = run(
        "train",
        *("--cache", str(plain), "--data", str(tmp_path / "none"), "--run-dir", str(tmp_path / "run")),
        *("--segmented-share", "0.5", "--segmented-cache", str(tmp_path / "seg.pkl")),
    )
    assert out.returncode != 0 and "no lectaurep/train folder" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "seg.pkl").exists()


def test_average_models_writes_a_validated_average(tmp_path):
    import torch

    from ocr.charset import Charset
    from ocr.checkpoint import load_model, save_model
    from ocr.model import CRNN, CRNNConfig

    words = ["ab", "abc", "cab", "ba"]
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps([toy_line(w, "val-seen", i) for i, w in enumerate(words)]))
    cs = Charset.build(words)
    config = CRNNConfig(num_classes=len(cs), channels=(8, 16, 16, 16), lstm_hidden=16, lstm_layers=1)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(tmp_path / f"m{seed}.pt")
        save_model(paths[-1], CRNN(config), cs, f"toy-{seed}")
    out_file = tmp_path / "out" / "avg.pt"
    common = ["--out", str(out_file), "--cache", str(plain), "--data", str(tmp_path / "none")]
    out = run("average-models", *map(str, paths), *common)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["version"].startswith("crnn-") and "-avg2-cer" in record["version"]
    assert 0 <= record["cer/val-seen"]
    _, _, version = load_model(out_file)
    assert version == record["version"]
    assert torch.load(out_file, weights_only=True)["averaged"] == ["toy-0", "toy-1"]
    # One file is not an average: a clear error and nothing written.
    bad = run("average-models", str(paths[0]), "--out", str(tmp_path / "one.pt"), *common[2:])
    assert bad.returncode != 0 and "at least two" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "one.pt").exists()
