"""`registre adapt --pages`: adapting the shipped recognizer to a register from its own scans, read by the pipeline."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flows.adaptation import register_readings, spread
from flows.settings import Settings
from ocr.checkpoint import DEFAULT_MODEL, load_model
from tests.conftest import SHARED_DATA

REGISTRE = [sys.executable, "-m", "flows.cli"]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pages"
CORRECTED = EXAMPLES / "FRAN_0025_0989_L-0.xml"
# The register's other page (a hand held out of every training), a scan with no text.
OTHER_PAGE = SHARED_DATA / "lectaurep" / "train" / "random-set-1" / "FRAN_0025_0989_L-1.jpg"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*REGISTRE, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture
def register(tmp_path: Path) -> tuple[Path, Path]:
    """(corrected, scans): a corrected page of register FRAN_0025_0989; its two scans and a broken one."""
    corrected, scans = tmp_path / "corrected", tmp_path / "scans"
    corrected.mkdir()
    scans.mkdir()
    for f in (CORRECTED, CORRECTED.with_suffix(".jpg")):
        (corrected / f.name).write_bytes(f.read_bytes())
    for f in (CORRECTED.with_suffix(".jpg"), OTHER_PAGE):
        (scans / f.name).write_bytes(f.read_bytes())
    (scans / "torn.jpg").write_bytes(b"not a jpeg")
    return corrected, scans


def test_spread_keeps_the_first_and_last_pages():
    keys = [f"p{i:02d}" for i in range(10)]
    assert spread(keys, 3) == ["p00", "p04", "p09"]
    assert spread(keys, 1) == ["p05"]
    assert spread(keys, 20) == keys


def test_register_readings_read_the_pages_as_digitize_does(register):
    _, scans = register
    read = register_readings(str(scans), Settings(), exclude={"FRAN_0025_0989_L-0"})
    assert read.pages == ["FRAN_0025_0989_L-1"]
    assert [s["page"] for s in read.skipped] == ["torn"] and "not an image" in read.skipped[0]["reason"]
    assert len(read.lines) > 80 and all(ln.text.strip() and ln.page == "FRAN_0025_0989_L-1" for ln in read.lines)
    assert all(ln.image.ndim == 2 and ln.image.shape[0] == 48 for ln in read.lines)
    # Its readings are text, mostly words of the names LM's French: not garbage.
    assert sum(len(ln.text) for ln in read.lines) > 1500


def test_cli_self_adapts_on_the_register_pages(tmp_path, register):
    _, scans = register
    out = tmp_path / "self.pt"
    done = run("adapt", "--pages", str(scans), "--out", str(out), "--steps", "10", "--threads", "2")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["rounds"] == 1 and summary["written"] == str(out)
    assert summary["read_pages"] == ["FRAN_0025_0989_L-0", "FRAN_0025_0989_L-1"]
    assert [s["page"] for s in summary["skipped_pages"]] == ["torn"]
    assert summary["held_out_lines"] == 0 and summary["train_lines"] == summary["read_lines"] > 150
    _, _, base = load_model(DEFAULT_MODEL)
    _, _, version = load_model(out)
    assert version == summary["version"] and version.startswith(base + "+adapt-")
    assert "reading" in done.stderr and "step 10/10" in done.stderr


def test_cli_two_rounds_from_corrected_and_read_pages(tmp_path, register):
    corrected, scans = register
    out = tmp_path / "two.pt"
    args = ("adapt", str(corrected), "--pages", str(scans), "--out", str(out), "--threads", "2")
    done = run(*args, "--steps", "5", "--holdout-every", "0")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    # The corrected page is not read again: only the register's other page is.
    assert summary["rounds"] == 2 and summary["corrected_pages"] == ["FRAN_0025_0989_L-0"]
    assert summary["read_pages"] == ["FRAN_0025_0989_L-1"]
    assert summary["read_lines"] > 80 and summary["train_lines"] > summary["read_lines"] + 100
    # The second round starts from the first's weights; the version keeps one suffix on the shipped model's.
    _, _, base = load_model(DEFAULT_MODEL)
    assert summary["version"].startswith(base + "+adapt-") and summary["version"].count("+adapt-") == 1
    assert "round 1" in done.stderr and "round 2" in done.stderr

    # Neither round reads the held-out corrected lines better: nothing written, no temporary file left.
    out.unlink()
    failed = run(*args, "--steps", "2", "--lr", "1e-12")
    assert failed.returncode == 1 and "no better" in failed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrected", "scans"]


def test_cli_adapt_needs_pages_or_corrections(tmp_path):
    nothing = run("adapt", "--out", str(tmp_path / "x.pt"))
    assert nothing.returncode == 2 and "GT_DIR" in nothing.stderr and "--pages" in nothing.stderr
    empty = run("adapt", "--pages", str(tmp_path), "--out", str(tmp_path / "x.pt"))
    assert empty.returncode == 2 and "no readable page image" in empty.stderr
    bad_url = run("adapt", "--pages", "ftp://host/scans", "--out", str(tmp_path / "x.pt"))
    assert bad_url.returncode == 2 and "s3://" in bad_url.stderr
    assert "Traceback" not in nothing.stderr + empty.stderr + bad_url.stderr
    assert not (tmp_path / "x.pt").exists()


def test_register_readings_from_s3(page_bytes, s3_prefix):
    """Scans in an S3 bucket (SeaweedFS on loopback) are read like a folder's: pages spread, a torn one skipped."""
    from flows.storage import open_storage

    url = s3_prefix + "/scans"
    store = open_storage(url, addressing_style="path")
    names = sorted(page_bytes)
    for name in names:
        store.put(f"reg/{name}", page_bytes[name])
    store.put("reg/torn.jpg", b"not a jpeg")
    store.put("reg/notes.txt", b"not a page")
    read = register_readings(url, Settings(s3_addressing_style="path"), max_pages=2)
    # Spread over the four images (sorted keys): the first and the last, the torn scan.
    assert read.pages == ["reg__" + names[0].rsplit(".", 1)[0]]
    assert [s["page"] for s in read.skipped] == ["reg__torn"]
    assert len(read.lines) > 5 and all(ln.text.strip() for ln in read.lines)
