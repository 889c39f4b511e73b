"""`registre adapt`: fine-tuning the shipped recognizer on a corrected page of a register it never saw."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from ocr.adapt import AdaptConfig, AdaptError, AdaptLine, adapt, adapted_version
from ocr.charset import label_text
from ocr.checkpoint import DEFAULT_MODEL, load_model
from ocr.corpus import page_lines
from ocr.groundtruth import read_ground_truth
from ocr.inference import Recognizer
from ocr.metrics import ErrorRates

REGISTRE = [sys.executable, "-m", "flows.cli"]
UNSEEN_PAGE = Path(__file__).resolve().parents[2] / "examples" / "pages" / "FRAN_0025_0989_L-0.xml"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*REGISTRE, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def unseen_lines() -> list[AdaptLine]:
    """The transcribed lines of a page of register FRAN_0025_0989, a hand held out of every training."""
    page = read_ground_truth(UNSEEN_PAGE)
    gray = cv2.imread(str(page.image_path), cv2.IMREAD_GRAYSCALE)
    texts = {ln.id: ln.text for ln in page.lines}
    lines = [AdaptLine(page.id, i, crop, label_text(texts[i] or "") or "") for i, crop in page_lines(page, gray)]
    return [ln for ln in lines if ln.text]


def cer(model: Path, lines: list[AdaptLine]) -> float:
    rates = ErrorRates()
    readings = Recognizer.load(str(model), device="cpu").recognize([x.image for x in lines])
    for ln, rec in zip(lines, readings, strict=True):
        rates.add(ln.text, rec.text)
    return rates.cer


def test_adapting_on_a_page_reads_its_lines_better_and_learns_a_new_character(tmp_path, unseen_lines):
    lines = unseen_lines[:60]
    # A character the shipped charset lacks: the head grows a label for it.
    lines[0] = AdaptLine(lines[0].page, lines[0].line_id, lines[0].image, lines[0].text + "Ω")
    out = tmp_path / "adapted.pt"
    cfg = AdaptConfig(steps=40, holdout_every=0, threads=2)
    result = adapt(lines, out, DEFAULT_MODEL, cfg)
    assert result.written == out and result.held_out_lines == 0 and result.cer_before is None
    assert result.new_characters == ["Ω"]
    assert result.train_lines + result.dropped_lines == len(lines)
    _, charset, version = load_model(out)
    _, base_charset, base_version = load_model(DEFAULT_MODEL)
    assert "Ω" in charset.chars and len(charset) == len(base_charset) + 1
    assert version == result.version == adapted_version(base_version, lines, cfg)
    assert version.startswith(base_version + "+adapt-")
    # Forty steps on these lines fit them: the adapted weights read them better than the shipped ones.
    assert cer(out, lines[1:]) < cer(DEFAULT_MODEL, lines[1:]) - 0.02


def test_no_model_is_written_when_the_held_out_lines_read_no_better(tmp_path, unseen_lines):
    out = tmp_path / "adapted.pt"
    result = adapt(unseen_lines[:40], out, DEFAULT_MODEL, AdaptConfig(steps=5, lr=1e-12, holdout_every=4))
    assert result.held_out_lines == 10 and set(result.curve) == {0, 5}
    assert result.best_step == 0 and not result.improved and result.written is None
    assert not out.exists()


def test_adapting_needs_transcribed_lines(tmp_path, unseen_lines):
    blank = [AdaptLine("p", "l", unseen_lines[0].image, "  ")]
    with pytest.raises(AdaptError, match="no transcribed line"):
        adapt(blank, tmp_path / "x.pt")
    with pytest.raises(AdaptError, match="augmentation"):
        adapt(unseen_lines[:3], tmp_path / "x.pt", cfg=AdaptConfig(augmentation="heavy"))
    assert not (tmp_path / "x.pt").exists()


def test_cli_adapts_on_a_folder_of_corrected_pages(tmp_path):
    gt = tmp_path / "gt"
    gt.mkdir()
    for f in (UNSEEN_PAGE, UNSEEN_PAGE.with_suffix(".jpg")):
        (gt / f.name).write_bytes(f.read_bytes())
    (gt / "broken.xml").write_text("<alto>", encoding="utf-8")
    (gt / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "register.pt"
    done = run("adapt", str(gt), "--out", str(out), "--steps", "20", "--holdout-every", "0", "--threads", "2")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["written"] == str(out) and summary["steps"] == 20
    assert summary["train_lines"] > 100 and summary["lines_per_s"] > 0
    assert [s["page"] for s in summary["skipped_pages"]] == ["broken"]
    assert "step 20/20" in done.stderr
    # The adapted model reads pages like the shipped one.
    ev = run("eval", str(gt), "--no-lm", "--model", str(out))
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["lines"] > 100


def test_cli_adapt_fails_clearly(tmp_path):
    empty = run("adapt", str(tmp_path), "--out", str(tmp_path / "x.pt"))
    assert empty.returncode == 2 and "no ALTO or PAGE-XML" in empty.stderr
    gt = tmp_path / "gt"
    gt.mkdir()
    for f in (UNSEEN_PAGE, UNSEEN_PAGE.with_suffix(".jpg")):
        (gt / f.name).write_bytes(f.read_bytes())
    bad_model = tmp_path / "model.pt"
    bad_model.write_bytes(b"not a model")
    wrong = run("adapt", str(gt), "--out", str(tmp_path / "x.pt"), "--model", str(bad_model), "--steps", "1")
    assert wrong.returncode == 2 and "not a readable model file" in wrong.stderr
    folder = run("adapt", str(gt), "--out", str(tmp_path))
    assert folder.returncode == 2 and "a folder" in folder.stderr
    shipped = tmp_path / "shipped.pt"
    shipped.write_bytes(DEFAULT_MODEL.read_bytes())
    itself = run("adapt", str(gt), "--out", str(shipped), "--model", str(shipped))
    assert itself.returncode == 2 and "the model it starts from" in itself.stderr
    assert shipped.read_bytes() == DEFAULT_MODEL.read_bytes()
    assert "Traceback" not in empty.stderr + wrong.stderr + folder.stderr + itself.stderr
    assert not (tmp_path / "x.pt").exists()
