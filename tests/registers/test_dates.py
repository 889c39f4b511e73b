"""Date parsing on real date cells and month headings of the LECTAUREP training pages."""

from __future__ import annotations

import pytest

from registers.dates import Context, is_month_header, month_of, parse_date, read_header


@pytest.mark.parametrize(
    ("word", "month"),
    [("7bre", 9), ("8bre", 10), ("9bre", 11), ("Xbre", 12), ("X^bre", 12), ("10bre", 12), ("Sept^bre", 9),
     ("Fevrier", 2), ("février", 2), ("Dec^bre", 12), ("Nov", 11), ("Juillet", 7), ("Maison", None)],
)  # fmt: skip
def test_register_month_abbreviations(word: str, month: int | None) -> None:
    assert month_of(word) == month


@pytest.mark.parametrize(
    ("text", "year", "month"),
    [
        ("An 1851 mois de Mars", 1851, 3),  # dufour-1
        ("An 1830 mois de Septembre.", 1830, 9),  # riant-4
        ("An 1920 , mois de Février", 1920, 2),  # random-set-1, FRAN_0025_0422
        ("An 1929, mois de Juillet", 1929, 7),  # random-set-1, FRAN_0025_0934
    ],
)
def test_month_headings(text: str, year: int, month: int) -> None:
    assert is_month_header(text)
    assert read_header(text, Context()) == Context(year, month)


def test_names_lines_are_not_headings() -> None:
    assert not is_month_header("Gelot (parMr Joseph) Md deMeubles, demt à")
    assert not is_month_header("à Paris 2 rue Malleville Mort p. la France. le 16 8bre 1915.")


@pytest.mark.parametrize(
    ("cell", "iso", "inherited"),
    [
        ("11", "1851-03-11", "month+year"),  # a bare day: month and year from the heading
        ("4.", "1851-03-04", "month+year"),
        ("14 (12 &)", "1851-03-14", "month+year"),  # the act's day first, the days of its parts after
        ("9 & 11", "1851-03-09", "month+year"),
        ("Suite du 19 Sept^bre 1928", "1928-09-19", ""),
        ("Suite des 21. 22 et 24 X^bre 1929", "1929-12-21", ""),
        ("Ste 4 Fevrier 1920", "1920-02-04", ""),
        ("1er 7bre", "1851-09-01", "year"),
    ],
)
def test_date_cells(cell: str, iso: str, inherited: str) -> None:
    parsed = parse_date(cell, Context(1851, 3))
    assert parsed.iso == iso
    assert parsed.inherited == inherited
    assert parsed.raw == " ".join(cell.split())


def test_impossible_or_unreadable_dates_have_no_iso() -> None:
    assert parse_date("31", Context(1920, 2)).iso is None  # no 31 February
    assert parse_date("XXX", Context(1920, 2)).iso is None
    assert parse_date("12", Context()).iso is None  # no heading read yet
