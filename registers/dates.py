"""Dates of register entries: the day in the date column, the month and year of the page's header.

A répertoire writes the month and year once, in a header line of the names
column (``An 1851 mois de Mars``), and each act's date column holds the day
alone (``11``), sometimes with a month (``Suite du 19 Sept^bre 1928``). Month
names are abbreviated the register way: ``7bre``, ``8bre``, ``9bre`` and
``Xbre`` (or ``10bre``) for September to December, from the Latin numbering of
the months (septem, octo, novem, decem), ``Sept^bre``, ``Fév.``. These forms
are outside what general date parsers read (dateparser reads ``4 février 1920``
but neither a bare day nor ``Xbre``), so the month table below is the
register's own vocabulary; :mod:`datetime` checks that the day exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from registers.keys import fold

#: Folded month words (and register abbreviations, ``^`` and dots removed) → month number.
MONTHS: dict[str, int] = {
    "janvier": 1, "janv": 1, "jan": 1, "jer": 1, "janvbre": 1,
    "fevrier": 2, "fevr": 2, "fev": 2, "fevbre": 2,
    "mars": 3,
    "avril": 4, "avr": 4,
    "mai": 5,
    "juin": 6,
    "juillet": 7, "juil": 7, "jet": 7, "juilt": 7,
    "aout": 8,
    "septembre": 9, "sept": 9, "sep": 9, "7bre": 9, "septbre": 9, "sbre": 9,
    "octobre": 10, "oct": 10, "8bre": 10, "octbre": 10, "obre": 10,
    "novembre": 11, "nov": 11, "9bre": 11, "novbre": 11, "nbre": 11,
    "decembre": 12, "dec": 12, "xbre": 12, "10bre": 12, "decbre": 12, "dbre": 12,
}  # fmt: skip

_LONG_MONTHS = [m for m in MONTHS if len(m) >= 5]
_TOKEN = re.compile(r"[0-9A-Za-zÀ-ÿ^.]+")
_YEAR = re.compile(r"\b(1[5-9]\d\d|20\d\d)\b")
_DAY = re.compile(r"^(\d{1,2})(?:er|e|°)?$")
_HEADER = re.compile(r"\ban\b.{0,6}?(1[5-9]\d\d|20\d\d)|\bmois\s+d", re.IGNORECASE)


def month_of(word: str) -> int | None:
    """Return the month number of a month word or register abbreviation (``Xbre`` → 12), or None."""
    key = fold(word).replace("^", "").replace(".", "").strip()
    if key in MONTHS:
        return MONTHS[key]
    if len(key) >= 4 and key.isalpha():
        for name, number in MONTHS.items():
            if len(name) >= 4 and (key.startswith(name) or name.startswith(key)):
                return number
        # A misread letter ("Oetbre", "Fevrir"): the closest month word within one edit in five letters.
        found = process.extractOne(key, _LONG_MONTHS, scorer=Levenshtein.normalized_distance, score_cutoff=0.2)
        if found is not None:
            return MONTHS[found[0]]
    return None


@dataclass
class Context:
    """What the page has said so far: the year and month in force (None until a header or a full date says)."""

    year: int | None = None
    month: int | None = None


def is_month_header(text: str) -> bool:
    """Return whether a line is a month heading of the register (``An 1851 mois de Mars``)."""
    return bool(_HEADER.search(text)) and bool(_YEAR.search(text) or "mois" in fold(text))


def read_header(text: str, context: Context) -> Context:
    """Return the context after a heading line: its year and month where it gives them."""
    year = _YEAR.search(text)
    month = None
    m = re.search(r"mois\s+d[e']?\s*(\S+)", fold(text))
    if m:
        month = month_of(m.group(1))
    if month is None:
        for token in _TOKEN.findall(text):
            if not token[0].isdigit() or token[:2] in ("7b", "8b", "9b", "10"):
                month = month_of(token) or month
    return Context(int(year.group(1)) if year else context.year, month or context.month)


@dataclass
class ParsedDate:
    """A date cell read: its raw text, the ISO date when complete and valid, and which parts were inherited."""

    raw: str
    iso: str | None
    day: int | None = None
    month: int | None = None
    year: int | None = None
    inherited: str = ""  # "", "year", "month+year": what the header or earlier entries supplied


def parse_date(text: str, context: Context | None = None) -> ParsedDate:
    """Return the date a cell's text gives, completed by the context's month and year.

    The first day number (1–31) is the act's day (``9 & 11`` → 9, the act's
    first day); a month word after it and a four-digit year are used when
    present, else inherited from ``context``.
    """
    context = context or Context()
    raw = " ".join(text.split())
    # "12 (17 7bre &)": the act is of the 12th of the heading's month; what the parenthesis adds (the
    # dates of acts joined to it) is another month's. A bare day before a parenthesis keeps it.
    head, paren, _ = raw.partition("(")
    scope = head if paren and re.search(r"\d", head) else raw
    # Superscripts are marked "^" in transcriptions ("1^er", "X^bre"): the letters count, not the mark.
    tokens = _TOKEN.findall(scope.replace("&", " ").replace(".", " ").replace("^", ""))
    day = month = year = None
    for i, token in enumerate(tokens):
        bare = token.strip(".")
        if day is None:
            m = _DAY.match(bare)
            if m and 1 <= int(m.group(1)) <= 31:
                day = int(m.group(1))
                # A month word may follow the day directly, or after other days (``21. 22 et 24 Xbre``).
                for later in tokens[i + 1 : i + 6]:
                    found = month_of(later)
                    if found:
                        month = found
                        break
            continue
    y = _YEAR.search(scope)
    if y:
        year = int(y.group(1))
    inherited = []
    if month is None and day is not None:
        month = context.month
        inherited.append("month")
    if year is None and day is not None:
        year = context.year
        inherited.append("year")
    iso = None
    if day and month and year:
        try:
            iso = date(year, month, day).isoformat()
        except ValueError:
            iso = None
    return ParsedDate(raw, iso, day, month, year, "+".join(inherited))
