"""`registre adapt --pages`: adapting the shipped recognizer to a register from its own scans, read by the pipeline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.adaptation import adapted_key, group_by_register, register_readings, spread
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


def test_registers_are_the_folders_of_the_scans():
    keys = ["a/p1.jpg", "a/p2.jpg", "top.jpg", "b/c/p3.jpg", "a/p4.jpg"]
    groups = group_by_register(keys)
    assert groups == {"a": ["a/p1.jpg", "a/p2.jpg", "a/p4.jpg"], "": ["top.jpg"], "b/c": ["b/c/p3.jpg"]}
    assert adapted_key("b/c").startswith("adapted/b__c-") and adapted_key("").startswith("adapted/top-")
    assert adapted_key("b/c") != adapted_key("b__c")  # the digest keeps folders apart whose safe names meet


def test_engines_of_several_models_share_one_decoder(tmp_path):
    """Each register's adapted recognizer gets an engine; they share the decoder and only a few are kept."""
    from flows import pipeline

    pipeline.close_engines()
    models = []
    for i in range(pipeline.MAX_ENGINES + 1):
        models.append(tmp_path / f"m{i}.pt")
        models[-1].write_bytes(DEFAULT_MODEL.read_bytes())
    try:
        engines = [pipeline.get_engine(Settings(model=m, use_lm=False)) for m in models]
        assert len({id(e.recognizer) for e in engines}) == len(models)
        assert len({id(e.decoder) for e in engines}) == 1 and len({id(e.lock) for e in engines}) == 1
        assert len(pipeline._ENGINES) == pipeline.MAX_ENGINES  # the least recently used one was dropped
        assert pipeline.get_engine(Settings(model=models[-1], use_lm=False)) is engines[-1]
    finally:
        pipeline.close_engines()


def _fragment(path: Path) -> None:
    """Write the top eighth of a register scan: a page of a few lines, too few to adapt to."""
    import cv2

    page = cv2.imread(str(OTHER_PAGE), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(path), page[: page.shape[0] // 8])


@pytest.mark.usefixtures("prefect_harness")
def test_digitize_adapts_to_each_register_and_reuses_its_weights(tmp_path):
    """`digitize --adapt`: each folder's pages read by the model adapted to them; a rerun reuses the weights."""
    from flows.digitize import run_digitize
    from flows.manifest import DONE, FAILED, read_manifest
    from flows.storage import LocalStorage

    src, out = tmp_path / "src", tmp_path / "out"
    reg, small = src / "FRAN_0025_0989", src / "fragment"
    reg.mkdir(parents=True)
    small.mkdir()
    for f in (CORRECTED.with_suffix(".jpg"), OTHER_PAGE):
        (reg / f.name).write_bytes(f.read_bytes())
    (reg / "torn.jpg").write_bytes(b"not a jpeg")
    _fragment(small / "strip.png")
    settings = Settings(use_lm=False, adapt=True, adapt_steps=5, chunk_size=2, task_workers=2)
    summary = run_digitize(str(src), str(out), settings)
    _, _, base = load_model(DEFAULT_MODEL)
    registers = {r["register"]: r for r in summary.registers}
    assert registers["FRAN_0025_0989"]["adapted"] and "adapted on" in registers["FRAN_0025_0989"]["note"]
    adapted = registers["FRAN_0025_0989"]["version"]
    assert adapted.startswith(base + "+adapt-")
    assert not registers["fragment"]["adapted"] and "fewer than" in registers["fragment"]["note"]
    assert registers["fragment"]["version"] == base
    # Each page's record and manifest line name the model that read it; the torn scan failed with its reason.
    entries = {e.page_id: e for e in read_manifest(LocalStorage(out))}
    assert entries["FRAN_0025_0989__torn"].status == FAILED and "image" in entries["FRAN_0025_0989__torn"].reason
    for page in ("FRAN_0025_0989__FRAN_0025_0989_L-0", "FRAN_0025_0989__FRAN_0025_0989_L-1"):
        assert entries[page].status == DONE and entries[page].model_version == adapted
        assert json.loads((out / f"{page}.json").read_text())["model_version"] == adapted
    assert entries["fragment__strip"].status == DONE and entries["fragment__strip"].model_version == base
    assert (out / adapted_key("FRAN_0025_0989")).is_file() and not (out / adapted_key("fragment")).exists()
    assert summary.done == 3 and summary.failed == 1

    # A rerun finds the register's weights: no adaptation, no done page read again, the torn one retried.
    again = run_digitize(str(src), str(out), settings)
    registers = {r["register"]: r for r in again.registers}
    assert registers["FRAN_0025_0989"]["note"] == "reused from an earlier run"
    assert registers["FRAN_0025_0989"]["version"] == adapted
    assert again.skipped == 3 and again.planned == 1 and again.failed == 1


def test_eval_adapt_reads_each_register_with_its_adapted_model(tmp_path):
    gt = tmp_path / "gt" / "FRAN_0025_0989"
    gt.mkdir(parents=True)
    for f in (CORRECTED, CORRECTED.with_suffix(".jpg")):
        (gt / f.name).write_bytes(f.read_bytes())
    env = {**os.environ, "REGISTRE_ADAPT_STEPS": "5", "REGISTRE_ADAPT_ROUNDS": "2"}
    done = subprocess.run(
        [*REGISTRE, "eval", str(tmp_path / "gt"), "--adapt", "--no-lm"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    _, _, base = load_model(DEFAULT_MODEL)
    [register] = result["registers"]
    assert register["register"] == "FRAN_0025_0989" and register["adapted"] and "2 rounds" in register["note"]
    assert register["version"].startswith(base + "+adapt-") and result["adapt_seconds"] > 0
    assert result["lines"] > 100 and 0 < result["cer"] < 0.6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt"]  # the adapted weights are not left behind


def test_digitize_adapt_refuses_a_remote_dask_cluster(tmp_path):
    done = run("digitize", str(tmp_path), "--out", str(tmp_path / "out"), "--adapt", "--dask-address", "tcp://x:1")
    assert done.returncode == 2 and "not with dask_address" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(ValueError, match="dask_workers"):  # a scheduled run's options too
        Settings(adapt=True, dask_address="tcp://x:1")


def test_a_stop_ends_a_register_adaptation(tmp_path):
    """A signal during `digitize --adapt`'s adaptation stops it before training; nothing is stored."""
    from flows.adaptation import AdaptStopped, model_for_register
    from flows.pipeline import clear_stop, request_stop
    from flows.storage import LocalStorage

    src = tmp_path / "src"
    src.mkdir()
    _fragment(src / "strip.png")
    request_stop("a test")
    try:
        with pytest.raises(AdaptStopped, match="stopped before its adaptation"):
            model_for_register(
                "", ["strip.png"], {"strip.png": "strip"}, LocalStorage(src), Settings(use_lm=False), tmp_path, "v"
            )
    finally:
        clear_stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


@pytest.mark.usefixtures("prefect_harness")
def test_digitize_adapt_from_and_to_s3(tmp_path, s3_prefix):
    """Scans and records on S3 (SeaweedFS on loopback): the register's weights are stored there and reused."""
    from flows.digitize import run_digitize
    from flows.storage import open_storage

    src_url, out_url = s3_prefix + "/scans", s3_prefix + "/records"
    src = open_storage(src_url, addressing_style="path")
    for f in (CORRECTED.with_suffix(".jpg"), OTHER_PAGE):
        src.put(f"reg/{f.name}", f.read_bytes())
    settings = Settings(use_lm=False, adapt=True, adapt_steps=2, s3_addressing_style="path")
    summary = run_digitize(src_url, out_url, settings)
    assert summary.done == 2 and summary.failed == 0
    [register] = summary.registers
    assert register["register"] == "reg" and register["adapted"]
    out = open_storage(out_url, addressing_style="path")
    assert out.exists(adapted_key("reg"))
    (tmp_path / "reg.pt").write_bytes(out.get(adapted_key("reg")))
    _, _, version = load_model(tmp_path / "reg.pt")
    assert version == register["version"]
    record = json.loads(out.get("reg__FRAN_0025_0989_L-1.json"))
    assert record["model_version"] == version

    again = run_digitize(src_url, out_url, settings)
    assert again.registers[0]["note"] == "reused from an earlier run" and again.skipped == 2 and again.planned == 0


@pytest.mark.usefixtures("prefect_harness")
def test_a_register_that_cannot_be_adapted_to_is_read_by_the_base_model(tmp_path):
    """The adapted weights cannot be stored (a file where DST/adapted/ should be): the register's pages are read
    by the shipped model, the summary says why, and no page is lost."""
    from flows.digitize import run_digitize

    src, out = tmp_path / "src" / "reg", tmp_path / "out"
    src.mkdir(parents=True)
    out.mkdir()
    (src / OTHER_PAGE.name).write_bytes(OTHER_PAGE.read_bytes())
    (out / "adapted").write_text("in the way")
    settings = Settings(use_lm=False, adapt=True, adapt_steps=2)
    summary = run_digitize(str(tmp_path / "src"), str(out), settings)
    _, _, base = load_model(DEFAULT_MODEL)
    [register] = summary.registers
    assert not register["adapted"] and register["note"].startswith("not adapted: ") and register["version"] == base
    assert summary.done == 1 and summary.failed == 0
    assert json.loads((out / "reg__FRAN_0025_0989_L-1.json").read_text())["model_version"] == base
