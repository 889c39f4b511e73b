"""The page record: what registre read on one page, in pixels of the original scan, confidences 0–1.

A :class:`PageRecord` is the one result of a page; JSON, ALTO and PAGE-XML are
serializations of it (``flows/serializers.py``). Page ids are derived from
source keys and made safe to use as file or object names: no separators, no
``..``, no leading dot, nothing outside ``[A-Za-z0-9._-]``.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from registers.layout import Entry
from registers.page import entry_from_dict

#: Format tag written into every JSON record.
RECORD_FORMAT = "registre-page/1"

Point = tuple[int, int]
Box = tuple[int, int, int, int]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DOTS = re.compile(r"\.{2,}")
#: Longest page id; longer ones are cut and given a hash so they stay unique.
MAX_ID_LENGTH = 160


@dataclass
class WordRecord:
    """A recognized word: text, box (x0, y0, x1, y1) in original pixels, confidence 0–1."""

    text: str
    box: Box
    confidence: float


@dataclass
class Alternative:
    """One of the n best readings of a line, with its confidence 0–1 relative to the others."""

    text: str
    confidence: float


@dataclass
class LineRecord:
    """A recognized line: geometry in original pixels, reading order, table position, text and words."""

    id: str
    polygon: list[Point]
    baseline: list[Point]
    order: int
    text: str
    confidence: float
    column: int | None = None
    cell: int | None = None
    words: list[WordRecord] = field(default_factory=list)
    nbest: list[Alternative] = field(default_factory=list)

    @property
    def bbox(self) -> Box:
        """Return the (x0, y0, x1, y1) box of the polygon in pixels."""
        xs = [p[0] for p in self.polygon]
        ys = [p[1] for p in self.polygon]
        return min(xs), min(ys), max(xs), max(ys)


@dataclass
class PageRecord:
    """Everything read on one page, with where it came from and which model and decoder read it."""

    page_id: str
    source_key: str
    sha256: str
    size_bytes: int
    width: int
    height: int
    lines: list[LineRecord]
    model_version: str
    decoder: str
    lm_version: str | None = None
    segmenter: str = ""  # "rules" or "learned:<line finder version>"
    #: The line finder's certainty over the page (0–1; None for the rule-based finder), and whether it is too low
    #: to trust: a blank, damaged or unusually laid-out page, whose few lines may not be all there is.
    segmentation_confidence: float | None = None
    low_segmentation_confidence: bool = False
    software: str = "registre"
    created: str = ""
    #: The register's entries (table rows) with their fields and persons; empty for a page with no table.
    entries: list[Entry] = field(default_factory=list)

    @property
    def mean_confidence(self) -> float:
        """Return the mean line confidence (0 for a page without lines)."""
        return sum(ln.confidence for ln in self.lines) / len(self.lines) if self.lines else 0.0

    @property
    def text(self) -> str:
        """Return the page text, one line per line in reading order."""
        return "\n".join(ln.text for ln in sorted(self.lines, key=lambda ln: ln.order))

    def to_dict(self) -> dict[str, Any]:
        """Return the record as plain JSON-able data (tuples become lists)."""
        return {"format": RECORD_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PageRecord:
        """Return the record stored by :meth:`to_dict`."""
        data = dict(data)
        fmt = data.pop("format", RECORD_FORMAT)
        if fmt != RECORD_FORMAT:
            raise ValueError(f"unknown record format {fmt!r}")
        lines = []
        for ln in data.pop("lines"):
            ln = dict(ln)
            ln["polygon"] = [tuple(p) for p in ln["polygon"]]
            ln["baseline"] = [tuple(p) for p in ln["baseline"]]
            ln["words"] = [WordRecord(w["text"], tuple(w["box"]), w["confidence"]) for w in ln.get("words", [])]
            ln["nbest"] = [Alternative(**a) for a in ln.get("nbest", [])]
            lines.append(LineRecord(**ln))
        entries = [entry_from_dict(e) for e in data.pop("entries", [])]
        return cls(lines=lines, entries=entries, **data)


def record_to_json(record: PageRecord) -> bytes:
    """Return the record as UTF-8 JSON bytes."""
    return json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def record_from_json(data: bytes | str) -> PageRecord:
    """Return the record of JSON written by :func:`record_to_json`."""
    return PageRecord.from_dict(json.loads(data))


def page_id_for(key: str) -> str:
    """Return a safe page id for a source key: its path without extension, ``/`` turned into ``__``.

    Accents are dropped and anything outside ``[A-Za-z0-9._-]`` becomes ``_``.
    """
    stem = key.rsplit(".", 1)[0] if "." in key.rsplit("/", 1)[-1] else key
    # French names keep their letters: "Été" -> "Ete", not "_t_".
    stem = "".join(c for c in unicodedata.normalize("NFKD", stem) if not unicodedata.combining(c))
    parts = (_DOTS.sub(".", _UNSAFE.sub("_", p)).strip(".") for p in re.split(r"[/\\]+", stem))
    safe = "__".join(p for p in parts if p)
    if not safe:
        safe = "page"
    if len(safe) > MAX_ID_LENGTH:
        safe = safe[: MAX_ID_LENGTH - 9].rstrip(".") + "-" + hashlib.sha256(key.encode()).hexdigest()[:8]
    return safe


def assign_page_ids(keys: Iterable[str]) -> dict[str, str]:
    """Return a unique safe page id per key; keys whose ids collide get a short hash of the key appended.

    Ids are compared case-insensitively, as they must not collide on macOS or
    Windows filesystems either.
    """
    keys = list(keys)
    ids = {k: page_id_for(k) for k in keys}
    counts = Counter(i.casefold() for i in ids.values())
    return {
        k: (i if counts[i.casefold()] == 1 else f"{i}-{hashlib.sha256(k.encode()).hexdigest()[:8]}")
        for k, i in ids.items()
    }
