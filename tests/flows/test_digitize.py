"""Real runs of the digitize-archive flow on Prefect's test server: local folders, SeaweedFS S3, Dask."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
import xmlschema
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterName,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.client.schemas.sorting import FlowRunSort
from prefect.states import Failed
from typer.testing import CliRunner

from flows.digitize import retry_on_transient, run_digitize
from flows.manifest import DONE, FAILED, read_manifest
from flows.records import record_from_json
from flows.settings import Settings
from flows.storage import TEMP_PREFIX, LocalStorage, StorageError, open_storage
from segmentation.loading import TruncatedImage

SCHEMAS = Path(__file__).resolve().parents[2] / "flows" / "schemas"

pytestmark = pytest.mark.usefixtures("prefect_harness")


def settings_for(model: Path, **kw: object) -> Settings:
    base = {"model": model, "use_lm": False, "formats": ["json"], "chunk_size": 2, "task_workers": 2}
    return Settings(**{**base, **kw})


def snapshot(folder: Path) -> dict[str, int]:
    """Return {file name: mtime_ns} of the records in a folder."""
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir()) if p.is_file()}


def artifacts_of(flow_run_id: str) -> dict[str, object]:
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in arts}


def test_local_run_records_manifest_artifacts_and_reruns(
    tmp_path: Path, tiny_model: Path, tiny_model_version: str, page_bytes: dict[str, bytes], write_pages
) -> None:
    good = dict(page_bytes)
    first = next(iter(good.values()))
    src = write_pages(tmp_path / "src", {**good, "reg2/broken.jpg": first[: len(first) // 2]})
    out = tmp_path / "out"
    settings = settings_for(tiny_model, formats=["json", "alto", "page"])

    s1 = run_digitize(str(src), str(out), settings)
    assert (s1.listed, s1.planned, s1.done, s1.failed) == (4, 4, 3, 1)
    assert s1.failures_by_reason == {"image: TruncatedImage": 1}
    assert not s1.ok and s1.model_version == tiny_model_version
    assert s1.chunks == 2  # 4 pages, chunks of 2

    # Records: one JSON (+ALTO, PAGE) per good page, in original-scan pixels, confidences 0-1.
    for name, data in good.items():
        pid = name.rsplit(".", 1)[0]
        rec = record_from_json((out / f"{pid}.json").read_bytes())
        assert rec.source_key == name and rec.sha256 == hashlib.sha256(data).hexdigest()
        assert rec.size_bytes == len(data) and rec.height == 900
        assert rec.model_version == tiny_model_version and rec.decoder == "greedy"
        assert len(rec.lines) >= 10
        assert sorted(ln.order for ln in rec.lines) == list(range(len(rec.lines)))
        for ln in rec.lines:
            assert 0 <= ln.confidence <= 1
            assert all(0 <= x < rec.width and 0 <= y < rec.height for x, y in ln.polygon + ln.baseline)
            for w in ln.words:
                assert 0 <= w.confidence <= 1 and w.box[0] <= w.box[2] <= rec.width and w.box[3] <= rec.height
        assert (out / f"{pid}.alto.xml").exists() and (out / f"{pid}.page.xml").exists()
    assert not list(out.glob("reg2__broken*"))
    alto = xmlschema.XMLSchema(
        str(SCHEMAS / "alto-4-4.xsd"), locations={"http://www.w3.org/1999/xlink": str(SCHEMAS / "xlink.xsd")}
    )
    pid = next(iter(good)).rsplit(".", 1)[0]
    alto.validate(str(out / f"{pid}.alto.xml"))
    xmlschema.validate(str(out / f"{pid}.page.xml"), str(SCHEMAS / "pagecontent-2019-07-15.xsd"))

    # Manifest: one line per attempt, failures with their reason; no parts left over.
    entries = read_manifest(LocalStorage(out))
    assert len(entries) == 4 and not (out / "manifest.parts").exists()
    broken = [e for e in entries if e.source_key == "reg2/broken.jpg"]
    assert broken[0].status == FAILED and "truncated" in broken[0].reason.lower()
    done = [e for e in entries if e.status == DONE]
    assert all(set(e.timings) >= {"load", "segment", "recognize", "decode", "write", "total"} for e in done)
    assert all(e.model_version == tiny_model_version for e in entries)

    # Prefect UI artifacts: progress at 100 %, a table of the pages, a markdown summary.
    arts = artifacts_of(s1.flow_run_id)
    assert float(arts["digitize-progress"].data) == pytest.approx(100.0)
    table = arts["digitize-pages"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert sorted(r["status"] for r in rows) == [DONE, DONE, DONE, FAILED]
    assert "Failures by reason" in arts["digitize-summary"].data

    # --only-failed retries only the failed page (still broken here): the done records are untouched.
    before = snapshot(out)
    s2 = run_digitize(str(src), str(out), settings, only_failed=True)
    assert (s2.planned, s2.done, s2.failed, s2.skipped) == (1, 0, 1, 3)
    assert {k: v for k, v in snapshot(out).items() if k != "manifest.jsonl"} == {
        k: v for k, v in before.items() if k != "manifest.jsonl"
    }

    # Repaired, a plain rerun picks up the failed page only.
    (src / "reg2" / "broken.jpg").write_bytes(first)
    s3 = run_digitize(str(src), str(out), settings)
    assert (s3.planned, s3.done, s3.failed) == (1, 1, 0) and s3.ok
    assert (out / "reg2__broken.json").exists()

    # Everything done with this model: a rerun does no work at all.
    before = snapshot(out)
    s4 = run_digitize(str(src), str(out), settings)
    assert (s4.planned, s4.chunks, s4.done, s4.failed, s4.skipped) == (0, 0, 0, 0, 4)
    assert snapshot(out) == before
    assert len(read_manifest(LocalStorage(out))) == 6


def test_a_page_failing_mid_write_leaves_no_partial_record(
    tmp_path: Path, tiny_model: Path, page_bytes: dict[str, bytes], write_pages
) -> None:
    names = sorted(page_bytes)[:2]
    src = write_pages(tmp_path / "src", {n: page_bytes[n] for n in names})
    out = tmp_path / "out"
    victim = names[0].rsplit(".", 1)[0]
    # Its PAGE-XML (the last format written) cannot be put in place: a folder holds the name.
    (out / f"{victim}.page.xml").mkdir(parents=True)
    summary = run_digitize(str(src), str(out), settings_for(tiny_model, formats=["json", "alto", "page"]))
    assert (summary.done, summary.failed) == (1, 1)
    assert list(summary.failures_by_reason) == ["write: StorageError"]
    assert not (out / f"{victim}.json").exists() and not (out / f"{victim}.alto.xml").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(TEMP_PREFIX)]
    other = names[1].rsplit(".", 1)[0]
    assert all((out / f"{other}{sfx}").exists() for sfx in (".json", ".alto.xml", ".page.xml"))
    entry = {e.page_id: e for e in read_manifest(LocalStorage(out))}[victim]
    assert entry.status == FAILED and entry.reason.startswith("write:")
    # --force redoes every page, the done one included.
    again = run_digitize(str(src), str(out), settings_for(tiny_model, formats=["json", "alto", "page"]), force=True)
    assert (again.planned, again.done, again.failed) == (2, 1, 1)


def test_s3_source_and_destination(tiny_model: Path, page_bytes: dict[str, bytes], s3_prefix: str) -> None:
    src_url, out_url = s3_prefix + "/scans", s3_prefix + "/records"
    src = open_storage(src_url, addressing_style="path")
    names = sorted(page_bytes)[:2]
    for n in names:
        src.put(f"reg/{n}", page_bytes[n])
    src.put("reg/readme.txt", b"not a page")
    settings = settings_for(tiny_model, s3_addressing_style="path")
    summary = run_digitize(src_url, out_url, settings)
    assert (summary.listed, summary.done, summary.failed) == (2, 2, 0)
    dst = open_storage(out_url, addressing_style="path")
    keys = sorted(dst.list_keys(extensions=None))
    assert keys == sorted([f"reg__{n.rsplit('.', 1)[0]}.json" for n in names] + ["manifest.jsonl", "names.sqlite"])
    from flows.names import search_output

    assert isinstance(search_output(dst, "Dupont"), list)  # the names index is read back from S3
    rec = record_from_json(dst.get(next(k for k in keys if k.endswith(".json"))))
    assert rec.source_key.startswith("reg/") and rec.lines
    again = run_digitize(src_url, out_url, settings)
    assert (again.planned, again.chunks) == (0, 0)


def test_dask_task_runner_produces_the_same_records(
    tmp_path: Path, tiny_model: Path, page_bytes: dict[str, bytes], write_pages
) -> None:
    names = sorted(page_bytes)[:2]
    src = write_pages(tmp_path / "src", {n: page_bytes[n] for n in names})
    # With the shipped names LM: beam search in a decoder pool here, in each Dask worker process there.
    threads = run_digitize(str(src), str(tmp_path / "threads"), settings_for(tiny_model, use_lm=True))
    dask = run_digitize(str(src), str(tmp_path / "dask"), settings_for(tiny_model, use_lm=True, dask_workers=2))
    assert threads.done == dask.done == 2 and threads.decoder == dask.decoder == "lm"
    for n in names:
        a = record_from_json((tmp_path / "threads" / f"{n.rsplit('.', 1)[0]}.json").read_bytes())
        b = record_from_json((tmp_path / "dask" / f"{n.rsplit('.', 1)[0]}.json").read_bytes())
        assert [(ln.id, ln.polygon, ln.baseline, ln.order, ln.text) for ln in a.lines] == [
            (ln.id, ln.polygon, ln.baseline, ln.order, ln.text) for ln in b.lines
        ]
        # Other processes may sum floats in another order: confidences agree to rounding.
        assert [ln.confidence for ln in a.lines] == pytest.approx([ln.confidence for ln in b.lines], abs=2e-3)
        assert (a.sha256, a.model_version, a.decoder, a.lm_version, a.segmenter) == (
            b.sha256,
            b.model_version,
            b.decoder,
            b.lm_version,
            b.segmenter,
        )
        assert a.lm_version and a.decoder.startswith("beam")
        assert a.segmenter.startswith("learned:lines-")  # the default line finder, named in every record
        assert [[w.text for w in ln.words] for ln in a.lines] == [[w.text for w in ln.words] for ln in b.lines]


def test_cli_exit_codes_and_summary(
    tmp_path: Path, tiny_model: Path, page_bytes: dict[str, bytes], write_pages
) -> None:
    from flows.cli import app

    name = sorted(page_bytes)[0]
    src = write_pages(tmp_path / "src", {name: page_bytes[name], "empty.png": b""})
    out = tmp_path / "out"
    args = ["digitize", str(src), "--out", str(out), "--model", str(tiny_model), "--no-lm", "--formats", "json,page"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "image: EmptyFile" in result.output and "--only-failed" in result.output
    assert (out / f"{name.rsplit('.', 1)[0]}.page.xml").exists()
    (src / "empty.png").unlink()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, [*args, "--formats", "json,hocr"])
    assert result.exit_code == 2 and "hocr" in result.output


def test_transient_storage_errors_are_retried_then_reported(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    settings = settings_for(
        tiny_model, s3_endpoint_url="http://127.0.0.1:9", storage_attempts=1, task_retries=2, retry_backoff_s=0.05
    )
    with pytest.raises(StorageError) as err:
        run_digitize("s3://scans/reg", "s3://records/reg", settings)
    assert err.value.transient
    # Task run states reach the server as events, which a loaded server may store a moment later.
    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            run = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["digitize-s3://scans/reg"])),
                sort=FlowRunSort.START_TIME_DESC,
                limit=1,
            )[0]
            tasks = client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run.id]))
            )
        listing = [t for t in tasks if t.task_key.startswith("list_pages") or t.name.startswith("list-pages")]
        if (listing and listing[0].run_count == 3) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert listing and listing[0].run_count == 3  # the first attempt and two retries


def test_retry_condition_retries_transient_errors_only() -> None:
    def verdict(exc: BaseException) -> bool:
        return retry_on_transient(None, None, Failed(data=exc))  # type: ignore[arg-type]

    assert verdict(StorageError("s3 down", transient=True))
    assert verdict(ConnectionResetError())
    assert not verdict(StorageError("access denied"))
    assert not verdict(TruncatedImage("page.jpg: the file is truncated"))
    assert not verdict(ValueError("bug"))


def test_failed_pages_are_found_from_the_runs_logs_task_states_and_final_message(
    tmp_path: Path, tiny_model: Path, page_bytes: dict[str, bytes], write_pages
) -> None:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterLevel

    good = sorted(page_bytes)[0]
    first = page_bytes[good]
    # Chunks by bytes: the scan alone in one chunk, the two broken files in the other.
    src = write_pages(tmp_path / "src", {"a.jpg": first, "notes.png": b"", "z-broken.jpg": first[:5000]})
    summary = run_digitize(str(src), str(tmp_path / "out"), settings_for(tiny_model))
    assert (summary.done, summary.failed, summary.chunks) == (1, 2, 2)
    assert 0 < summary.work_seconds < summary.seconds and summary.pages_per_minute > 0
    run_id = summary.flow_run_id
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(run_id)
        tasks = client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run_id])))
    assert flow_run.state.is_failed()
    assert flow_run.state.message == "2 of 3 pages failed: image: EmptyFile ×1, image: TruncatedImage ×1"
    chunks = {t.name: t.state for t in tasks if t.name.startswith("chunk-")}
    assert chunks["chunk-0"].name == "Completed" and not chunks["chunk-0"].message
    assert chunks["chunk-1"].is_completed() and chunks["chunk-1"].name == "AllPagesFailed"
    assert chunks["chunk-1"].message.startswith("all 2 pages failed: image: EmptyFile ×1")

    # Each failed page is a WARNING line of the run's logs, with its page id, source key and reason.
    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]), level=LogFilterLevel(ge_=30))
            )
        messages = [log.message for log in logs]
        if len(messages) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert any(m.startswith("page notes (notes.png) failed: image: EmptyFile") for m in messages), messages
    assert any(m.startswith("page z-broken (z-broken.jpg) failed: image: TruncatedImage") for m in messages)

    # The page table names source keys, with the reason's kind (the full reason is in the manifest).
    table = artifacts_of(run_id)["digitize-pages"].data
    rows = {r["source"]: r for r in (json.loads(table) if isinstance(table, str) else table)}
    assert set(rows) == {"a.jpg", "notes.png", "z-broken.jpg"}
    assert rows["z-broken.jpg"]["reason"] == "image: TruncatedImage" and rows["a.jpg"]["reason"] == ""
    assert "first page started to the last page finished" in artifacts_of(run_id)["digitize-summary"].data


def test_reread_lines_keep_their_word_boxes_on_the_page(
    tmp_path: Path, page_bytes: dict[str, bytes], write_pages
) -> None:
    # The shipped model reads some lines of a real band unsure: --reread reads them again squeezed and
    # stretched. A word's frames then count columns of the stretched crop, and its box must still land where
    # the word is on the page: where the plain reading puts the same word.
    name = sorted(page_bytes)[0]
    src = write_pages(tmp_path / "src", {name: page_bytes[name]})
    model = Path(__file__).resolve().parents[2] / "models" / "registre-crnn.pt"
    runs = {}
    for reread in (False, True):
        out = tmp_path / f"out-{reread}"
        summary = run_digitize(str(src), str(out), settings_for(model, reread=reread))
        assert summary.ok and summary.decoder == ("greedy+reread" if reread else "greedy")
        runs[reread] = record_from_json((out / f"{name.rsplit('.', 1)[0]}.json").read_bytes())
    plain, reread = runs[False], runs[True]
    assert plain.decoder == "greedy" and reread.decoder == "greedy+reread"
    changed = 0
    for a, b in zip(plain.lines, reread.lines, strict=True):
        if a.text == b.text or not a.words or not b.words or a.words[-1].text != b.words[-1].text:
            continue
        changed += 1
        width = a.bbox[2] - a.bbox[0]
        # Read 15 % wider or narrower, an unmapped box would move by 15 % of its distance from the line start.
        assert abs(a.words[-1].box[2] - b.words[-1].box[2]) <= 0.05 * width, (a.text, b.text)
    assert changed >= 1
