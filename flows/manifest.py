"""``DST/manifest.jsonl``: one JSON line per page attempt, and what a rerun still has to do.

S3 has no append, and rewriting one object per page would cost O(pages²)
transfers and lose updates between concurrent tasks. So each chunk writes
its entries as one small object, ``DST/manifest.parts/<run>-<chunk>.jsonl``
(one atomic PUT, after the chunk's records: record first, manifest entry last),
and the flow, the single writer of ``DST/manifest.jsonl``, merges the parts
into it (an atomic rewrite) every few minutes and at the end of a run, then
deletes the merged parts. Readers take ``manifest.jsonl`` plus any parts left
over, so a run killed before a merge loses nothing: its parts are merged by
the next run. Entries carry an attempt id, which makes merging idempotent.
One run at a time per DST: two runs merging concurrently could drop each
other's parts, so a run holds the destination's lease (:mod:`flows.lease`).

A retried chunk writes its part under the same key, replacing the part of the
attempt before: a PUT the store applied but never acknowledged (so the chunk
was retried) leaves no second set of entries. Should that part have been
merged before the retry wrote its own, readers and merges keep only the last
entry of each page within a run (:func:`final_attempts`), so a page has one
final state per run either way.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from flows.storage import Storage

log = logging.getLogger(__name__)

MANIFEST_KEY = "manifest.jsonl"
PARTS_DIR = "manifest.parts"

DONE = "done"
FAILED = "failed"


@dataclass
class ManifestEntry:
    """One attempt at one page: outcome, reason, versions and per-stage timings in seconds."""

    page_id: str
    source_key: str
    status: str  # "done" or "failed"
    reason: str | None = None
    model_version: str | None = None
    lm_version: str | None = None
    decoder: str | None = None
    lines: int = 0
    mean_confidence: float | None = None
    timings: dict[str, float] = field(default_factory=dict)  # load, segment, recognize, decode, write, total
    outputs: list[str] = field(default_factory=list)
    run_id: str = ""
    attempt: str = field(default_factory=lambda: uuid.uuid4().hex)
    finished: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="microseconds"))

    @property
    def seconds(self) -> float:
        """Return the page's total processing time in seconds."""
        return float(self.timings.get("total", sum(self.timings.values())))

    def to_json(self) -> str:
        """Return the entry as one JSON line (no newline)."""
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> ManifestEntry:
        """Return the entry of one manifest line; unknown keys are ignored."""
        data = json.loads(line)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def parse_entries(data: bytes, where: str = "") -> list[ManifestEntry]:
    """Return the entries of JSON-lines bytes, skipping (and logging) lines that do not parse."""
    out = []
    for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(ManifestEntry.from_json(line))
        except (ValueError, TypeError) as exc:
            log.warning("%s line %d: unreadable manifest entry skipped (%s)", where or MANIFEST_KEY, n, exc)
    return out


def entries_bytes(entries: Iterable[ManifestEntry]) -> bytes:
    """Return entries as JSON-lines bytes."""
    return "".join(e.to_json() + "\n" for e in entries).encode("utf-8")


def final_attempts(entries: Iterable[ManifestEntry]) -> list[ManifestEntry]:
    """Return the entries, in order, less those a later attempt of the same page in the same run replaced.

    Within a run a page is attempted again only when its chunk was retried;
    the last attempt (by finish time, later lines winning ties) is its state.
    Entries without a run id are all kept.
    """
    entries = list(entries)
    last: dict[tuple[str, str], int] = {}
    for i, e in enumerate(entries):
        if not e.run_id:
            continue
        key = (e.run_id, e.source_key)
        j = last.get(key)
        if j is None or e.finished >= entries[j].finished:
            last[key] = i
    return [e for i, e in enumerate(entries) if not e.run_id or last[(e.run_id, e.source_key)] == i]


def part_keys(storage: Storage) -> list[str]:
    """Return the keys of manifest parts not merged yet, oldest run first."""
    return sorted(storage.list_keys(extensions=(".jsonl",), under=PARTS_DIR))


def read_manifest(storage: Storage) -> list[ManifestEntry]:
    """Return every attempt recorded under the destination: the merged manifest, then unmerged parts."""
    from flows.storage import MissingKey

    entries: list[ManifestEntry] = []
    try:
        entries += parse_entries(storage.get(MANIFEST_KEY), storage.describe(MANIFEST_KEY))
    except MissingKey:
        pass
    seen = {e.attempt for e in entries}
    for key in part_keys(storage):
        try:
            part = parse_entries(storage.get(key), storage.describe(key))
        except MissingKey:  # merged and deleted by another reader meanwhile
            continue
        entries += [e for e in part if e.attempt not in seen]
        seen.update(e.attempt for e in part)
    return final_attempts(entries)


def latest_by_source(entries: Iterable[ManifestEntry]) -> dict[str, ManifestEntry]:
    """Return the last attempt per source key (by finish time; later lines win ties)."""
    latest: dict[str, ManifestEntry] = {}
    for e in entries:
        cur = latest.get(e.source_key)
        if cur is None or e.finished >= cur.finished:
            latest[e.source_key] = e
    return latest


def plan_pages(
    keys: Iterable[str],
    latest: dict[str, ManifestEntry],
    model_version: str,
    only_failed: bool = False,
    force: bool = False,
) -> list[str]:
    """Return the keys to process, in input order.

    Default: every page not already ``done`` with ``model_version`` (new pages,
    failed ones, and pages done by another model). ``only_failed``: only pages
    whose last attempt failed. ``force``: every page.
    """
    todo = []
    for key in keys:
        last = latest.get(key)
        if force:
            todo.append(key)
        elif only_failed:
            if last is not None and last.status == FAILED:
                todo.append(key)
        elif last is None or last.status != DONE or last.model_version != model_version:
            todo.append(key)
    return todo


def part_key(run_id: str, chunk_index: int) -> str:
    """Return the key of a chunk's manifest part: the same for every attempt of the chunk in the run."""
    return f"{PARTS_DIR}/{run_id}-{chunk_index:06d}.jsonl"


def write_part(storage: Storage, run_id: str, chunk_index: int, entries: list[ManifestEntry]) -> str:
    """Write a chunk attempt's entries as the chunk's manifest part (one atomic put); return its key.

    The key is the same for every attempt of the chunk (:func:`part_key`), so a
    retry replaces the part of the attempt before.
    """
    key = part_key(run_id, chunk_index)
    storage.put(key, entries_bytes(entries), "application/x-ndjson")
    return key


def consolidate(storage: Storage) -> int:
    """Merge the unmerged parts into ``manifest.jsonl`` (atomic rewrite), delete them; return entries merged."""
    from flows.storage import MissingKey

    keys = part_keys(storage)
    if not keys:
        return 0
    try:
        current = storage.get(MANIFEST_KEY)
    except MissingKey:
        current = b""
    old = parse_entries(current, storage.describe(MANIFEST_KEY))
    seen = {e.attempt for e in old}
    new: list[ManifestEntry] = []
    merged_keys = []
    for key in keys:
        try:
            part = parse_entries(storage.get(key), storage.describe(key))
        except MissingKey:
            continue
        new += [e for e in part if e.attempt not in seen]
        seen.update(e.attempt for e in part)
        merged_keys.append(key)
    new.sort(key=lambda e: e.finished)
    kept = {e.attempt for e in final_attempts([*old, *new])}
    if any(e.attempt not in kept for e in old):
        # A retried chunk's part replaces entries merged from its earlier attempt.
        current = _without_attempts(current, {e.attempt for e in old} - kept)
    if current and not current.endswith(b"\n"):
        current += b"\n"
    new = [e for e in new if e.attempt in kept]
    storage.put(MANIFEST_KEY, current + entries_bytes(new), "application/x-ndjson")
    # Only after the merged manifest is in place: a crash before this line leaves parts
    # whose attempts are already merged, which the next merge recognises and skips.
    for key in merged_keys:
        storage.delete(key)
    return len(new)


def _without_attempts(data: bytes, attempts: set[str]) -> bytes:
    """Return JSON-lines bytes without the entries of ``attempts``; other lines (unreadable ones too) stay as is."""
    out = []
    for line in data.splitlines(keepends=True):
        try:
            if json.loads(line).get("attempt") in attempts:
                continue
        except (ValueError, AttributeError):
            pass
        out.append(line)
    return b"".join(out)
