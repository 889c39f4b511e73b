"""Killed runs: ``registre digitize`` SIGKILLed at seeded points of a 100-page run, then rerun to the end.

Afterwards every page has exactly one complete record and one ``done``
manifest entry, no manifest part is left unmerged, and no page that was done
when a run was killed was done again (its done entry and its record file are
the ones that existed at the kill).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from badinputs import good_pages
from runkit import audit, run_with_kills

from flows.manifest import DONE
from flows.storage import LocalStorage

pytestmark = pytest.mark.usefixtures("prefect_harness")

PAGES = 100
KILLS = 3
SEED = 11


def test_killed_runs_lose_and_duplicate_nothing(tmp_path: Path, tiny_model: Path, registre_env: dict[str, str]) -> None:
    pages = good_pages(PAGES, width=300, height=160)
    src, out = tmp_path / "src", tmp_path / "out"
    for key, data in pages.items():
        (src / key).parent.mkdir(parents=True, exist_ok=True)
        (src / key).write_bytes(data)
    args = ["digitize", str(src), "--out", str(out), "--model", str(tiny_model), "--no-lm", "--chunk-size", "5"]
    log = run_with_kills(args, registre_env, out, kills=KILLS, seed=SEED, pages=PAGES, timeout=240)
    print(f"\n{log.kills} kills at {log.records_at_kill} records, {log.runs} runs, {log.seconds:.0f} s")
    assert log.kills == KILLS, "a run finished before its kill point: the kills prove nothing"
    assert log.final is not None and log.final.returncode == 0, log.final and log.final.stderr[-3000:]

    result = audit(LocalStorage(out), pages)
    assert result.done == PAGES
    assert (result.lost, result.duplicated, result.partial, result.stray) == ([], [], [], [])
    assert result.unmerged_parts == 0
    assert all(n == 1 for n in result.done_entries.values()) and len(result.done_entries) == PAGES

    # No done page was recomputed: its one done entry is the one seen at the kill, its record untouched.
    final_done = {e.source_key: e.attempt for e in result.entries if e.status == DONE}
    for seen in log.done_after_kill:
        assert {k: final_done[k] for k in seen} == seen
    for key, mtime in log.done_mtimes.items():
        assert (out / key).stat().st_mtime_ns == mtime, f"{key} was rewritten after it was done"
    if result.temp_files:
        print(f"temporary files left by the kills: {result.temp_files}")
