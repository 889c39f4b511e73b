"""Entries in page records (JSON, PAGE-XML), the run's names index against the manifest, and `registre search`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest
import xmlschema
from typer.testing import CliRunner

from flows.cli import app
from flows.manifest import DONE, FAILED, ManifestEntry, consolidate, latest_by_source, read_manifest, write_part
from flows.names import add_entries, update_names_index
from flows.records import LineRecord, PageRecord, record_from_json, record_to_json
from flows.serializers import to_page_xml
from flows.storage import LocalStorage
from ocr.groundtruth import read_page_xml
from tests.registers.test_layout import HEIGHT, RIANT

SCHEMAS = Path(__file__).resolve().parents[2] / "flows" / "schemas"


def riant_record(page_id: str = "riant__p1", source_key: str = "riant/p1.png") -> PageRecord:
    lines = [
        LineRecord(f"l{i:03d}", [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], [(x0, y1), (x1, y1)], i, text, 0.9)
        for i, ((x0, y0, x1, y1), text) in enumerate(RIANT)
    ]
    record = PageRecord(page_id, source_key, "00" * 32, 10, 2100, HEIGHT, lines, "m1", "lm")
    return add_entries(record)


def test_record_entries_in_json_and_page_xml(tmp_path: Path) -> None:
    record = riant_record()
    assert [e.act_number for e in record.entries] == ["535", "536", "537"]
    again = record_from_json(record_to_json(record))
    assert again.entries == record.entries
    data = to_page_xml(record)
    xmlschema.XMLSchema(str(SCHEMAS / "pagecontent-2019-07-15.xsd")).validate(data.decode())
    assert b"<TableRegion" in data and b'rowIndex="2"' in data
    assert b"lastname:Lesecq;" in data and b"date:1830-09-08;" in data
    path = tmp_path / "p.xml"
    path.write_bytes(data)
    assert len(read_page_xml(path).lines) == len(RIANT)  # the table adds no line: no text counted twice


def test_a_page_that_is_not_a_table_has_no_entries() -> None:
    record = riant_record()
    record.lines = record.lines[17:19]  # two lines, no header, no columns
    assert add_entries(record).entries == []


def _done(dst: LocalStorage, record: PageRecord, run: str, index: int) -> ManifestEntry:
    dst.put(record.page_id + ".json", record_to_json(record))
    entry = ManifestEntry(record.page_id, record.source_key, DONE, model_version="m1", run_id=run)
    write_part(dst, run, index, [entry])
    consolidate(dst)
    return entry


def test_index_follows_the_manifest(tmp_path: Path) -> None:
    dst = LocalStorage(tmp_path / "out")
    _done(dst, riant_record(), "r1", 0)
    _done(dst, riant_record("riant__p2", "riant/p2.png"), "r1", 1)
    summary = update_names_index(dst, latest_by_source(read_manifest(dst)), str(tmp_path / "src"))
    assert (summary.indexed, summary.entries, summary.pages_total) == (2, 6, 2)
    assert summary.persons >= 8 and summary.sample[0]["surname"] == "Bergeron"
    db = sqlite3.connect(tmp_path / "out" / "names.sqlite")
    assert db.execute("SELECT count(*) FROM persons WHERE surname = 'Lesecq'").fetchone()[0] == 2

    # Nothing new: nothing read again, nothing rewritten.
    mtime = (tmp_path / "out" / "names.sqlite").stat().st_mtime_ns
    again = update_names_index(dst, latest_by_source(read_manifest(dst)), "")
    assert again.indexed == 0 and (tmp_path / "out" / "names.sqlite").stat().st_mtime_ns == mtime

    # Page 1 redone (a new attempt): its rows replaced, not added; page 2 failed since: its rows go.
    _done(dst, riant_record(), "r2", 0)
    write_part(dst, "r2", 1, [ManifestEntry("riant__p2", "riant/p2.png", FAILED, "image: broken", run_id="r2")])
    consolidate(dst)
    summary = update_names_index(dst, latest_by_source(read_manifest(dst)), "")
    assert (summary.indexed, summary.removed, summary.pages_total) == (1, 1, 1)
    db = sqlite3.connect(tmp_path / "out" / "names.sqlite")
    assert db.execute("SELECT count(*) FROM persons WHERE surname = 'Lesecq'").fetchone()[0] == 1
    assert db.execute("SELECT DISTINCT page_id FROM lines").fetchall() == [("riant__p1",)]


def test_search_command(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "riant").mkdir(parents=True)
    ok, png = cv2.imencode(".png", np.full((HEIGHT, 2100), 255, np.uint8))
    (src / "riant" / "p1.png").write_bytes(png.tobytes())
    dst = LocalStorage(tmp_path / "out")
    _done(dst, riant_record(), "r1", 0)
    update_names_index(dst, latest_by_source(read_manifest(dst)), str(src))
    runner = CliRunner()

    result = runner.invoke(
        app, ["search", str(tmp_path / "out"), "Lesecq", "--json", "--limit", "3", "--show", str(tmp_path / "crops")]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 1  # one mention; its line is not listed again as a word match
    assert {"page_id", "line_id", "text", "score"} <= rows[0].keys()
    assert rows[0]["page_id"] == "riant__p1" and rows[0]["surname"] == "Lesecq" and 0.9 < rows[0]["score"] <= 1
    crops = sorted((tmp_path / "crops").glob("*.png"))
    assert len(crops) == 1 and cv2.imread(str(crops[0])).shape[0] > 50

    result = runner.invoke(app, ["search", str(tmp_path / "out"), "Terray"])
    assert result.exit_code == 0 and "riant__p1" in result.stdout and "Claude Hippolyte Terray" in result.stdout

    assert runner.invoke(app, ["search", str(tmp_path / "out"), "Zzyzx"]).exit_code == 1
    assert runner.invoke(app, ["search", str(tmp_path / "nothing"), "Lesecq"]).exit_code != 0


@pytest.mark.parametrize("query", ["Lesecq", "lesecq", "LESECQ"])
def test_search_ignores_case(tmp_path: Path, query: str) -> None:
    dst = LocalStorage(tmp_path / "out")
    _done(dst, riant_record(), "r1", 0)
    update_names_index(dst, latest_by_source(read_manifest(dst)), "")
    from flows.names import search_output

    assert search_output(dst, query)[0].surname == "Lesecq"
