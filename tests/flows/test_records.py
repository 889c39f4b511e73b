from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import xmlschema
from hypothesis import given
from hypothesis import strategies as st

from flows.records import (
    Alternative,
    LineRecord,
    PageRecord,
    WordRecord,
    assign_page_ids,
    page_id_for,
    record_from_json,
    record_to_json,
)
from flows.serializers import parse_formats, to_alto, to_page_xml
from ocr.groundtruth import read_alto, read_page_xml

SCHEMAS = Path(__file__).resolve().parents[2] / "flows" / "schemas"


@pytest.fixture(scope="module")
def alto_schema() -> xmlschema.XMLSchema:
    # ALTO imports xlink from loc.gov; the local copy keeps validation offline.
    return xmlschema.XMLSchema(
        str(SCHEMAS / "alto-4-4.xsd"), locations={"http://www.w3.org/1999/xlink": str(SCHEMAS / "xlink.xsd")}
    )


@pytest.fixture(scope="module")
def page_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(SCHEMAS / "pagecontent-2019-07-15.xsd"))


def make_record() -> PageRecord:
    return PageRecord(
        page_id="reg1__p001",
        source_key="reg1/p001.jpg",
        sha256="ab" * 32,
        size_bytes=1234,
        width=1000,
        height=800,
        lines=[
            LineRecord(
                "l0001",
                [(10, 10), (300, 12), (300, 60), (10, 58)],
                [(10, 50), (300, 52)],
                order=1,
                text="Jean Dupont & fils <x>",
                confidence=0.9,
                column=1,
                cell=4,
                words=[
                    WordRecord("Jean", (10, 10, 80, 60), 0.95),
                    WordRecord("Dupont", (90, 10, 200, 60), 0.8),
                    WordRecord("&", (205, 10, 215, 60), 0.7),
                    WordRecord("fils", (220, 10, 260, 60), 0.7),
                    WordRecord("<x>", (265, 10, 300, 60), 0.5),
                ],
                nbest=[Alternative("Jean Dupont & fils <x>", 0.7), Alternative("Jean Dupond & fils <x>", 0.3)],
            ),
            # Reading order differs from list order; a line with no text, a 1-point baseline, a control char.
            LineRecord(
                "0 bad id", [(10, 100), (300, 100), (300, 160)], [(12, 150)], order=0, text="a\x07b", confidence=0
            ),
            LineRecord("l0003", [(-5, 700), (1200, 700), (1200, 900), (-5, 900)], [], order=2, text="", confidence=0),
        ],
        model_version="m1",
        decoder="greedy",
        software="registre 0.1.0",
        created="2024-01-01T00:00:00+00:00",
    )


def test_json_round_trip() -> None:
    rec = make_record()
    assert record_from_json(record_to_json(rec)) == rec


def test_alto_is_valid_and_reads_back(tmp_path: Path, alto_schema: xmlschema.XMLSchema) -> None:
    rec = make_record()
    data = to_alto(rec)
    alto_schema.validate(data.decode())
    path = tmp_path / "p.xml"
    path.write_bytes(data)
    page = read_alto(path)  # the project's own ground-truth reader, as eScriptorium-style ALTO
    assert (page.width, page.height) == (1000, 800)
    assert [ln.text for ln in page.lines] == ["ab", "Jean Dupont & fils <x>", ""]  # reading order
    assert page.lines[1].polygon == rec.lines[0].polygon
    assert page.lines[1].baseline == rec.lines[0].baseline
    assert all(0 <= x < 1000 and 0 <= y < 800 for ln in page.lines for x, y in ln.polygon)


def test_page_xml_is_valid_and_reads_back(tmp_path: Path, page_schema: xmlschema.XMLSchema) -> None:
    rec = make_record()
    data = to_page_xml(rec)
    page_schema.validate(data.decode())
    path = tmp_path / "p.xml"
    path.write_bytes(data)
    page = read_page_xml(path)
    assert [ln.text for ln in page.lines] == ["ab", "Jean Dupont & fils <x>", ""]
    assert page.lines[1].polygon == rec.lines[0].polygon
    assert b'index="2"' in data and b"Jean Dupond" in data  # the runner-up reading is kept
    assert b"column:1;cell:4;" in data


def test_empty_page_is_valid(alto_schema: xmlschema.XMLSchema, page_schema: xmlschema.XMLSchema) -> None:
    rec = make_record()
    rec.lines = []
    alto_schema.validate(to_alto(rec).decode())
    page_schema.validate(to_page_xml(rec).decode())


def test_schemas_reject_what_they_should(alto_schema: xmlschema.XMLSchema) -> None:
    bad = to_alto(make_record()).replace(b'PHYSICAL_IMG_NR="1"', b"")
    assert not alto_schema.is_valid(bad.decode())


def test_formats_are_parsed_and_json_always_written() -> None:
    assert parse_formats("alto, page") == ["json", "alto", "page"]
    assert parse_formats(["page", "json", "page"]) == ["json", "page"]
    with pytest.raises(ValueError, match="hocr"):
        parse_formats("json,hocr")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("p001.jpg", "p001"),
        ("reg 1/p 001.tif", "reg_1__p_001"),
        ("../../etc/passwd.png", "etc__passwd"),
        ("/abs/x.jpg", "abs__x"),
        ("..jpg", "page"),
        ("a/..../b.jpeg", "a__b"),
        ("Été/Répertoire n°3.jpg", "Ete__Repertoire_n_3"),
        ("a\\..\\b.jpg", "a__b"),
    ],
)
def test_page_ids_are_safe(key: str, expected: str) -> None:
    assert page_id_for(key) == expected


@given(st.text(min_size=0, max_size=300))
def test_any_key_gives_a_safe_id(key: str) -> None:
    pid = page_id_for(key)
    assert pid and len(pid) <= 160
    assert "/" not in pid and "\\" not in pid and ".." not in pid and not pid.startswith(".")
    assert os.path.basename(pid) == pid
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in pid)


def test_colliding_ids_are_made_unique() -> None:
    ids = assign_page_ids(["a.jpg", "a.png", "A.tif", "b.jpg", "x y.jpg", "x_y.jpg"])
    assert ids["b.jpg"] == "b"
    assert len({i.casefold() for i in ids.values()}) == 6
    assert ids["a.jpg"].startswith("a-") and ids["x y.jpg"].startswith("x_y-")
    assert assign_page_ids(["a.png", "a.jpg"]) == assign_page_ids(["a.jpg", "a.png"])  # order does not matter


def test_segmentation_confidence_is_written_and_old_records_still_read() -> None:
    rec = make_record()
    rec.segmentation_confidence, rec.low_segmentation_confidence = 0.42, True
    data = json.loads(record_to_json(rec))
    assert (data["segmentation_confidence"], data["low_segmentation_confidence"]) == (0.42, True)
    assert record_from_json(record_to_json(rec)) == rec
    del data["segmentation_confidence"], data["low_segmentation_confidence"]  # a record written before them
    old = record_from_json(json.dumps(data))
    assert old.segmentation_confidence is None and not old.low_segmentation_confidence
    # ALTO and PAGE-XML carry it in their processing settings, flagged when low; not at all when unknown.
    assert b"segmentation_confidence=0.420 (low)" in to_alto(rec)
    assert b"segmentation_confidence=0.420 (low)" in to_page_xml(rec)
    assert b"segmentation_confidence" not in to_alto(old) + to_page_xml(old)
