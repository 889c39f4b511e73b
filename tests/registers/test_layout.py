"""Entries from line positions: the header and first acts of a real training page (riant-4, 1830)."""

from __future__ import annotations

from pathlib import Path

import pytest

from registers.layout import RegisterLine, build_entries, header_columns
from registers.page import entry_from_dict, entry_to_dict, is_ditto, read_entries

# DAFANCH96_048MIC06491_L-0 (riant-4, a training page): line boxes (x0, y0, x1, y1) and transcriptions.
RIANT = [
    ((1754, 287, 1911, 375), "RELATION"),
    ((461, 294, 537, 397), "Dates"),
    ((350, 323, 424, 404), "N.os"),
    ((954, 323, 1703, 404), "NOMS, PRENOMS ET DOMICILES DES PARTIES."),
    ((593, 326, 920, 399), "NATURE ET ESPÈCE"),
    ((1801, 360, 1865, 407), "de"),
    ((451, 377, 522, 444), "des"),
    ((667, 380, 831, 431), "DES ACTES"),
    ((363, 394, 412, 436), "du"),
    ((1713, 404, 1926, 444), "l'enregistrement"),
    ((449, 448, 525, 505), "Actes."),
    ((348, 451, 436, 507), "Rép.re"),
    ((1033, 451, 1629, 507), "INDICATIONS, SITUATIONS ET PRIX DES BIENS."),
    ((758, 463, 932, 522), "EN MINUTES."),
    ((557, 471, 731, 515), "EN BREVETS."),
    ((1821, 480, 1899, 552), "Droits."),
    ((1708, 485, 1776, 561), "Dates"),
    ((996, 552, 1693, 657), "An 1830 mois de Septembre."),
    ((1003, 655, 1661, 775), "DeNeuilly (après le décès de"),
    ((750, 667, 939, 765), "Inventaire"),
    ((463, 684, 522, 762), "8"),
    ((338, 691, 417, 785), "539"),
    ((954, 736, 1732, 839), "Virginie) rue du petit Carreau"),
    ((1794, 792, 1941, 900), "2.20."),
    ((1705, 807, 1774, 932), "14"),
    ((944, 812, 1077, 897), "n° 13."),
    ((741, 888, 949, 1037), "Procuration"),
    ((998, 905, 1659, 1020), "Caillard de Beauvoir (par ~"),
    ((476, 954, 557, 1020), "10."),
    ((346, 956, 429, 1047), "540"),
    ((969, 1003, 1700, 1089), "Abraham Louis) rue du grand Chantier"),
    ((966, 1069, 1671, 1160), "N°2. à Emile Paul Crosnier, rue du"),
    ((1816, 1123, 1921, 1197), "2.20"),
    ((947, 1138, 1205, 1248), "Mail. n° 11."),
    ((1720, 1140, 1771, 1197), "11"),
    ((559, 1251, 765, 1386), "Procuration"),
    ((944, 1258, 1693, 1359), "Vernes (par Jean François) Cité -"),
    ((343, 1275, 419, 1361), "541"),
    ((1835, 1280, 1943, 1469), "2.20"),
    ((466, 1285, 527, 1351), "11"),
    ((939, 1322, 1710, 1418), "d'Orléans n°25. à François Vernes"),
    ((935, 1388, 1484, 1491), "son père demt à Genève."),
    ((1705, 1400, 1771, 1462), "11"),
]
HEIGHT = 2944


def riant_lines() -> list[RegisterLine]:
    return [RegisterLine(f"l{i:03d}", box, text) for i, (box, text) in enumerate(RIANT)]


def test_columns_from_the_printed_header() -> None:
    columns, bottom = header_columns(riant_lines(), HEIGHT)
    assert [c.role for c in columns] == ["number", "date", "nature", "names", "relation", "fees"]
    assert columns[3].label.startswith("NOMS, PRENOMS")
    assert bottom == 561  # the lowest label, "Dates" of the relation column


def test_rows_start_at_act_numbers_and_take_their_cells() -> None:
    entries, _ = build_entries(riant_lines(), HEIGHT)
    assert [e.act_number for e in entries] == ["539", "540", "541"]
    first = entries[0]
    assert first.cell("names").text == "DeNeuilly (après le décès de\nVirginie) rue du petit Carreau\nn° 13."
    assert first.cell("nature").text == "Inventaire"
    assert first.cell("relation").text == "14" and first.cell("fees").text == "2.20."
    assert first.date.iso == "1830-09-08"  # the day, with the heading's month and year
    assert entries[1].cell("names").text.startswith("Caillard de Beauvoir")
    assert entries[2].cell("names").text.endswith("son père demt à Genève.")
    heading = next(ln.id for ln in riant_lines() if ln.text.startswith("An 1830"))
    assert all(heading not in e.line_ids for e in entries)  # the month heading is no act's
    assert first.box[1] == 655  # the row starts with its first names line, above the number


def test_fields_and_persons_of_the_entries() -> None:
    entries = read_entries(riant_lines(), HEIGHT)
    assert [e.nature for e in entries] == ["inventaire", "procuration", "procuration"]
    assert [e.date.iso for e in entries] == ["1830-09-08", "1830-09-10", "1830-09-11"]
    assert [(p.surname, p.first_names) for p in entries[2].persons] == [
        ("Vernes", "Jean François"),
        ("Vernes", "François"),
    ]
    surname = entries[1].persons[0]
    assert entries[1].cell("names").text[surname.start : surname.end] == "Caillard de Beauvoir"


def test_entries_round_trip_through_json() -> None:
    import json

    entries = read_entries(riant_lines(), HEIGHT)
    data = json.loads(json.dumps([entry_to_dict(e) for e in entries]))
    again = [entry_to_dict(entry_from_dict(d)) for d in data]
    assert json.loads(json.dumps(again)) == data


def test_a_page_without_a_table_has_no_entries() -> None:
    prose = [
        RegisterLine(f"l{i}", (100, 100 + 60 * i, 1500, 150 + 60 * i), "Je soussigné déclare que") for i in range(20)
    ]
    assert read_entries(prose, 2000) == []
    assert read_entries([], 2000) == []


def test_segmentation_columns_when_no_header_is_read() -> None:
    lines = [
        RegisterLine(f"l{i}", box, text, column=col)
        for i, (box, text, col) in enumerate(
            [
                ((300, 600, 380, 660), "170", 0),
                ((400, 600, 450, 660), "11", 1),
                ((600, 600, 800, 660), "Procuration", 2),
                ((1000, 590, 1750, 650), "Bourdet (parMr Jacques Jean) cocher", 3),
                ((1000, 660, 1750, 720), "demt à Paris, rue d'Astorg, 31,", 3),
                ((300, 800, 380, 860), "171", 0),
                ((400, 800, 450, 860), "12", 1),
                ((1000, 790, 1750, 850), "Gelot (parMr Joseph) Md de Meubles", 3),
            ]
        )
    ]
    entries, columns = build_entries(lines, 3000)
    assert [c.role for c in columns] == ["number", "date", "nature", "names"]
    assert [e.act_number for e in entries] == ["170", "171"]
    assert entries[0].cell("names").column == 3


@pytest.mark.parametrize(("text", "ditto"), [("do", True), ("-do- -do-", True), ('"do"', True), ("do do", True),
                                              ("Donation", False), ("", False)])  # fmt: skip
def test_ditto_marks(text: str, ditto: bool) -> None:
    assert is_ditto(text) is ditto


def test_real_example_page_has_entries(repo_root: Path) -> None:
    """The bundled example pages (ALTO ground truth) read as registers: every act number starts a row."""
    from ocr.groundtruth import read_alto

    for xml in sorted((repo_root / "examples" / "pages").glob("*.xml")):
        page = read_alto(xml)
        lines = [RegisterLine(ln.id, _box(ln.polygon), ln.text) for ln in page.lines]
        entries = read_entries(lines, page.height)
        assert len(entries) >= 5, xml.name
        assert sum(bool(e.persons) for e in entries) >= len(entries) // 2, xml.name


def _box(polygon: list[tuple[int, int]]) -> tuple[int, int, int, int]:
    xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
    return min(xs), min(ys), max(xs), max(ys)


def test_a_lone_day_out_of_order_takes_its_neighbours() -> None:
    """Acts are listed by date: between two acts of the 11th, a day read as 17 is the 11th too."""
    days = {"8": "11", "10.": "17", "11": "11"}
    lines = [
        RegisterLine(ln.id, ln.box, days.get(ln.text, ln.text) if 440 < ln.box[0] < 560 else ln.text)
        for ln in riant_lines()
    ]
    entries = read_entries(lines, HEIGHT)
    assert [e.date.raw for e in entries] == ["11", "17", "11"]
    assert [e.date.iso for e in entries] == ["1830-09-11"] * 3
    assert entries[1].date.inherited == "order"
