"""The SQLite names index: rows per person and word, page replacement, and exact, fuzzy and phonetic search."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from registers.index import IndexLine, NamesIndex, search
from registers.keys import name_key, phonetic_key
from registers.layout import RegisterLine
from registers.page import read_entries
from tests.registers.test_layout import HEIGHT, riant_lines


def index_lines(lines: list[RegisterLine]) -> list[IndexLine]:
    return [IndexLine(ln.id, ln.text, ln.box, 0.9) for ln in lines]


@pytest.fixture
def index(tmp_path: Path) -> Path:
    path = tmp_path / "names.sqlite"
    lines = riant_lines()
    with NamesIndex(path) as ix:
        ix.replace_page("riant_p1", index_lines(lines), read_entries(lines, HEIGHT), "riant/p1.jpg", "a1", "m1")
        other = [RegisterLine("x1", (0, 0, 500, 50), "Ardilouze (Jean) à Bordeaux")]
        ix.replace_page("other_p2", index_lines(other), [], "other/p2.jpg", "a2", "m1")
    return path


def test_keys() -> None:
    assert name_key("d'Orléans") == "dorleans"
    assert name_key("LEFÈVRE") == "lefevre"
    assert phonetic_key("Lefèvre") == phonetic_key("Lefebvre")
    assert phonetic_key("Messager") == phonetic_key("Mesager")  # doubled letters collapsed after FONEM
    assert phonetic_key("Thibault") == phonetic_key("Tibaud")
    assert phonetic_key("") == ""


def test_one_row_per_person_mention(index: Path) -> None:
    db = sqlite3.connect(index)
    rows = db.execute("SELECT surname, first_names, act_number, date, nature, key FROM persons ORDER BY id").fetchall()
    assert ("Lesecq", "Jerôme Auguste", "535", "1830-09-07", "transport", "lesecq") in rows
    assert ("de Monval", "Charles Antoine Auguste", "537", "1830-09-08", "procuration", "demonval") in rows
    assert db.execute("SELECT count(*) FROM pages").fetchone()[0] == 2


def test_exact_fuzzy_and_phonetic_matches(index: Path) -> None:
    exact = search(index, "Lesecq")
    assert exact[0].page_id == "riant_p1" and exact[0].score == pytest.approx(0.99, abs=0.011)
    assert exact[0].kind == "person" and exact[0].surname == "Lesecq"
    assert exact[0].text == "Veuve de Jerôme Auguste Lesecq, rue"
    assert (exact[0].act_number, exact[0].date, exact[0].nature) == ("535", "1830-09-07", "transport")
    fuzzy = search(index, "Lesecg")  # one edit
    assert fuzzy[0].surname == "Lesecq" and fuzzy[0].score < exact[0].score
    sound = search(index, "Lessec")  # the same French sound (FONEM: LESEK), two edits
    assert sound[0].surname == "Lesecq"
    part = search(index, "Deschaleris")  # one part of a surname of several words
    assert part[0].surname == "Lemanceau Deschaleris"
    particle = search(index, "Monval")  # the surname without its particle
    assert particle[0].surname == "de Monval"
    with_first = search(index, "Claude Terray")
    assert with_first[0].surname == "Terray" and with_first[0].first_names == "Claude Hippolyte"


def test_any_word_when_no_person(index: Path) -> None:
    found = search(index, "Bordeaux")
    assert found and found[0].kind == "word" and found[0].page_id == "other_p2"
    assert found[0].to_dict()["text"] == "Ardilouze (Jean) à Bordeaux"
    assert search(index, "Zzyzx") == []
    assert search(index, "   ") == []


def test_scores_are_between_0_and_1_best_first(index: Path) -> None:
    found = search(index, "Lesecq", limit=50)
    scores = [m.score for m in found]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_a_redone_page_replaces_its_rows(index: Path) -> None:
    lines = riant_lines()
    with NamesIndex(index) as ix:
        ix.replace_page("riant_p1", index_lines(lines), read_entries(lines, HEIGHT), "riant/p1.jpg", "a3", "m2")
        assert ix.page_attempts() == {"riant_p1": "a3", "other_p2": "a2"}
    db = sqlite3.connect(index)
    assert db.execute("SELECT count(*) FROM persons WHERE surname = 'Lesecq'").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM lines WHERE page_id = 'riant_p1'").fetchone()[0] == len(lines)
    with NamesIndex(index) as ix:
        ix.remove_page("riant_p1")
    db = sqlite3.connect(index)
    for table in ("persons", "lines"):
        assert db.execute(f"SELECT count(*) FROM {table} WHERE page_id = 'riant_p1'").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM spellings").fetchone()[0] == 0
    assert search(index, "Lesecq") == []
