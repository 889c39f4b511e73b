"""A page's register entries with their fields read, and their JSON form in the page record."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

from registers.dates import ParsedDate
from registers.layout import Cell, Entry, RegisterLine, build_entries
from registers.natures import act_nature
from registers.persons import NameKnowledge, Person, find_persons, load_knowledge

#: Cell texts that repeat the entry above (``do``, ``-do-``, ``id.``, ``idem``, ``"``).
_DITTO = re.compile(r"^[\s\"'«»\-.]*(?:(?:do|d°|id|idem|\")[\s\"'«»\-.]*)+$", re.IGNORECASE)


def is_ditto(text: str) -> bool:
    """Return whether a cell only repeats the one above it."""
    return bool(text.strip()) and bool(_DITTO.match(text.strip()))


def read_entries(lines: list[RegisterLine], page_height: int, know: NameKnowledge | None = None) -> list[Entry]:
    """Return the page's entries with act number, date, nature and persons read; [] for a page with no table."""
    entries, _ = build_entries(lines, page_height)
    if not entries:
        return []
    know = know or load_knowledge()
    by_id = {ln.id: ln for ln in lines}
    previous: Entry | None = None
    for entry in entries:
        nature_cell = entry.cell("nature")
        if nature_cell is not None:
            entry.nature_text = nature_cell.text
            entry.nature = act_nature(nature_cell.text)
            if entry.nature is None and previous is not None and is_ditto(nature_cell.text.split("\n")[0]):
                entry.nature = previous.nature
        date_cell = entry.cell("date")
        if previous is not None and previous.date is not None and date_cell is not None and is_ditto(date_cell.text):
            entry.date = ParsedDate(date_cell.text, previous.date.iso, previous.date.day, previous.date.month,
                                    previous.date.year, "ditto")  # fmt: skip
        names = entry.cell("names")
        if names is not None:
            entry.persons = find_persons([by_id[i] for i in names.line_ids], know)
        previous = entry
    _keep_chronological(entries)
    return entries


def _keep_chronological(entries: list[Entry]) -> None:
    """Set a bare day that breaks the register's order to its neighbours' (``5, 6, 5`` → ``5, 5, 5``).

    A répertoire lists acts by date, so an act between two of the same day is
    of that day too; a lone day out of order is a misread digit. Only days the
    heading completed are touched (a full date written in the cell is kept).
    """
    for before, entry, after in zip(entries, entries[1:], entries[2:], strict=False):
        a, d, b = before.date, entry.date, after.date
        if not (a and d and b and a.iso and b.iso and a.iso == b.iso) or d.iso == a.iso:
            continue
        if "month" in d.inherited and (d.iso is None or d.iso < a.iso or d.iso > b.iso):
            entry.date = ParsedDate(d.raw, a.iso, a.day, a.month, a.year, "order")


def entry_to_dict(entry: Entry) -> dict[str, Any]:
    """Return the entry as JSON-able data."""
    return asdict(entry)


def entry_from_dict(data: dict[str, Any]) -> Entry:
    """Return the entry stored by :func:`entry_to_dict`."""
    data = dict(data)
    cells = [Cell(**{**c, "box": tuple(c["box"])}) for c in data.pop("cells", [])]
    persons = [Person(**{**p, "box": tuple(p["box"])}) for p in data.pop("persons", [])]
    date = data.pop("date", None)
    return Entry(
        **{**data, "box": tuple(data["box"])},
        cells=cells,
        persons=persons,
        date=ParsedDate(**date) if date else None,
    )
