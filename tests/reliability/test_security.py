"""Security: outputs never escape DST, credentials and signed URLs never show, XML never resolves entities.

Keys that try to climb out of the destination come from an S3 source (moto
keeps ``..`` keys literally, SeaweedFS refuses them) and from local file
names; the run's records must all land directly in DST under safe names.
A run through the CLI with distinctive credentials must not show them in its
output, its records and manifest, or anything Prefect stored (flow and task
parameters, logs, artifacts).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from badinputs import encode, good_pages, reference_page, unsafe_ground_truth
from faultproxy import FaultProxy
from loopback import s3_client
from runkit import audit, put_pages, run_registre

from flows.digitize import run_digitize
from flows.manifest import DONE, FAILED
from flows.records import LineRecord, PageRecord, assign_page_ids
from flows.serializers import to_alto, to_page_xml
from flows.settings import Settings
from flows.storage import LocalStorage
from ocr.groundtruth import GroundTruthError, read_ground_truth

pytestmark = pytest.mark.usefixtures("prefect_harness")

SECRET = "rEgIsTrE-sEcReT-9f1c2b7e4d"
SESSION_TOKEN = "rEgIsTrE-tOkEn-5a6b7c8d9e"
#: Marks of a SigV4 or SigV2 presigned URL or of a signed request.
SIGNED_MARKS = ("X-Amz-Signature", "X-Amz-Credential", "Signature=", "AWSAccessKeyId=", "X-Amz-Security-Token")

#: Source keys that try to climb out of the destination, or collide once made safe.
S3_KEYS = [
    "../../etc/passwd.jpg",
    "reg/../../../tmp/evil.jpg",
    "./a/./b.jpg",
    "back\\slash\\..\\..\\win.jpg",
    "%2e%2e/%2e%2e/encoded.jpg",
    "....//....//dots.jpg",
    "/leading-slash.jpg",
    "a/b.jpg",
    "a__b.jpg",  # the same page id as a/b.jpg
    "Été 1850.jpg",
    "E\u0301te\u0301 1850.jpg",  # the same name in NFD: the same page id
    "Page.jpg",
    "page.jpg",  # differs only in case
    "x" * 300 + ".jpg",
]
LOCAL_NAMES = [
    "..hidden..page.jpg",
    "a../..b.jpg",
    "%2e%2e%2fencoded.jpg",
    "line\nbreak.jpg",
    "Registre 1788/Baptêmes .. Été/acte n°3 ..copie.jpg",
]


def tree(root: Path) -> set[str]:
    """Return every path under ``root``, relative."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def settings_for(model: Path, **kw: object) -> Settings:
    base = {"model": model, "use_lm": False, "formats": ["json", "alto", "page"], "chunk_size": 4}
    return Settings(**{**base, **kw})


@pytest.fixture
def moto_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return moto_endpoint


def test_keys_that_climb_out_stay_inside_dst(tmp_path: Path, tiny_model: Path, moto_env: str) -> None:
    pages = dict(zip(S3_KEYS, good_pages(len(S3_KEYS)).values(), strict=True))
    put_pages(moto_env, "climb", "scans", pages)
    # The destination sits deep in a folder the test watches as a whole.
    out = tmp_path / "a" / "b" / "out"
    out.mkdir(parents=True)
    before = tree(tmp_path)
    summary = run_digitize("s3://climb/scans", str(out), settings_for(tiny_model))
    assert (summary.listed, summary.done, summary.failed) == (len(pages), len(pages), 0)
    created = tree(tmp_path) - before
    assert all(p.startswith("a/b/out/") for p in created), sorted(p for p in created if not p.startswith("a/b/out/"))
    ids = assign_page_ids(sorted(pages))
    assert len(set(ids.values())) == len(pages)  # colliding keys got distinct ids
    for name in os.listdir(out):
        # Beside the pages' records: the run's manifest and its names index.
        assert name in ("manifest.jsonl", "names.sqlite") or name.rsplit(".", 2)[0] in ids.values(), name
        assert ".." not in name.replace(".alto.xml", "").replace(".page.xml", "").replace(".json", "")
    result = audit(LocalStorage(out), pages)
    assert (result.done, result.lost, result.duplicated, result.partial) == (len(pages), [], [], [])

    # The same keys to an S3 destination: every object written stays under its prefix.
    client = s3_client(moto_env)
    client.create_bucket(Bucket="climb-out")
    client.put_object(Bucket="climb-out", Key="outside.txt", Body=b"untouched")
    summary = run_digitize(
        "s3://climb/scans", "s3://climb-out/deep/records", settings_for(tiny_model, formats=["json"])
    )
    assert summary.done == len(pages)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="climb-out")["Contents"]]
    assert sorted(k for k in keys if not k.startswith("deep/records/")) == ["outside.txt"]
    assert all("/../" not in k and "/./" not in k for k in keys)
    theirs = [o["Key"] for o in client.list_objects_v2(Bucket="climb").get("Contents", [])]
    assert sorted(theirs) == sorted(f"scans/{k}" for k in pages)  # the source was only read


def test_local_names_stay_inside_dst(tmp_path: Path, tiny_model: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    pages = dict(zip(LOCAL_NAMES, good_pages(len(LOCAL_NAMES)).values(), strict=True))
    for name, data in pages.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    # A record path that is a symlink to a file outside DST is replaced, never written through.
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    ids = assign_page_ids(sorted(pages))
    out.mkdir()
    (out / f"{ids['..hidden..page.jpg']}.json").symlink_to(victim)
    before = tree(tmp_path)
    summary = run_digitize(str(src), str(out), settings_for(tiny_model))
    assert (summary.done, summary.failed) == (len(pages), 0)
    assert all(p.startswith("out/") for p in tree(tmp_path) - before)
    assert victim.read_text() == "untouched"
    assert not (out / f"{ids['..hidden..page.jpg']}.json").is_symlink()
    result = audit(LocalStorage(out), pages)
    assert (result.done, result.lost, result.partial, result.stray) == (len(pages), [], [], [])


def test_a_local_file_name_with_backslashes_is_read(tmp_path: Path, tiny_model: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    pages = dict(zip(["a.jpg", "back\\slash\\..\\..\\win.jpg", "c.jpg"], good_pages(3).values(), strict=True))
    for name, data in pages.items():
        (src / name).write_bytes(data)  # one file each: on Linux a backslash is an ordinary character
    summary = run_digitize(str(src), str(tmp_path / "out"), settings_for(tiny_model, chunk_size=3, task_workers=1))
    assert (summary.done, summary.failed) == (3, 0), summary.failed_examples


def test_a_key_with_control_characters_is_digitized_in_every_format(tmp_path: Path, tiny_model: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "scan\x01\x0b.jpg").write_bytes(next(iter(good_pages(1).values())))
    summary = run_digitize(str(src), str(tmp_path / "out"), settings_for(tiny_model))
    assert (summary.done, summary.failed) == (1, 0), summary.failed_examples


def _prefect_records(flow_run_name: str) -> str:
    """Return everything Prefect stored about the latest flow run of that name, as JSON text."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterName,
        LogFilter,
        LogFilterFlowRunId,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[flow_run_name])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
        assert runs, f"no flow run named {flow_run_name!r}"
        run = runs[0]
        ids = [run.id]
        tasks = client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=ids)))
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
    assert logs and {a.key for a in arts} >= {"digitize-summary", "digitize-pages"}
    parts = [run.model_dump_json()]
    parts += [t.model_dump_json() for t in tasks]
    parts += [entry.model_dump_json() for entry in logs]
    parts += [a.model_dump_json() for a in arts]
    return "\n".join(parts)


def test_credentials_and_signed_urls_never_show(
    tmp_path: Path, tiny_model: Path, moto_endpoint: str, registre_env: dict[str, str]
) -> None:
    pages = good_pages(4)
    bad = {"bad/empty.jpg": b"", "bad/notes.png": b"not an image"}
    put_pages(moto_endpoint, "secrets", "scans", {**pages, **bad})
    # Faults through a proxy make the run log retries and storage errors as well.
    with FaultProxy(moto_endpoint, rate=0.25, seed=3, kinds=("500", "slowdown", "reset", "lost")) as proxy:
        env = {
            **registre_env,
            "AWS_ENDPOINT_URL": proxy.url,
            "AWS_ACCESS_KEY_ID": "AKIAREGISTRETEST0001",
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_SESSION_TOKEN": SESSION_TOKEN,
            "AWS_DEFAULT_REGION": "us-east-1",
            "REGISTRE_STORAGE_ATTEMPTS": "8",
            "REGISTRE_RETRY_BACKOFF_S": "0.2",
        }
        args = ["digitize", "s3://secrets/scans", "--out", "s3://secrets/records", "--model", str(tiny_model)]
        run = run_registre(
            [*args, "--no-lm", "--chunk-size", "2", "--formats", "json,alto,page", "-v"], env, timeout=240
        )
    assert run.returncode == 1, run.stderr[-3000:]
    assert proxy.stats.injected > 0
    texts = {"stdout": run.stdout, "stderr": run.stderr}
    client = s3_client(moto_endpoint)
    for obj in client.list_objects_v2(Bucket="secrets", Prefix="records/")["Contents"]:
        texts[obj["Key"]] = (
            client.get_object(Bucket="secrets", Key=obj["Key"])["Body"].read().decode("utf-8", "replace")
        )
    assert any(k.endswith("manifest.jsonl") for k in texts) and sum(k.endswith(".json") for k in texts) == len(pages)
    # The flow's logs reach the server when the process ends; give the API a moment to store them.
    time.sleep(1.0)
    texts["prefect"] = _prefect_records("digitize-s3://secrets/scans")
    for where, text in texts.items():
        for mark in (SECRET, SESSION_TOKEN, *SIGNED_MARKS):
            assert mark not in text, f"{mark!r} shows in {where}"
    manifest = [json.loads(x) for x in texts["records/manifest.jsonl"].splitlines()]
    assert sorted(e["status"] for e in manifest) == [DONE] * len(pages) + [FAILED] * len(bad)


def test_xml_readers_never_resolve_entities_or_fetch(tmp_path: Path, listener) -> None:
    url, hits = listener
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-FILE-CONTENT-4242")
    image = encode(reference_page(), "PNG")
    for stem, (kind, xml) in unsafe_ground_truth(secret, url).items():
        path = tmp_path / f"{stem}.xml"
        path.write_bytes(xml)
        (tmp_path / f"{stem}.png").write_bytes(image)
        started = time.perf_counter()
        with pytest.raises(GroundTruthError, match="refused unsafe XML"):
            read_ground_truth(path)
        assert time.perf_counter() - started < 2.0, f"{kind}: took {time.perf_counter() - started:.1f} s"
    # XInclude is not processed either: the include stays an unknown element.
    xinclude = (
        '<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#" xmlns:xi="http://www.w3.org/2001/XInclude">'
        '<Layout><Page WIDTH="480" HEIGHT="300"><PrintSpace><TextBlock ID="b"><TextLine ID="l" BASELINE="1 40 400 40">'
        '<Shape><Polygon POINTS="1 10 400 10 400 45 1 45"/></Shape><String CONTENT="ok"/>'
        f'<xi:include href="{secret.as_uri()}" parse="text"/><xi:include href="{url}/xi" parse="text"/>'
        "</TextLine></TextBlock></PrintSpace></Page></Layout></alto>"
    )
    path = tmp_path / "xinclude.xml"
    path.write_text(xinclude)
    page = read_ground_truth(path)
    assert [ln.text for ln in page.lines] == ["ok"]
    time.sleep(0.3)
    assert hits == [], f"a reader connected to {url}: {hits}"


def test_written_xml_carries_markup_in_text_as_text() -> None:
    import defusedxml.ElementTree as SafeET

    hostile = '&xxe; <!DOCTYPE x [<!ENTITY a "b">]> ]]> <tag attr="v"> \' "'
    line = LineRecord("l1", [(0, 0), (90, 0), (90, 20), (0, 20)], [(0, 18), (90, 18)], 0, hostile, 0.5)
    record = PageRecord("p", 'reg/<a&b>"x".jpg', "0" * 64, 1, 100, 50, [line], "m", "greedy")
    for data in (to_alto(record), to_page_xml(record)):
        # A strict parser (no DTD, no entities) reads it back: nothing was declared, everything was escaped.
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
        texts = [el.get("CONTENT") or el.text or "" for el in root.iter()]
        assert hostile in texts, texts
