"""Register entries from the lines of a page: the table's rows, one act per row, with its cells by column.

A répertoire page is a printed form: a header of column labels (``Nos``,
``DATES``, ``NATURE ET ESPÈCE DES ACTES``, ``NOMS, PRÉNOMS ET DOMICILES DES
PARTIES``, ``RELATION DE L'ENREGISTREMENT``/``DATES``, ``DROITS``) over a body
where each act takes one row across all columns. Rows are not ruled: an act
starts where its number is written in the first column, and its row reaches
down to the next act's start; a row's height is set by its tallest cell (the
names column, often four or five lines).

:func:`column_roles` finds the columns from the printed labels (matched with
rapidfuzz, so a misread label still counts), or from the segmentation's column
indices when the page has no readable header. :func:`build_entries` then cuts
the body into rows at each act number: a row starts at the top of the act
number or of the names line beside it, whichever is higher (the number is
often written a little below the first line of names).
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass, field

from rapidfuzz import fuzz

from registers.dates import Context, ParsedDate, is_month_header, parse_date, read_header
from registers.keys import fold

Box = tuple[int, int, int, int]

#: Column roles in page order.
ROLES = ("number", "date", "nature", "names", "relation", "fees")

# Printed labels of each column (folded), from the headers of the LECTAUREP training pages.
_LABELS: dict[str, tuple[str, ...]] = {
    "number": ("nos", "n os", "nos du repertoire", "repertoire", "rep re", "numeros"),
    "nature": ("nature et espece", "nature et espece des actes", "en brevets", "en minutes"),
    "names": ("noms, prenoms et domiciles des parties", "indications, situations et prix des biens"),
    "relation": ("relation", "relation de l'enregistrement", "l'enregistrement"),
    "fees": ("droits",),
}
_AMBIGUOUS_DATES = ("dates",)  # the date column's label, and the relation's date column's


@dataclass
class RegisterLine:
    """A line as the entry builder needs it: id, box in pixels, text, and the segmentation's column if any."""

    id: str
    box: Box
    text: str
    column: int | None = None
    confidence: float = 1.0
    words: list[tuple[str, Box, float]] = field(default_factory=list)
    nbest: list[str] = field(default_factory=list)

    @property
    def cx(self) -> float:
        """Return the x of the box centre in pixels."""
        return (self.box[0] + self.box[2]) / 2

    @property
    def cy(self) -> float:
        """Return the y of the box centre in pixels."""
        return (self.box[1] + self.box[3]) / 2

    @property
    def height(self) -> int:
        """Return the box height in pixels."""
        return self.box[3] - self.box[1]


@dataclass
class Column:
    """A column of the page's table: its role, printed label ('' when none was read) and x range in pixels."""

    role: str
    label: str
    x0: float
    x1: float
    index: int | None = None  # the segmentation's column index, when lines carry one


@dataclass
class Cell:
    """The text of one column of an entry: its lines in reading order, joined by newlines."""

    role: str
    label: str
    column: int | None
    text: str
    line_ids: list[str]
    box: Box


@dataclass
class Entry:
    """One act of the register: its row of cells and what was read from them."""

    index: int
    box: Box
    line_ids: list[str]
    cells: list[Cell]
    act_number: str | None = None
    date: ParsedDate | None = None
    nature_text: str = ""
    nature: str | None = None
    persons: list = field(default_factory=list)  # registers.persons.Person

    def cell(self, role: str) -> Cell | None:
        """Return the entry's cell of a column role, or None."""
        return next((c for c in self.cells if c.role == role), None)


def _label_role(text: str) -> tuple[str, float] | None:
    """Return (role, score 0–100) of a printed label, or None when the text is no label."""
    key = " ".join(re.sub(r"[^a-z' ,]", " ", fold(text)).split())
    if not key:
        return None
    best: tuple[str, float] | None = None
    for role, labels in _LABELS.items():
        for label in labels:
            score = fuzz.ratio(key, label)
            if len(key) >= 8:
                score = max(score, fuzz.partial_ratio(label, key) if len(label) >= 8 else 0)
            if score >= 80 and (best is None or score > best[1]):
                best = (role, score)
    if best is None and fuzz.ratio(key, "dates") >= 80:
        return "dates", float(fuzz.ratio(key, "dates"))
    return best


def header_columns(lines: list[RegisterLine], page_height: int) -> tuple[list[Column], float]:
    """Return the columns found from printed labels in the top third of the page, and the header's bottom y.

    Empty when fewer than three roles (one being names) are found: not a register table.
    """
    spans: dict[str, list[RegisterLine]] = {}
    dates: list[RegisterLine] = []
    scores: dict[str, float] = {}
    for line in lines:
        if line.box[1] > page_height / 3 or is_month_header(line.text):
            continue
        found = _label_role(line.text)
        if found is None:
            continue
        scores[line.id] = found[1]
        if found[0] == "dates":
            dates.append(line)
        else:
            spans.setdefault(found[0], []).append(line)
    if "names" not in spans:
        return [], 0.0
    names_x0 = min(ln.box[0] for ln in spans["names"])
    names_x1 = max(ln.box[2] for ln in spans["names"])
    for line in dates:
        spans.setdefault("date" if line.cx < names_x0 else "relation_dates", []).append(line)
    if "relation_dates" in spans:  # "DATES" under "RELATION DE L'ENREGISTREMENT" is the sharper bound
        spans["relation"] = spans.pop("relation_dates")
    # The form's order: a label on the wrong side of the names column is something else misread (a folio number).
    for role in list(spans):
        left = ROLES.index(role) < ROLES.index("names")
        keep = [ln for ln in spans[role] if role == "names" or (ln.cx < names_x0 if left else ln.cx > names_x1)]
        if keep:
            spans[role] = keep
        else:
            del spans[role]
    if len(spans) < 3:
        return [], 0.0
    labelled = sorted(spans.items(), key=lambda kv: statistics.mean(ln.cx for ln in kv[1]))
    columns = []
    for role, group in labelled:
        x0, x1 = min(ln.box[0] for ln in group), max(ln.box[2] for ln in group)
        label = max(group, key=lambda ln: (scores.get(ln.id, 0.0) >= 90, -ln.box[1])).text.strip()
        columns.append(Column(role, label, x0, x1))
    header_lines = [ln for group in spans.values() for ln in group]
    bottom = max(ln.box[3] for ln in header_lines)
    if columns[0].role == "date":
        # No "Nos" label read: the act numbers are the column left of the dates' label.
        columns.insert(0, Column("number", "", columns[0].x0 - 1, columns[0].x0))
    _set_bounds(columns)
    return columns, bottom


def _set_bounds(columns: list[Column]) -> None:
    """Widen adjacent columns to meet halfway between their label spans (the outer ones reach the page edges)."""
    for left, right in zip(columns, columns[1:], strict=False):
        mid = (left.x1 + right.x0) / 2
        left.x1, right.x0 = mid, mid
    if columns:
        columns[0].x0 = float("-inf")
        columns[-1].x1 = float("inf")


def index_columns(lines: list[RegisterLine]) -> list[Column]:
    """Return columns from the segmentation's column indices when no header was read.

    The names column is the one whose lines are widest; the columns left of it
    are number, date, then nature; right of it, relation then fees.
    """
    by_index: dict[int, list[RegisterLine]] = {}
    for line in lines:
        if line.column is not None and line.text.strip():
            by_index.setdefault(line.column, []).append(line)
    if len(by_index) < 3:
        return []
    order = sorted(by_index)
    widths = {i: statistics.median(ln.box[2] - ln.box[0] for ln in by_index[i]) * len(by_index[i]) for i in order}
    names = max(order, key=lambda i: widths[i])
    pos = order.index(names)
    left, right = order[:pos], order[pos + 1 :]
    roles: dict[int, str] = {names: "names"}
    for k, i in enumerate(left):
        roles[i] = ("number", "date", "nature")[min(k, 2)] if len(left) >= 3 else ("number", "nature")[min(k, 1)]
    for k, i in enumerate(right):
        roles[i] = "relation" if k < len(right) - 1 or len(right) == 1 else "fees"
    columns = []
    for i in order:
        group = by_index[i]
        columns.append(Column(roles[i], "", min(ln.box[0] for ln in group), max(ln.box[2] for ln in group), i))
    return columns


def _role_of(line: RegisterLine, columns: list[Column]) -> Column:
    if columns and columns[0].index is not None and line.column is not None:
        for col in columns:
            if col.index == line.column:
                return col
    for col in columns:
        if col.x0 <= line.cx < col.x1:
            return col
    return min(columns, key=lambda c: min(abs(line.cx - c.x0), abs(line.cx - c.x1)))


# "Ste" stays out: folded, it is also "Sté" (société), which opens the acts of companies.
_NOT_OPENING = frozenset(
    "paris rue place boulevard bd boul avenue av quai n no st et de du des la le les pour par".split()
)


def opens_entry(text: str) -> bool:
    """Return whether a names line may open an act: a capitalized name first (``Gelot (par``, ``de Monval``).

    Not an address (``à Paris``, ``rue ...``, ``n° 13``) nor the end of the first
    names in parentheses (``Hippolyte) rue ...``).
    """
    words = text.strip().split()
    if not words:
        return False
    if fold(words[0]) in ("de", "du", "d'") and len(words) > 1:
        words = words[1:]  # a particle: "de Monval (par Charles"
    elif fold(words[0]).startswith("d'") and len(words[0]) > 2:
        words = [words[0][2:], *words[1:]]
    first = words[0].strip("\"'«(")
    if first.endswith((")", ",")):
        return False
    key = re.sub(r"[^a-z]", "", fold(first))
    return bool(first[:1].isupper() and key and key not in _NOT_OPENING and not first[:1].isdigit())


def _union(boxes: list[Box]) -> Box:
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def _anchors(lines: list[RegisterLine]) -> list[list[RegisterLine]]:
    """Return the act-start lines grouped where they overlap vertically (``14`` over ``(12 &)`` is one start)."""
    groups: list[list[RegisterLine]] = []
    for line in sorted(lines, key=lambda ln: ln.box[1]):
        if groups:
            last = _union([ln.box for ln in groups[-1]])
            overlap = min(last[3], line.box[3]) - max(last[1], line.box[1])
            if overlap > 0.5 * min(line.height, last[3] - last[1]):
                groups[-1].append(line)
                continue
        groups.append([line])
    return groups


def build_entries(lines: list[RegisterLine], page_height: int) -> tuple[list[Entry], list[Column]]:
    """Return the page's entries (rows of acts, in page order) and its columns; no entries for a page with no table.

    Dates are completed with the month and year of the month headings above
    each entry (or of the entries before); natures and persons are left to
    :mod:`registers.natures` and :mod:`registers.persons`.
    """
    lines = [ln for ln in lines if ln.box[3] > ln.box[1]]
    if not lines:
        return [], []
    columns, header_bottom = header_columns(lines, page_height)
    if not columns:
        columns = index_columns(lines)
        header_bottom = 0.0
    if not columns or not any(c.role == "names" for c in columns):
        return [], columns
    body = [ln for ln in lines if ln.cy > header_bottom]
    role = {ln.id: _role_of(ln, columns) for ln in body}
    headings = [ln for ln in body if role[ln.id].role == "names" and is_month_header(ln.text)]
    heading_ids = {ln.id for ln in headings}
    starts = [ln for ln in body if role[ln.id].role == "number" and ln.text.strip() and ln.id not in heading_ids]
    if not starts:
        starts = [ln for ln in body if role[ln.id].role == "date" and ln.text.strip()]
    if not starts:
        return [], columns
    med_h = statistics.median(ln.height for ln in body)
    names = sorted(
        (ln for ln in body if role[ln.id].role == "names" and ln.id not in heading_ids), key=lambda ln: ln.box[1]
    )
    # The first names line of each act is beside its number: level with it, a little below it (riant-4)
    # or a little above it (1920s hands), the same way down a page. Of the names lines near a number,
    # those that open like an act (a capitalized name; not "à Paris", "rue ...", "n° 13") are candidates,
    # and the one nearest the page's usual offset from the number is taken.
    groups = []
    for group in _anchors(starts):
        top, bottom = min(ln.box[1] for ln in group), max(ln.box[3] for ln in group)
        near = [ln for ln in names if top - 1.0 * med_h <= ln.box[1] <= bottom]
        groups.append((top, near, [ln for ln in near if opens_entry(ln.text)]))
    offsets = [min((ln.box[1] - top for ln in opening), key=abs) for top, _, opening in groups if opening]
    offset = statistics.median(offsets) if offsets else 0.0
    tops: list[float] = []
    for top, near, opening in groups:
        if opening:
            row_top = min(opening, key=lambda ln: (abs(ln.box[1] - top - offset), ln.box[1])).box[1]
        else:
            beside = [ln.box[1] for ln in near if ln.box[1] <= top + 0.25 * med_h]
            row_top = max(beside) if beside else top
        if tops and row_top <= tops[-1]:
            row_top = max(top, tops[-1] + 1)
        tops.append(row_top)
    rows: list[list[RegisterLine]] = [[] for _ in tops]
    for line in body:
        if line.id in heading_ids:
            continue
        # A line belongs to the last row starting above its centre.
        k = max((i for i, t in enumerate(tops) if t <= line.cy), default=None)
        if k is not None:
            rows[k].append(line)
    context = Context()
    for line in lines:
        if line.cy <= header_bottom and is_month_header(line.text):
            context = read_header(line.text, context)
    entries: list[Entry] = []
    for k, (top, row) in enumerate(zip(tops, rows, strict=True)):
        for heading in headings:
            if heading.cy <= top + 0.25 * med_h and (k == 0 or heading.cy > tops[k - 1]):
                context = read_header(heading.text, context)
        if not row:
            continue
        cells = []
        for col in columns:
            in_col = sorted((ln for ln in row if role[ln.id] is col), key=lambda ln: (ln.box[1], ln.box[0]))
            if not in_col:
                continue
            indices = Counter(ln.column for ln in in_col if ln.column is not None)
            cells.append(
                Cell(
                    col.role,
                    col.label,
                    col.index if col.index is not None else (indices.most_common(1)[0][0] if indices else None),
                    "\n".join(ln.text for ln in in_col),
                    [ln.id for ln in in_col],
                    _union([ln.box for ln in in_col]),
                )
            )
        entry = Entry(len(entries), _union([ln.box for ln in row]), [c for cell in cells for c in cell.line_ids], cells)
        number = entry.cell("number")
        if number is not None:
            m = re.search(r"\d+", number.text)
            entry.act_number = m.group(0) if m else number.text.strip() or None
        date_cell = entry.cell("date")
        if date_cell is not None and date_cell.text.strip():
            entry.date = parse_date(date_cell.text, context)
            if entry.date.year and entry.date.month and not entry.date.inherited:
                context = Context(entry.date.year, entry.date.month)
        entries.append(entry)
    return entries, columns
