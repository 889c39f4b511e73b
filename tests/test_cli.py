"""The `registre` command as a user runs it: help texts and the eval contract on a real page."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REGISTRE = [sys.executable, "-m", "flows.cli"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*REGISTRE, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_help_lists_every_subcommand():
    out = run("--help")
    assert out.returncode == 0
    for cmd in ("digitize", "eval", "train", "build-lm", "show"):
        assert cmd in out.stdout
    ev = run("eval", "--help").stdout
    assert "--segmentation" in ev and "--no-lm" in ev and "--predictions" in ev


def test_eval_gt_no_lm_on_a_real_page(tmp_path, example_pages, repo_root):
    if not (repo_root / "models" / "registre-crnn.pt").exists():
        pytest.fail("the shipped recognizer models/registre-crnn.pt is missing")
    gt = tmp_path / "gt"
    gt.mkdir()
    page = example_pages[0]
    for f in (page, page.with_suffix(".xml")):
        (gt / f.name).write_bytes(f.read_bytes())
    preds = tmp_path / "preds.jsonl"
    out = run("eval", str(gt), "--segmentation", "gt", "--no-lm", "--predictions", str(preds))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    for key in ("cer", "wer", "lines", "chars", "lines_per_s", "seconds"):
        assert key in result
    assert result["lines"] > 30 and result["chars"] > 100
    # A real trained model, on a page it never trained on: far better than chance.
    assert result["cer"] < 0.6
    rows = [json.loads(x) for x in preds.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == result["lines"]
    assert set(rows[0]) == {"page", "line_id", "text", "confidence"}
    assert all(0.0 <= r["confidence"] <= 1.0 for r in rows)


def test_eval_with_lm_and_a_hotwords_file(tmp_path, example_pages):
    # The names of the page itself, as an archivist would list a register's families.
    import re

    gt = tmp_path / "gt"
    gt.mkdir()
    page = example_pages[0]
    for f in (page, page.with_suffix(".xml")):
        (gt / f.name).write_bytes(f.read_bytes())
    xml = page.with_suffix(".xml").read_text(encoding="utf-8")
    names = sorted({w for w in re.findall(r'CONTENT="([^"]+)"', xml) if w[:1].isupper() and len(w) > 3})
    assert names, "no capitalized words in the page's ground truth"
    hot = tmp_path / "families.txt"
    hot.write_text("\n".join(names) + "\n", encoding="utf-8")
    preds = tmp_path / "preds.jsonl"
    plain = run("eval", str(gt), "--segmentation", "gt", "--predictions", str(preds))
    boosted = run("eval", str(gt), "--segmentation", "gt", "--hotwords", str(hot))
    assert plain.returncode == 0 and boosted.returncode == 0, plain.stderr + boosted.stderr
    plain_cer, boosted_cer = json.loads(plain.stdout)["cer"], json.loads(boosted.stdout)["cer"]
    assert boosted_cer < plain_cer
    # Line confidences are probabilities of the text read: on a page of a hand the model trained on, most
    # lines are read right and sure (median 0.9; 0.09 when the blank penalty left the frames unnormalized).
    confidences = sorted(json.loads(x)["confidence"] for x in preds.read_text(encoding="utf-8").splitlines())
    assert confidences[len(confidences) // 2] > 0.6


def test_eval_on_a_folder_without_ground_truth_fails_clearly(tmp_path):
    out = run("eval", str(tmp_path), "--no-lm")
    assert out.returncode != 0
    assert "no ALTO or PAGE-XML" in out.stderr


def test_show_draws_lines_and_text_over_a_real_page(tmp_path, example_pages):
    import cv2

    page = example_pages[2]
    out_png = tmp_path / "sub" / "overlay.png"
    out = run("show", str(page), "--out", str(out_png), "--no-lm")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["lines"] > 30 and summary["words"] >= summary["lines"]
    overlay = cv2.imread(str(out_png))
    original = cv2.imread(str(page))
    assert overlay.shape == original.shape
    # Drawn outlines are saturated colours the gray scan does not contain.
    b, g, r = (overlay[..., i].astype(int) for i in range(3))
    coloured = (abs(b - g) > 60) | (abs(g - r) > 60) | (abs(b - r) > 60)
    assert coloured.mean() > 0.005
    assert not list(out_png.parent.glob(".*.tmp"))


def test_show_refuses_a_file_that_is_not_an_image(tmp_path):
    bad = tmp_path / "page.jpg"
    bad.write_text("not a scan")
    out = run("show", str(bad), "--out", str(tmp_path / "o.png"))
    assert out.returncode != 0
    assert "page.jpg" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "o.png").exists()
