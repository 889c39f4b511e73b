"""The names index of a digitize output: one SQLite file, ``DST/names.sqlite``, and the search over it.

SQLite because archivists and genealogists open it with what they have (the
``sqlite3`` shell, DB Browser for SQLite, Python, R, LibreOffice Base), it
answers a name in milliseconds from its B-tree indexes, and it is one file to
copy beside the records. Schema (version :data:`SCHEMA_VERSION`)::

    meta(key TEXT PRIMARY KEY, value TEXT)
        -- schema, source (the SRC of the runs), updated (UTC ISO time)
    pages(page_id TEXT PRIMARY KEY, source_key TEXT, attempt TEXT, model_version TEXT,
          entries INTEGER, persons INTEGER)
        -- the pages indexed; ``attempt`` is the manifest attempt whose record was read
    lines(id INTEGER PRIMARY KEY, page_id TEXT, line_id TEXT, text TEXT,
          x0 INTEGER, y0 INTEGER, x1 INTEGER, y1 INTEGER, confidence REAL)
    terms(id INTEGER PRIMARY KEY, key TEXT UNIQUE, phonetic TEXT)
        -- every searchable word once: ``key`` lower case, accents and non-letters
        -- removed; ``phonetic`` its French phonetic key (abydos FONEM, see registers.keys)
    persons(id INTEGER PRIMARY KEY, page_id TEXT, entry INTEGER, act_number TEXT, date TEXT,
            nature TEXT, line INTEGER, surname TEXT, first_names TEXT, title TEXT,
            domicile TEXT, key TEXT, phonetic TEXT, confidence REAL,
            x0 INTEGER, y0 INTEGER, x1 INTEGER, y1 INTEGER, start INTEGER, end INTEGER,
            nbest TEXT)
        -- one row per person mention; ``line`` is lines.id; ``date`` ISO or NULL;
        -- ``start``/``end`` offsets of the surname in the entry's names cell;
        -- ``nbest`` a JSON list of the other spellings the decoder's n-best gave
    spellings(term INTEGER, person INTEGER, kind INTEGER)   -- PRIMARY KEY (term, person)
        -- the keys a person is found by: 0 the surname, 1 a part of it, 2 an n-best spelling
    words(term INTEGER, line INTEGER)                       -- PRIMARY KEY (term, line)
        -- every word of three letters or more of every line, for "any word" searches

A page redone replaces its rows (:meth:`NamesIndex.replace_page`); nothing is
duplicated. The flow reconciles the index with the manifest after each run.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein

from registers.keys import fold, name_key, phonetic_key
from registers.layout import Box, Entry
from registers.persons import PARTICLES

SCHEMA_VERSION = "1"
INDEX_KEY = "names.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS pages(page_id TEXT PRIMARY KEY, source_key TEXT, attempt TEXT, model_version TEXT,
                                 entries INTEGER, persons INTEGER);
CREATE TABLE IF NOT EXISTS lines(id INTEGER PRIMARY KEY, page_id TEXT, line_id TEXT, text TEXT,
                                 x0 INTEGER, y0 INTEGER, x1 INTEGER, y1 INTEGER, confidence REAL);
CREATE INDEX IF NOT EXISTS lines_page ON lines(page_id);
CREATE TABLE IF NOT EXISTS terms(id INTEGER PRIMARY KEY, key TEXT UNIQUE, phonetic TEXT);
CREATE INDEX IF NOT EXISTS terms_phonetic ON terms(phonetic);
CREATE TABLE IF NOT EXISTS persons(id INTEGER PRIMARY KEY, page_id TEXT, entry INTEGER, act_number TEXT, date TEXT,
                                   nature TEXT, line INTEGER, surname TEXT, first_names TEXT, title TEXT,
                                   domicile TEXT, key TEXT, phonetic TEXT, confidence REAL,
                                   x0 INTEGER, y0 INTEGER, x1 INTEGER, y1 INTEGER, start INTEGER, end INTEGER,
                                   nbest TEXT);
CREATE INDEX IF NOT EXISTS persons_page ON persons(page_id);
CREATE TABLE IF NOT EXISTS spellings(term INTEGER, person INTEGER, kind INTEGER, PRIMARY KEY(term, person))
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS spellings_person ON spellings(person);
CREATE TABLE IF NOT EXISTS words(term INTEGER, line INTEGER, PRIMARY KEY(term, line)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS words_line ON words(line);
"""
_WORD = re.compile(r"[^\W\d_][^\W\d_'’^-]*(?:['’^-][^\W\d_]+)*")


@dataclass
class IndexLine:
    """A line to index: its id, text, box in pixels and confidence."""

    id: str
    text: str
    box: Box
    confidence: float = 1.0


# Where a word holds two: after an elided particle (``d'Aimare``) or a glued one (``deVillers``, ``DeNeuilly``).
_WORD_JOINT = re.compile(r"['’-]|(?<=[a-zà-ÿ])(?=[A-ZÀ-Ý])|(?<=^[DL])(?=[A-ZÀ-Ý][a-zà-ÿ])")


def word_keys(word: str) -> set[str]:
    """Return the keys a word is found by: the whole, and its parts after a particle (``deVillers`` → ``villers``)."""
    keys = {name_key(word)}
    parts = [p for p in _WORD_JOINT.split(word) if p]
    if len(parts) > 1:
        keys.update(name_key(p) for p in parts)
    return {k for k in keys if len(k) >= 3}


def line_terms(text: str) -> set[str]:
    """Return the keys of a line's words of three letters or more (``Lefèvre,`` → ``lefevre``)."""
    return {k for w in _WORD.findall(text) for k in word_keys(w)}


def _surname_keys(surname: str) -> list[tuple[str, int]]:
    keys = [(name_key(surname), 0)]
    parts = [p for p in re.split(r"[\s'’-]+", surname) if fold(p) not in PARTICLES]
    if len(parts) > 1:
        keys += [(name_key(p), 1) for p in parts if len(name_key(p)) >= 3]
    keys += [(k, 1) for p in parts for k in word_keys(p) if k != name_key(p)]
    return [(k, kind) for k, kind in keys if k]


class NamesIndex:
    """A names index open for writing (a local SQLite file); use as a context manager to commit and close."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path)
        self.db.execute("PRAGMA journal_mode=MEMORY")
        self.db.execute("PRAGMA synchronous=OFF")
        # Words go into a B-tree keyed by term: inserts land all over it, so a large index needs a large cache.
        self.db.execute("PRAGMA cache_size=-262144")  # 256 MiB
        self.db.executescript(_SCHEMA)
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        self._terms: dict[str, int] = dict(self.db.execute("SELECT key, id FROM terms"))

    def __enter__(self) -> NamesIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(commit=exc[0] is None)

    def close(self, commit: bool = True) -> None:
        """Commit (unless told not to) and close the database."""
        if commit:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('updated', ?)",
                            (datetime.now(UTC).isoformat(timespec="seconds"),))  # fmt: skip
            self.db.commit()
        self.db.close()

    def set_meta(self, key: str, value: str) -> None:
        """Set one ``meta`` value (e.g. ``source``: the SRC the pages were read from)."""
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def term(self, key: str) -> int:
        """Return the id of a term key, adding it with its phonetic key when new."""
        found = self._terms.get(key)
        if found is None:
            cur = self.db.execute("INSERT INTO terms(key, phonetic) VALUES (?, ?)", (key, phonetic_key(key)))
            found = self._terms[key] = int(cur.lastrowid)
        return found

    def page_attempts(self) -> dict[str, str]:
        """Return ``{page_id: manifest attempt}`` of the pages indexed."""
        return dict(self.db.execute("SELECT page_id, attempt FROM pages"))

    def remove_page(self, page_id: str) -> None:
        """Remove every row of a page."""
        db = self.db
        db.execute("DELETE FROM spellings WHERE person IN (SELECT id FROM persons WHERE page_id = ?)", (page_id,))
        db.execute("DELETE FROM words WHERE line IN (SELECT id FROM lines WHERE page_id = ?)", (page_id,))
        db.execute("DELETE FROM persons WHERE page_id = ?", (page_id,))
        db.execute("DELETE FROM lines WHERE page_id = ?", (page_id,))
        db.execute("DELETE FROM pages WHERE page_id = ?", (page_id,))

    def replace_page(
        self,
        page_id: str,
        lines: Sequence[IndexLine],
        entries: Sequence[Entry],
        source_key: str = "",
        attempt: str = "",
        model_version: str = "",
    ) -> int:
        """Replace a page's rows by these lines and entries; return the number of persons indexed."""
        self.remove_page(page_id)
        db = self.db
        line_rows: dict[str, int] = {}
        words = []
        for ln in lines:
            cur = db.execute(
                "INSERT INTO lines(page_id, line_id, text, x0, y0, x1, y1, confidence) VALUES (?,?,?,?,?,?,?,?)",
                (page_id, ln.id, ln.text, *map(int, ln.box), float(ln.confidence)),
            )
            line_rows[ln.id] = int(cur.lastrowid)
            words += [(self.term(k), line_rows[ln.id]) for k in line_terms(ln.text)]
        db.executemany("INSERT OR IGNORE INTO words VALUES (?, ?)", words)
        persons = 0
        for entry in entries:
            date = entry.date.iso if entry.date else None
            for p in entry.persons:
                key = name_key(p.surname)
                if not key:
                    continue
                cur = db.execute(
                    "INSERT INTO persons(page_id, entry, act_number, date, nature, line, surname, first_names, title,"
                    " domicile, key, phonetic, confidence, x0, y0, x1, y1, start, end, nbest)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (page_id, entry.index, entry.act_number, date, entry.nature, line_rows.get(p.line_id),
                     p.surname, p.first_names, p.title, p.domicile, key, phonetic_key(p.surname), p.confidence,
                     *map(int, p.box), p.start, p.end, json.dumps(p.nbest, ensure_ascii=False)),
                )  # fmt: skip
                pid = int(cur.lastrowid)
                keys = _surname_keys(p.surname) + [(name_key(s), 2) for s in p.nbest if len(name_key(s)) >= 2]
                seen: dict[int, int] = {}
                for k, kind in keys:
                    t = self.term(k)
                    seen[t] = min(seen.get(t, kind), kind)
                db.executemany("INSERT INTO spellings VALUES (?,?,?)", [(t, pid, kind) for t, kind in seen.items()])
                persons += 1
        db.execute(
            "INSERT INTO pages VALUES (?,?,?,?,?,?)",
            (page_id, source_key, attempt, model_version, len(entries), persons),
        )
        return persons


# --- search ---------------------------------------------------------------------------------------


@dataclass
class Match:
    """A search result: where (page, line, box in pixels), what was read, and a score 0–1 (1 = exact)."""

    page_id: str
    line_id: str
    text: str
    score: float
    kind: str  # "person" or "word"
    box: Box = (0, 0, 0, 0)
    source_key: str = ""
    surname: str = ""
    first_names: str = ""
    title: str = ""
    domicile: str = ""
    entry: int | None = None
    act_number: str | None = None
    date: str | None = None
    nature: str | None = None
    matched: str = ""  # the indexed spelling the query matched
    line_box: Box = (0, 0, 0, 0)  # the whole line's box, in pixels

    def to_dict(self) -> dict:
        """Return the match as JSON-able data (empty person fields left out for word matches)."""
        out = {k: v for k, v in self.__dict__.items() if v not in ("", None) or k in ("text",)}
        out["box"] = list(self.box)
        out["line_box"] = list(self.line_box)
        return out


@dataclass
class _Vocabulary:
    keys: list[str]
    ids: list[int]
    by_phonetic: dict[str, list[int]] = field(default_factory=dict)


_VOCAB: dict[tuple[str, float], _Vocabulary] = {}


def _vocabulary(db: sqlite3.Connection, path: Path) -> _Vocabulary:
    """Return the index's terms, cached per file and modification time (a long-lived process searches often)."""
    cache_key = (str(path), path.stat().st_mtime)
    vocab = _VOCAB.get(cache_key)
    if vocab is None:
        rows = db.execute("SELECT id, key FROM terms").fetchall()
        vocab = _Vocabulary([r[1] for r in rows], [r[0] for r in rows])
        _VOCAB.clear()
        _VOCAB[cache_key] = vocab
    return vocab


def max_distance(key: str) -> int:
    """Return the edit distance a query word of this length may be off by (1 up to 4 letters, 2 up to 6, else 3).

    Chosen on the validation pages (bench/names_bench.py): a handwritten
    surname of seven letters or more is often read with three letters wrong.
    """
    return 1 if len(key) <= 4 else 2 if len(key) <= 6 else 3


def _term_scores(db: sqlite3.Connection, vocab: _Vocabulary, key: str) -> dict[int, tuple[float, str]]:
    """Return ``{term id: (similarity 0–1, term key)}`` of the terms close to ``key`` by spelling or sound."""
    out: dict[int, tuple[float, str]] = {}
    for term_key, dist, i in process.extract(
        key, vocab.keys, scorer=Levenshtein.distance, score_cutoff=max_distance(key), limit=400
    ):
        sim = 1.0 if dist == 0 else max(0.0, 0.95 - dist / max(len(key), len(term_key)))
        out[vocab.ids[i]] = (sim, term_key)
    code = phonetic_key(key)
    if code:
        for tid, term_key in db.execute("SELECT id, key FROM terms WHERE phonetic = ?", (code,)):
            sim = 0.95 - Levenshtein.distance(key, term_key) / max(len(key), len(term_key))
            sound = 0.85 if term_key[:1] == key[:1] else 0.75
            out[tid] = (max(out.get(tid, (0.0, ""))[0], sound, min(sim, 1.0)), term_key)
    return out


_PERSON_SQL = (
    "SELECT s.term, s.kind, p.page_id, l.line_id, l.text, p.x0, p.y0, p.x1, p.y1, p.surname,"
    " p.first_names, p.title, p.domicile, p.entry, p.act_number, p.date, p.nature, p.confidence,"
    " g.source_key, l.x0, l.y0, l.x1, l.y1 FROM spellings s JOIN persons p ON p.id = s.person"
    " LEFT JOIN lines l ON l.id = p.line LEFT JOIN pages g ON g.page_id = p.page_id"
    " WHERE s.term = ? LIMIT ?"
)
_WORD_SQL = (
    "SELECT w.term, l.page_id, l.line_id, l.text, l.x0, l.y0, l.x1, l.y1, l.confidence, g.source_key"
    " FROM words w JOIN lines l ON l.id = w.line LEFT JOIN pages g ON g.page_id = l.page_id"
    " WHERE w.term = ? LIMIT ?"
)


def _rows_by_term(db: sqlite3.Connection, sql: str, terms: list[tuple[int, tuple[float, str]]], want: int) -> list:
    """Return rows of the closest terms first, until ``want`` rows (a common name cannot crowd out a closer one)."""
    rows: list = []
    for term, _ in terms:
        if len(rows) >= want:
            break
        rows += db.execute(sql, (term, want - len(rows))).fetchall()
    return rows


def search(path: str | Path, query: str, limit: int = 20) -> list[Match]:
    """Return the best matches of ``query`` in the index at ``path``, best first.

    Persons are matched by surname (and by the parts and n-best spellings of
    it): exact, within a few edits (rapidfuzz Levenshtein over the index's
    vocabulary), or by French phonetic key. Other query words count as first
    names. Any word of the text is matched the same way, scored a little
    below a person with the same spelling, so persons come first.
    """
    path = Path(path)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        vocab = _vocabulary(db, path)
        words = [w for w in (name_key(w) for w in query.split()) if w]
        if not words:
            return []
        # The surname is the query word with the best matches; longer words first when tied (``Jean Dupont``).
        candidates = sorted(words, key=len, reverse=True)
        results: dict[tuple[str, str, str], Match] = {}
        fetch = max(limit * 10, 100)
        for qi, qkey in enumerate(candidates[:3]):
            others = [w for w in words if w != qkey]
            scores = _term_scores(db, vocab, qkey)
            if not scores:
                continue
            best = sorted(scores.items(), key=lambda kv: -kv[1][0])[:200]
            for row in _rows_by_term(db, _PERSON_SQL, best, fetch):
                sim, matched = scores[row[0]]
                factor = (1.0, 0.95, 0.9)[row[1]] * (0.9 + 0.1 * float(row[17] or 0.0))
                if others:
                    firsts = [name_key(f) for f in (row[10] or "").split()]
                    hit = sum(max((fuzz.ratio(o, f) for f in firsts), default=0.0) >= 80 for o in others)
                    factor *= 0.85 + 0.15 * hit / len(others)
                m = Match(row[2], row[3] or "", row[4] or "", round(sim * factor, 4), "person",
                          tuple(row[5:9]), row[18] or "", row[9], row[10] or "", row[11] or "", row[12] or "",
                          row[13], row[14], row[15], row[16], matched,
                          tuple(v or 0 for v in row[19:23]))  # fmt: skip
                k = (m.page_id, m.line_id, "p" + m.surname)
                if k not in results or results[k].score < m.score:
                    results[k] = m
            for row in _rows_by_term(db, _WORD_SQL, best, fetch):
                sim, matched = scores[row[0]]
                score = sim * 0.9 * (0.9 + 0.1 * float(row[8] or 0.0))
                if others:
                    text_keys = line_terms(row[3])
                    hit = sum(any(fuzz.ratio(o, t) >= 80 for t in text_keys) for o in others)
                    score *= 0.85 + 0.15 * hit / len(others)
                m = Match(row[1], row[2], row[3], round(score, 4), "word", tuple(row[4:8]), row[9] or "",
                          matched=matched, line_box=tuple(row[4:8]))  # fmt: skip
                k = (m.page_id, m.line_id, "w")
                if k not in results or results[k].score < m.score:
                    results[k] = m
            if qi == 0 and len(words) == 1:
                break
        persons_at = {(m.page_id, m.line_id) for m in results.values() if m.kind == "person"}
        out = [m for m in results.values() if m.kind == "person" or (m.page_id, m.line_id) not in persons_at]
        out.sort(key=lambda m: (-m.score, m.kind != "person", m.page_id, m.line_id))
        return out[:limit]
    finally:
        db.close()


def index_stats(path: str | Path) -> dict[str, int]:
    """Return the number of pages, lines, persons and terms of an index."""
    db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        return {
            t: int(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
            for t in ("pages", "lines", "persons", "terms")
        }
    finally:
        db.close()


def timed_search(path: str | Path, queries: Iterable[str], limit: int = 10) -> list[float]:
    """Return the seconds each query took (for the benchmark)."""
    out = []
    for q in queries:
        t0 = time.perf_counter()
        search(path, q, limit)
        out.append(time.perf_counter() - t0)
    return out
