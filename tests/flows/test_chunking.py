"""Chunks balance work (bytes of the source objects), not page counts."""

from __future__ import annotations

import random

from flows.digitize import PAGE_FLOOR_BYTES, plan_chunks


def weights(chunks: list[list[str]], sizes: dict[str, int]) -> list[int]:
    return [sum(sizes[k] + PAGE_FLOOR_BYTES for k in c) for c in chunks]


def test_a_mixed_run_of_scans_and_broken_files_is_split_by_bytes() -> None:
    # The run: three real scans (sizes of examples/pages) and two broken files.
    sizes = {"a.jpg": 770_646, "b.jpg": 528_833, "c.jpg": 2_231_624, "notes.png": 0, "z-broken.jpg": 5_000}
    keys = sorted(sizes)
    chunks = plan_chunks(keys, sizes, 2)
    assert [k for c in chunks for k in c] == keys  # every page once, in listing order
    # By count (3 + 2) one chunk held the scans, the other only the broken files.
    assert chunks == [["a.jpg", "b.jpg"], ["c.jpg", "notes.png", "z-broken.jpg"]]
    w = weights(chunks, sizes)
    assert max(w) / min(w) < 2


def test_many_pages_of_mixed_sizes_give_chunks_within_2x() -> None:
    rng = random.Random(3)
    sizes = {f"reg/{i:05d}.jpg": int(rng.lognormvariate(13, 0.8)) for i in range(2000)}
    sizes.update({f"reg/{i:05d}.jpg": 0 for i in range(0, 2000, 37)})  # some empty files
    keys = sorted(sizes)
    chunks = plan_chunks(keys, sizes, 100)
    assert len(chunks) == 100 and [k for c in chunks for k in c] == keys
    w = weights(chunks, sizes)
    assert max(w) / min(w) < 2  # a chunk differs from the mean by less than its largest page
    # A count-based split of the same pages is not balanced in bytes like this.
    by_count = [keys[i : i + 20] for i in range(0, 2000, 20)]
    assert max(weights(by_count, sizes)) / min(weights(by_count, sizes)) > max(w) / min(w)


def test_edge_cases() -> None:
    assert plan_chunks([], {}, 3) == []
    assert plan_chunks(["a"], {"a": 10}, 4) == [["a"]]
    # One page bigger than all the rest: no empty chunk is returned.
    sizes = {"a": 10, "b": 10_000_000, "c": 10}
    assert [k for c in plan_chunks(list(sizes), sizes, 3) for k in c] == ["a", "b", "c"]
    assert all(plan_chunks(list(sizes), sizes, 3))
