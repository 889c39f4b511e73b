"""Register entries in the page records, and the names index of a digitize output (``DST/names.sqlite``).

The logic lives in ``registers/``; this module only wires it to records and
storage. :func:`add_entries` fills a record's ``entries`` from its lines.
:func:`update_names_index` brings the index in line with the manifest at the
end of a run: a page whose last attempt is ``done`` and whose record the index
has not read yet (a new page, or one redone) gets its rows replaced from its
JSON record; a page no longer ``done`` loses its rows. The index is built in a
local temporary file and written back with one atomic put, so a reader never
sees half an index, on a folder or on S3.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.manifest import DONE, ManifestEntry
from flows.records import PageRecord, record_from_json
from flows.storage import LocalStorage, MissingKey, Storage
from registers.index import INDEX_KEY, IndexLine, Match, NamesIndex, search
from registers.layout import RegisterLine
from registers.page import read_entries

log = logging.getLogger(__name__)

#: Persons listed in the run summary's sample table.
SAMPLE_ROWS = 20


def register_lines(record: PageRecord) -> list[RegisterLine]:
    """Return the record's lines as the entry builder reads them (box, text, column, words, n-best)."""
    return [
        RegisterLine(
            ln.id,
            ln.bbox,
            ln.text,
            ln.column,
            ln.confidence,
            [(w.text, tuple(w.box), w.confidence) for w in ln.words],
            [a.text for a in ln.nbest if a.text != ln.text],
        )
        for ln in sorted(record.lines, key=lambda ln: ln.order)
        if len(ln.polygon) >= 2
    ]


def add_entries(record: PageRecord) -> PageRecord:
    """Fill ``record.entries`` (none for a page without a table); on failure leave them empty and log, never raise."""
    try:
        record.entries = read_entries(register_lines(record), record.height)
    except Exception:  # noqa: BLE001 - entries are extra data: a page is done without them
        log.warning("page %s: entries could not be read", record.page_id, exc_info=True)
        record.entries = []
    return record


@dataclass
class NamesSummary:
    """What the index update did: pages (re)indexed and removed, entries and persons of those pages, a sample."""

    indexed: int = 0
    removed: int = 0
    entries: int = 0
    persons: int = 0
    pages_total: int = 0
    sample: list[dict[str, Any]] = field(default_factory=list)


def update_names_index(dst: Storage, latest: dict[str, ManifestEntry], source: str = "") -> NamesSummary:
    """Reconcile ``DST/names.sqlite`` with the manifest's last attempts (by source key); return what changed."""
    summary = NamesSummary()
    done = {e.page_id: e for e in latest.values() if e.status == DONE}
    with tempfile.TemporaryDirectory(prefix="registre-index-") as tmp:
        path = Path(tmp) / INDEX_KEY
        existed = dst.exists(INDEX_KEY)
        if existed:
            path.write_bytes(dst.get(INDEX_KEY))
        with NamesIndex(path) as index:
            if source:
                index.set_meta("source", source)
            attempts = index.page_attempts()
            for page_id in sorted(set(attempts) - set(done)):
                index.remove_page(page_id)
                summary.removed += 1
            for page_id, entry in sorted(done.items()):
                if attempts.get(page_id) == entry.attempt:
                    continue
                try:
                    record = record_from_json(dst.get(page_id + ".json"))
                except MissingKey:
                    log.warning("page %s is done in the manifest but has no record; not indexed", page_id)
                    continue
                lines = [IndexLine(ln.id, ln.text, ln.bbox, ln.confidence) for ln in record.lines if ln.polygon]
                persons = index.replace_page(
                    page_id, lines, record.entries, record.source_key, entry.attempt, record.model_version
                )
                summary.indexed += 1
                summary.entries += len(record.entries)
                summary.persons += persons
                for e in record.entries:
                    for p in e.persons:
                        if len(summary.sample) < SAMPLE_ROWS:
                            summary.sample.append(
                                {
                                    "page": page_id,
                                    "act": e.act_number or "",
                                    "date": (e.date.iso or e.date.raw) if e.date else "",
                                    "nature": e.nature or "",
                                    "surname": p.surname,
                                    "first names": p.first_names,
                                    "title": p.title,
                                    "domicile": p.domicile,
                                    "confidence": p.confidence,
                                }
                            )
            summary.pages_total = len(index.page_attempts())
        if summary.indexed or summary.removed or not existed:
            dst.put(INDEX_KEY, path.read_bytes(), "application/vnd.sqlite3")
    return summary


def search_output(dst: Storage, query: str, limit: int = 20) -> list[Match]:
    """Return the matches of ``query`` in a digitize output's names index (read in place, or fetched from S3)."""
    if isinstance(dst, LocalStorage):
        path = dst.root / INDEX_KEY
        if not path.exists():
            raise MissingKey(f"{path}: no names index (run `registre digitize` into this folder first)")
        return search(path, query, limit)
    with tempfile.TemporaryDirectory(prefix="registre-search-") as tmp:
        path = Path(tmp) / INDEX_KEY
        path.write_bytes(dst.get(INDEX_KEY))
        return search(path, query, limit)


def index_source(dst: Storage) -> str:
    """Return the SRC the indexed pages were read from ('' when the index does not say)."""
    import sqlite3

    with tempfile.TemporaryDirectory(prefix="registre-search-") as tmp:
        if isinstance(dst, LocalStorage):
            path = dst.root / INDEX_KEY
        else:
            path = Path(tmp) / INDEX_KEY
            path.write_bytes(dst.get(INDEX_KEY))
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'source'").fetchone()
        finally:
            db.close()
    return row[0] if row else ""


def write_match_crops(src: Storage, matches: list[Match], out_dir: Path, pad: int = 8) -> list[Path]:
    """Write a PNG crop of each match's line (from the source scan) into ``out_dir``; return the files written."""
    import cv2
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    pages: dict[str, np.ndarray | None] = {}
    for n, m in enumerate(matches, start=1):
        if not m.source_key:
            continue
        if m.source_key not in pages:
            try:
                data = np.frombuffer(src.get(m.source_key), np.uint8)
                pages[m.source_key] = cv2.imdecode(data, cv2.IMREAD_COLOR)
            except Exception:  # noqa: BLE001 - a missing scan leaves its matches without crops
                log.warning("cannot read %s for a crop", src.describe(m.source_key), exc_info=True)
                pages[m.source_key] = None
        image = pages[m.source_key]
        if image is None:
            continue
        x0, y0, x1, y1 = m.line_box if any(m.line_box) else m.box
        h, w = image.shape[:2]
        crop = image[max(y0 - pad, 0) : min(y1 + pad, h), max(x0 - pad, 0) : min(x1 + pad, w)]
        if crop.size == 0:
            continue
        safe_line = "".join(c if c.isalnum() or c in "._-" else "_" for c in m.line_id)
        path = out_dir / f"{n:03d}_{m.page_id}_{safe_line}.png"
        ok, png = cv2.imencode(".png", crop)
        if ok:
            path.write_bytes(png.tobytes())
            written.append(path)
    return written
