from __future__ import annotations

from pathlib import Path

from flows.manifest import (
    DONE,
    FAILED,
    MANIFEST_KEY,
    ManifestEntry,
    consolidate,
    entries_bytes,
    latest_by_source,
    part_keys,
    plan_pages,
    read_manifest,
    write_part,
)
from flows.storage import LocalStorage, open_storage


def entry(key: str, status: str, model: str = "m1", t: str = "2024-01-01T00:00:00") -> ManifestEntry:
    return ManifestEntry(key.split(".")[0], key, status, None if status == DONE else "image: X: y", model, finished=t)


def test_plan_skips_done_pages_of_the_same_model_only() -> None:
    keys = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
    latest = latest_by_source(
        [
            entry("a.jpg", DONE),
            entry("b.jpg", FAILED),
            entry("c.jpg", DONE, model="m0"),
            entry("d.jpg", FAILED, t="2024-01-01T00:00:00"),
            entry("d.jpg", DONE, t="2024-01-02T00:00:00"),  # later attempt wins
        ]
    )
    assert plan_pages(keys, latest, "m1") == ["b.jpg", "c.jpg", "e.jpg"]
    assert plan_pages(keys, latest, "m1", only_failed=True) == ["b.jpg"]
    assert plan_pages(keys, latest, "m1", force=True) == keys


def test_parts_are_merged_once_and_removed(tmp_path: Path) -> None:
    st = LocalStorage(tmp_path)
    write_part(st, "run1", 0, [entry("a.jpg", DONE), entry("b.jpg", FAILED)])
    write_part(st, "run1", 1, [entry("c.jpg", DONE)])
    assert len(read_manifest(st)) == 3  # unmerged parts count already
    assert consolidate(st) == 3
    assert part_keys(st) == [] and not (tmp_path / "manifest.parts").exists()
    lines = (tmp_path / MANIFEST_KEY).read_text().splitlines()
    assert len(lines) == 3
    # A crash between the merge and the deletion leaves a part whose attempts are already merged.
    again = entry("d.jpg", DONE)
    write_part(st, "run2", 0, [again])
    consolidate(st)
    st.put("manifest.parts/run2-000000-dup.jsonl", entries_bytes([again]))
    assert consolidate(st) == 0
    assert len((tmp_path / MANIFEST_KEY).read_text().splitlines()) == 4


def test_unreadable_lines_are_skipped(tmp_path: Path) -> None:
    st = LocalStorage(tmp_path)
    st.put(MANIFEST_KEY, entries_bytes([entry("a.jpg", DONE)]) + b'{"broken\n' + entries_bytes([entry("b.jpg", DONE)]))
    assert [e.source_key for e in read_manifest(st)] == ["a.jpg", "b.jpg"]


def test_manifest_parts_on_s3(s3_prefix: str) -> None:
    st = open_storage(s3_prefix, addressing_style="path")
    write_part(st, "run1", 0, [entry("a.jpg", DONE)])
    write_part(st, "run1", 1, [entry("b.jpg", FAILED)])
    assert consolidate(st) == 2
    assert part_keys(st) == []
    assert [e.source_key for e in read_manifest(st)] == ["a.jpg", "b.jpg"]
    write_part(st, "run2", 0, [entry("b.jpg", DONE, t="2024-02-01T00:00:00")])
    latest = latest_by_source(read_manifest(st))
    assert latest["b.jpg"].status == DONE


def test_a_retried_chunk_leaves_one_state_per_page(tmp_path: Path) -> None:
    """A chunk attempt's part that the store applied but never acknowledged is replaced by the retry's."""
    st = LocalStorage(tmp_path)

    def attempt(t: str, status: str = DONE, run: str = "run1") -> list[ManifestEntry]:
        return [ManifestEntry(k[0], k, status, None, "m1", run_id=run, finished=t) for k in ("a.jpg", "b.jpg")]

    first = write_part(st, "run1", 0, attempt("2024-01-01T00:00:00"))
    assert write_part(st, "run1", 0, attempt("2024-01-01T00:01:00")) == first  # the same key: replaced
    assert [e.finished for e in read_manifest(st)] == ["2024-01-01T00:01:00"] * 2
    # The earlier attempt's part was merged before the retry wrote its own: still one state per page.
    consolidate(st)
    write_part(st, "run1", 0, attempt("2024-01-01T00:02:00", FAILED))
    assert [(e.source_key, e.status) for e in read_manifest(st)] == [("a.jpg", FAILED), ("b.jpg", FAILED)]
    assert consolidate(st) == 2
    assert [(e.source_key, e.status) for e in read_manifest(st)] == [("a.jpg", FAILED), ("b.jpg", FAILED)]
    assert len((tmp_path / MANIFEST_KEY).read_text().splitlines()) == 2
    # Another run's attempts are other lines.
    write_part(st, "run2", 0, attempt("2024-01-02T00:00:00", run="run2"))
    consolidate(st)
    assert [e.run_id for e in read_manifest(st)] == ["run1", "run1", "run2", "run2"]
