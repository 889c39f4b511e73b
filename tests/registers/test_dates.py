"""Date parsing on real date cells and month headings of LECTAUREP training pages (dufour-1, riant-4, random-set-1)."""

from __future__ import annotations

import pytest

from registers.dates import Context, is_month_header, month_of, parse_date, read_header


@pytest.mark.parametrize(
    ("word", "month"),
    [("7bre", 9), ("8bre", 10), ("9bre", 11), ("Xbre", 12), ("X^bre", 12), ("10bre", 12), ("Sept^bre", 9),
     ("Fevrier", 2), ("février", 2), ("Dec^bre", 12), ("Nov", 11), ("Juillet", 7), ("Otobre", 10),
     ("Maison", None), ("Jean", None)],
)  # fmt: skip
def test_register_month_abbreviations(word: str, month: int | None) -> None:
    assert month_of(word) == month


@pytest.mark.parametrize(
    ("text", "year", "month"),
    [
        ("An 1850 mois de Décembre", 1850, 12),  # dufour-1, DAFANCH96_048MIC07674_L-1
        ("An 1850 mois d'Otobre.", 1850, 10),  # DAFANCH96_048MIC07667_L-0: the clerk's slip
        ("An 1830 mois deJuillet", 1830, 7),  # riant-4, DAFANCH96_048MIC06479_L-1
        ("An 1830. mois de Septembre.", 1830, 9),  # DAFANCH96_048MIC06489_L-1
        ("An 1830 mois d'Août=..", 1830, 8),  # DAFANCH96_048MIC06487_L-1
    ],
)
def test_month_headings(text: str, year: int, month: int) -> None:
    assert is_month_header(text)
    assert read_header(text, Context()) == Context(year, month)


def test_a_heading_without_its_year_keeps_the_year_before() -> None:
    # riant-4, DAFANCH96_048MIC06481_L-0: "5 dud. mois deJuin" (du dit mois) under the year 1830.
    assert read_header("5 dud. mois deJuin", Context(1830, 5)) == Context(1830, 6)


def test_names_lines_are_not_headings() -> None:
    assert not is_month_header("Nicolle (parMr Jean Céleste) fondeur etfabricant")
    assert not is_month_header("Villa Hèlène, le 27 7bre 1907.")


@pytest.mark.parametrize(
    ("cell", "iso", "inherited"),
    [
        ("7", "1850-10-07", "month+year"),  # a bare day: month and year from the heading
        ("5.", "1850-10-05", "month+year"),
        ("12 (17 7bre &)", "1850-10-12", "month+year"),  # dufour-1 07668_L-0: the bracket's month is not the act's
        ("5 (& 11 7bre)", "1850-10-05", "month+year"),  # 07670_L-1
        ("6 (30 août 2 7bre &)", "1850-10-06", "month+year"),  # 07671_L-0
        ("14 (30 9bre &)", "1850-10-14", "month+year"),  # 07676_L-1
        ("6.7bre", "1850-09-06", "year"),  # riant-4 06487_L-1: day and month run together
        ("4. 7bre", "1850-09-04", "year"),  # 06486_L-1
        ("Autre du 9. 8bre", "1850-10-09", "year"),  # 06489_L-0
        ("(Ste du 28 Xbre 1848)", "1848-12-28", ""),  # dufour-1 07645_L-0
        ("(Ste des 4, 6 & 7 8bre 1845)", "1845-10-04", ""),  # 07667_L-1
        ("(Ste du 28 9bre 1903)", "1903-11-28", ""),  # random-set-1 FRAN_0025_0080_L-0
        ("Ste du 31 8bre", "1850-10-31", "year"),  # dufour-1 07671_L-1
        ("1^er", "1850-10-01", "month+year"),  # a superscript, as transcriptions mark it
    ],
)
def test_date_cells(cell: str, iso: str, inherited: str) -> None:
    parsed = parse_date(cell, Context(1850, 10))
    assert parsed.iso == iso
    assert parsed.inherited == inherited
    assert parsed.raw == " ".join(cell.split())


def test_impossible_or_unreadable_dates_have_no_iso() -> None:
    assert parse_date("31", Context(1850, 9)).iso is None  # no 31 September
    assert parse_date("XXX", Context(1850, 9)).iso is None
    assert parse_date("12", Context()).iso is None  # no heading read yet
