"""Entries from line positions: the header and first acts of a real training page (riant-4, 1830)."""

from __future__ import annotations

from pathlib import Path

import pytest

from registers.layout import RegisterLine, build_entries, header_columns
from registers.page import entry_from_dict, entry_to_dict, is_ditto, read_entries

# DAFANCH96_048MIC06490_L-1 (riant-4, a training page; its folio number left out): the header, the month
# heading, the end of act 534 (begun on the page before) and acts 535 to 537, as transcribed, with their
# line boxes (x0, y0, x1, y1) in pixels.
RIANT = [
    ((358, 240, 682, 417), "NATURE ET ESPÈCE"),
    ((235, 287, 323, 377), "Dates"),
    ((1516, 291, 1698, 350), "RELATION"),
    ((743, 296, 1484, 375), "NOMS, PRENOMS ET DOMICILES DES PARTIES"),
    ((152, 311, 203, 382), "N.os"),
    ((1578, 345, 1634, 390), "de"),
    ((441, 358, 611, 412), "DES ACTES"),
    ((1504, 360, 1688, 431), "l'enregistrement"),
    ((147, 370, 225, 444), "du"),
    ((262, 370, 343, 441), "des"),
    ((812, 424, 1406, 478), "INDICATIONS, SITUATIONS ET PRIX DES BIENS."),
    ((142, 429, 223, 505), "Rép.re"),
    ((257, 434, 341, 510), "Actes."),
    ((562, 444, 716, 490), "EN MINUTES"),
    ((358, 453, 520, 498), "EN BREVETS."),
    ((1484, 463, 1560, 507), "Dates."),
    ((1568, 463, 1698, 505), "Droits."),
    ((1501, 488, 1686, 569), "Douzième"),
    ((790, 532, 1465, 630), "An 1830 mois de Septembre."),
    ((1494, 547, 1713, 679), "feuillet"),
    ((728, 603, 1440, 740), "Gombaut (par Philippe) rue de"),
    ((544, 647, 711, 748), "Dépôt"),
    ((360, 667, 493, 767), "534. 7."),
    ((728, 721, 1428, 804), "Richelieu n° 1er d'une procuration"),
    ((738, 767, 1443, 858), "à lui donnée par les Srs Rouillard,"),
    ((728, 836, 1362, 954), "De Goguet, sr & Delles Poupart."),
    ((1511, 843, 1548, 915), "8"),
    ((1582, 843, 1703, 912), "2.20"),
    ((120, 927, 228, 1104), "535"),
    ((544, 944, 728, 1108), "Transport"),
    ((775, 946, 1477, 1052), "Bergeron (par le mandataire de"),
    ((262, 993, 319, 1089), "7"),
    ((731, 1032, 1465, 1123), "Madelaine Félicité Grard Veuve de"),
    ((743, 1106, 1474, 1199), "Nicolas) rue du Faubourg St Denis n° 73."),
    ((728, 1155, 1477, 1246), "à Cécile Flore Lemanceau Deschaleris"),
    ((733, 1229, 1484, 1332), "Veuve de Jerôme Auguste Lesecq, rue"),
    ((731, 1297, 1487, 1386), "de Bondy n° 34. de 10,000f à prendre"),
    ((741, 1359, 1482, 1469), "sur Mr & Mde Gonin, moyt pareilleSomme"),
    ((1580, 1425, 1720, 1489), "122-20"),
    ((1509, 1435, 1563, 1489), "14"),
    ((748, 1442, 1067, 1533), "payée comptant."),
    ((780, 1538, 1492, 1653), "Terray (à la requête de Claude ~"),
    ((542, 1562, 765, 1638), "Procès-Verbal"),
    ((122, 1572, 240, 1682), "536"),
    ((260, 1582, 311, 1656), "7"),
    ((760, 1616, 1467, 1722), "Hippolyte) rue St Dominique Faubourg"),
    ((552, 1629, 723, 1680), "d'enchères."),
    ((758, 1682, 1470, 1776), "St Germain N° 23. d'une Maison à -"),
    ((746, 1744, 1492, 1844), "Paris; Susd. rue St Dominique Nos 21 & 23."),
    ((1511, 1751, 1570, 1862), "16"),
    ((1639, 1751, 1722, 1798), "1.-10-"),
    ((1541, 1776, 1624, 1862), "Plans."),
    ((1629, 1795, 1720, 1849), "2.20-"),
    ((341, 1864, 593, 2001), "Procuration"),
    ((758, 1881, 1457, 1974), "de Monval (par Charles Antoine"),
    ((142, 1908, 218, 2031), "537"),
    ((252, 1908, 284, 1977), "8"),
    ((738, 1935, 1482, 2048), "Auguste Baron Gamon) demeurant"),
    ((748, 2006, 1477, 2102), "à Grenoble, comme Tuteur de ses trois"),
    ((738, 2073, 1514, 2176), "filles à Armand du Peyrat, quai Voltaire"),
    ((1639, 2131, 1717, 2220), "2.20"),
    ((1521, 2134, 1558, 2208), "8"),
    ((750, 2151, 868, 2230), "n° 15."),
]
HEIGHT = 2944


def riant_lines() -> list[RegisterLine]:
    return [RegisterLine(f"l{i:03d}", box, text) for i, (box, text) in enumerate(RIANT)]


def test_columns_from_the_printed_header() -> None:
    columns, bottom = header_columns(riant_lines(), HEIGHT)
    assert [c.role for c in columns] == ["number", "date", "nature", "names", "relation", "fees"]
    assert columns[3].label.startswith("NOMS, PRENOMS")
    assert bottom == 510  # the lowest label, "Actes." of the dates column


def test_rows_start_at_act_numbers_and_take_their_cells() -> None:
    entries, _ = build_entries(riant_lines(), HEIGHT)
    assert [e.act_number for e in entries] == ["535", "536", "537"]
    first = entries[0]
    assert first.cell("names").text.startswith("Bergeron (par le mandataire de\nMadelaine Félicité Grard Veuve de")
    assert first.cell("names").text.endswith("payée comptant.")
    assert first.cell("nature").text == "Transport"
    assert first.cell("relation").text == "14" and first.cell("fees").text == "122-20"
    assert first.date.iso == "1830-09-07"  # the day, with the heading's month and year
    # Act 536's first names line is written above its number, act 537's below: both open their rows.
    assert entries[1].cell("names").text.startswith("Terray (à la requête de Claude ~")
    assert entries[2].cell("names").text.startswith("de Monval (par Charles Antoine")
    text = {ln.id: ln.text for ln in riant_lines()}
    in_entries = {text[i] for e in entries for i in e.line_ids}
    assert "An 1830 mois de Septembre." not in in_entries  # the month heading is no act's
    assert "De Goguet, sr & Delles Poupart." not in in_entries  # the end of act 534, begun a page before


def test_fields_and_persons_of_the_entries() -> None:
    entries = read_entries(riant_lines(), HEIGHT)
    assert [e.nature for e in entries] == ["transport", "procès-verbal", "procuration"]
    assert [e.date.iso for e in entries] == ["1830-09-07", "1830-09-07", "1830-09-08"]
    assert [(p.surname, p.first_names) for p in entries[2].persons] == [
        ("de Monval", "Charles Antoine Auguste"),
        ("du Peyrat", "Armand"),
    ]
    assert entries[2].persons[1].domicile == "quai Voltaire n° 15"
    assert ("Lesecq", "Jerôme Auguste") in [(p.surname, p.first_names) for p in entries[0].persons]
    monval = entries[2].persons[0]
    assert entries[2].cell("names").text[monval.start : monval.end] == "de Monval"


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
    days = iter(["11", "17", "11"])
    lines = [
        RegisterLine(ln.id, ln.box, next(days) if 240 < ln.box[0] < 330 and ln.box[1] > 900 else ln.text)
        for ln in riant_lines()
    ]
    entries = read_entries(lines, HEIGHT)
    assert [e.date.raw for e in entries] == ["11", "17", "11"]
    assert [e.date.iso for e in entries] == ["1830-09-11"] * 3
    assert entries[1].date.inherited == "order"
