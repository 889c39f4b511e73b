"""The bad-input corpus through ``registre digitize`` (one real CLI run), and unsafe XML through ``registre eval``.

Every kind of :func:`badinputs.bad_inputs` sits in one source folder with good
pages; one run digitizes them all (a hang fails the test). Each kind must end
as it expects: a record that is right for the page (size, upright, lines like
the same page in plain JPEG), or a ``failed`` manifest entry whose reason says
in words what is wrong, with no output files left for it. The good pages are
all ``done`` and the run exits 1 (some pages failed) after its summary.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import xmlschema
from badinputs import DONE, FAILED, BadInput, bad_inputs, encode, good_pages, reference_page, unsafe_ground_truth
from runkit import Audit, audit, run_registre

from flows.records import assign_page_ids
from flows.storage import LocalStorage

pytestmark = pytest.mark.usefixtures("prefect_harness")

SCHEMAS = Path(__file__).resolve().parents[2] / "flows" / "schemas"
CASES = bad_inputs()
SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")

#: Kinds the pipeline does not get right yet: kind -> what is wrong (see the report of issue 7).
KNOWN_BUGS: dict[str, str] = {}


@dataclass
class CorpusRun:
    """The outcome of one digitize run over the corpus and some good pages."""

    cases: list[BadInput]
    good: dict[str, bytes]
    out: Path
    stdout: str
    stderr: str
    returncode: int
    audit: Audit
    ids: dict[str, str]


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, prefect_api_url: str) -> CorpusRun:
    from runkit import cli_env

    root = tmp_path_factory.mktemp("corpus")
    src, out = root / "src", root / "out"
    good = good_pages(3)
    files = {**good, **{c.key: c.data for c in CASES}}
    for key, data in files.items():
        (src / key).parent.mkdir(parents=True, exist_ok=True)
        (src / key).write_bytes(data)
    env = cli_env(prefect_api_url)
    args = ["digitize", str(src), "--out", str(out), "--model", str(tiny_model), "--no-lm"]
    run = run_registre([*args, "--formats", "json,alto,page", "--chunk-size", "6"], env, timeout=300)
    result = audit(LocalStorage(out), files, good=set(good) | {c.key for c in CASES if c.expect == DONE})
    return CorpusRun(CASES, good, out, run.stdout, run.stderr, run.returncode, result, assign_page_ids(sorted(files)))


def test_the_corpus_has_at_least_20_kinds_of_bad_input() -> None:
    kinds = {c.kind for c in CASES if not c.kind.startswith("good")}
    assert len(kinds) >= 20 and len({c.key for c in CASES}) == len(CASES)


def test_the_run_ends_with_a_summary_not_a_crash(corpus_run: CorpusRun) -> None:
    assert corpus_run.returncode == 1, corpus_run.stderr[-3000:]
    assert "Traceback" not in corpus_run.stderr, corpus_run.stderr[-3000:]
    assert "failures by reason" in corpus_run.stderr and "--only-failed" in corpus_run.stderr
    # One manifest entry per page, every page accounted for, nothing half-written or unmerged.
    entries = corpus_run.audit.entries
    assert sorted(e.source_key for e in entries) == sorted(corpus_run.ids)
    assert (corpus_run.audit.stray, corpus_run.audit.partial, corpus_run.audit.temp_files) == ([], [], [])
    assert corpus_run.audit.unmerged_parts == 0


def test_good_pages_are_all_done(corpus_run: CorpusRun) -> None:
    for key in corpus_run.good:
        record = corpus_run.audit.records.get(key)
        assert record is not None and key not in corpus_run.audit.lost, key
        assert record.lines, f"{key}: a real register fragment with no line found"


@pytest.fixture(scope="module")
def schemas() -> tuple[xmlschema.XMLSchema, xmlschema.XMLSchema]:
    alto = xmlschema.XMLSchema(
        str(SCHEMAS / "alto-4-4.xsd"), locations={"http://www.w3.org/1999/xlink": str(SCHEMAS / "xlink.xsd")}
    )
    return alto, xmlschema.XMLSchema(str(SCHEMAS / "pagecontent-2019-07-15.xsd"))


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[c.kind])) if c.kind in KNOWN_BUGS else c
        for c in CASES
    ],
    ids=[c.kind for c in CASES],
)
def test_each_kind_gives_a_right_record_or_a_clear_failure(
    corpus_run: CorpusRun, case: BadInput, schemas: tuple[xmlschema.XMLSchema, xmlschema.XMLSchema]
) -> None:
    entries = [e for e in corpus_run.audit.entries if e.source_key == case.key]
    assert len(entries) == 1, f"{case.kind}: {len(entries)} manifest entries"
    entry = entries[0]
    page_id = corpus_run.ids[case.key]
    assert SAFE_ID.match(page_id) and ".." not in page_id, page_id
    outputs = sorted(p.name for p in corpus_run.out.glob(f"{page_id}.*"))
    if case.expect == FAILED:
        assert entry.status == FAILED, f"{case.kind}: expected a failure, got {entry.status}"
        # A reason a person understands: the stage, the problem in words, the file; no bare exception.
        assert entry.reason.startswith("image: "), entry.reason
        assert case.reason.lower() in entry.reason.lower(), entry.reason
        assert case.key in entry.reason, entry.reason
        assert outputs == [], f"{case.kind}: outputs left for a failed page: {outputs}"
        return
    assert entry.status == DONE, f"{case.kind}: {entry.reason}"
    assert outputs == sorted(f"{page_id}{s}" for s in (".json", ".alto.xml", ".page.xml"))
    record = corpus_run.audit.records[case.key]
    assert (record.width, record.height) == case.size
    for line in record.lines:
        assert all(0 <= x < record.width and 0 <= y < record.height for x, y in line.polygon + line.baseline)
        assert 0.0 <= line.confidence <= 1.0
    if case.max_lines is not None:
        assert len(record.lines) <= case.max_lines, f"{case.kind}: {len(record.lines)} lines on an empty page"
    if case.like is not None:
        ref = len(corpus_run.audit.records[case.like].lines)
        assert ref > 0 and abs(len(record.lines) - ref) <= max(3, ref // 2), (
            f"{case.kind}: {len(record.lines)} lines, the same page as JPEG has {ref}"
        )
    alto, page = schemas
    alto.validate(str(corpus_run.out / f"{page_id}.alto.xml"))
    page.validate(str(corpus_run.out / f"{page_id}.page.xml"))


def test_eval_refuses_entity_bombs_and_external_entities(
    tmp_path: Path, tiny_model: Path, prefect_api_url: str, example_pages: list[Path], listener
) -> None:
    from runkit import cli_env

    url, hits = listener
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-FILE-CONTENT-4242")
    gt = tmp_path / "gt"
    gt.mkdir()
    good = example_pages[0]
    (gt / good.name).write_bytes(good.read_bytes())
    (gt / good.with_suffix(".xml").name).write_bytes(good.with_suffix(".xml").read_bytes())
    image = encode(reference_page(), "PNG")
    unsafe = unsafe_ground_truth(secret, url)
    for stem, (_, xml) in unsafe.items():
        (gt / f"{stem}.xml").write_bytes(xml)
        (gt / f"{stem}.png").write_bytes(image)
    run = run_registre(["eval", str(gt), "--no-lm", "--model", str(tiny_model)], cli_env(prefect_api_url), timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert result["pages"] == 1 and result["lines"] > 30  # the good page was evaluated
    skipped = {s["page"]: s["reason"] for s in result["skipped_pages"]}
    assert set(skipped) == set(unsafe)
    for stem, reason in skipped.items():
        assert "refused unsafe XML" in reason and "DTDs and entities are not allowed" in reason, (stem, reason)
        assert f"skipping {stem}.xml" in run.stderr
    assert hits == [], f"the parser connected to {url}: {hits}"
    assert "SECRET-FILE-CONTENT" not in run.stdout + run.stderr
    assert "lollol" not in run.stdout + run.stderr
