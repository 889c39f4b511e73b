"""Running ``registre digitize`` as a user does (a subprocess), killing it, and auditing what it left.

Shared by the reliability tests and ``bench/reliability_bench.py``:
:func:`run_registre` runs the CLI with a hard time limit (a hang is a
failure), :func:`run_with_kills` SIGKILLs it at seeded points of a run and
reruns it until it completes, :func:`audit` reads a destination back and
counts lost, duplicated, partial and recomputed pages, and
:func:`put_pages` stages pages in a store started by ``loopback.object_store``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from loopback import s3_client

from flows.manifest import DONE, PARTS_DIR, ManifestEntry, latest_by_source, read_manifest
from flows.records import PageRecord, assign_page_ids, record_from_json
from flows.storage import TEMP_PREFIX, LocalStorage, Storage

REPO = Path(__file__).resolve().parents[2]
REGISTRE = [sys.executable, "-m", "flows.cli"]


class Hung(AssertionError):
    """The command did not finish in its time limit (it was killed)."""


def cli_env(prefect_api_url: str | None = None, **extra: str) -> dict[str, str]:
    """Return the environment of a ``registre`` subprocess: this one's, plus a Prefect server and ``extra``."""
    env = dict(os.environ)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    if prefect_api_url:
        env["PREFECT_API_URL"] = prefect_api_url
    env.update(extra)
    return env


def run_registre(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``registre ARGS``; raise :class:`Hung` (after killing its process group) past ``timeout`` s."""
    proc = subprocess.Popen(
        [*REGISTRE, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise Hung(f"registre {' '.join(args)} did not finish in {timeout:.0f} s\n{err[-3000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process and every child it started (its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def count_records(out: Path) -> int:
    """Return the number of JSON records in a local destination folder."""
    return sum(1 for p in out.glob("*.json"))


@dataclass
class KillLog:
    """What a killed-and-rerun sequence did: kills made, runs, and the done pages seen after each kill."""

    kills: int = 0
    runs: int = 0
    records_at_kill: list[int] = field(default_factory=list)
    done_after_kill: list[dict[str, str]] = field(default_factory=list)  # source key -> done attempt id
    done_mtimes: dict[str, int] = field(default_factory=dict)  # output key -> mtime_ns when first seen done
    final: subprocess.CompletedProcess | None = None
    seconds: float = 0.0


def run_with_kills(
    args: list[str],
    env: dict[str, str],
    out: Path,
    kills: int,
    seed: int,
    pages: int,
    timeout: float = 300,
) -> KillLog:
    """Run ``registre ARGS`` (writing to the local folder ``out``), SIGKILL it ``kills`` times, rerun to the end.

    Each kill lands at a seeded point of a run: once a seeded number of new
    records has appeared (so the run is past its start-up and mid-chunk), plus
    a seeded delay of up to 0.3 s (so it falls inside writes as often as
    between them). After each kill, the pages the manifest then says are done
    are noted with their attempt ids: a later run must not redo them.
    """
    rng = random.Random(seed)
    log = KillLog()
    started = time.monotonic()
    while True:
        log.runs += 1
        last = log.kills >= kills
        if last:
            log.final = run_registre(args, env, timeout)
            break
        before = count_records(out) if out.exists() else 0
        remaining = max(pages - before, 1)
        # A share of what is left that leaves work for every kill still to come (on
        # average 1 / (kills left + 1) of it), so no run finishes before its kill point.
        target = before + rng.randint(1, max(1, 2 * remaining // (kills - log.kills + 1)))
        delay = rng.uniform(0.0, 0.3)
        proc = subprocess.Popen(
            [*REGISTRE, *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            if out.exists() and count_records(out) >= target:
                time.sleep(delay)
                break
            time.sleep(0.02)
        if proc.poll() is None:
            if time.monotonic() >= deadline:
                _kill_group(proc)
                raise Hung(f"registre {' '.join(args)} made no progress to {target} records in {timeout:.0f} s")
            _kill_group(proc)
            log.kills += 1
            log.records_at_kill.append(count_records(out))
            entries = read_manifest(LocalStorage(out))
            done = {k: e for k, e in latest_by_source(entries).items() if e.status == DONE}
            log.done_after_kill.append({k: e.attempt for k, e in done.items()})
            for e in done.values():
                for key in e.outputs:
                    log.done_mtimes.setdefault(key, (out / key).stat().st_mtime_ns)
        else:
            # It finished before the kill point: nothing was left to kill; the next run is the check.
            log.final = subprocess.CompletedProcess(args, proc.returncode, "", "")
            break
    log.seconds = time.monotonic() - started
    return log


@dataclass
class Audit:
    """A destination read back against the pages it should hold: what is lost, duplicated, partial or redone."""

    pages: int = 0
    done: int = 0  # pages whose last manifest state is done, with a complete record
    failed: dict[str, str] = field(default_factory=dict)  # source key -> reason, last state failed
    lost: list[str] = field(default_factory=list)  # good pages without a done state and complete record
    duplicated: list[str] = field(default_factory=list)  # pages with more than one done manifest entry
    partial: list[str] = field(default_factory=list)  # records that do not parse or do not match the source
    stray: list[str] = field(default_factory=list)  # records of no listed page
    temp_files: list[str] = field(default_factory=list)  # half-written temporary files left behind
    unmerged_parts: int = 0
    done_entries: Counter = field(default_factory=Counter)
    records: dict[str, PageRecord] = field(default_factory=dict)  # source key -> record
    entries: list[ManifestEntry] = field(default_factory=list)


def audit(dst: Storage, sources: dict[str, bytes], good: set[str] | None = None) -> Audit:
    """Return the audit of ``dst`` for the pages ``sources`` ({source key: bytes}); ``good`` must all be done.

    A record is complete when it parses, names its source key, and its sha256
    and byte size are those of the source; every output a done entry lists
    must exist.
    """
    good = set(sources) if good is None else good
    ids = assign_page_ids(sorted(sources))
    result = Audit(pages=len(sources))
    result.entries = entries = read_manifest(dst)
    latest = latest_by_source(entries)
    result.done_entries = Counter(e.source_key for e in entries if e.status == DONE)
    result.duplicated = sorted(k for k, n in result.done_entries.items() if n > 1)
    all_keys = list(dst.list_keys(extensions=None))
    result.unmerged_parts = sum(1 for k in all_keys if k.startswith(PARTS_DIR + "/"))
    expected_records = {ids[k] + ".json": k for k in sources}
    for key in all_keys:
        name = key.rsplit("/", 1)[-1]
        if name.startswith(TEMP_PREFIX):
            result.temp_files.append(key)
        elif key.endswith(".json") and key not in expected_records:
            result.stray.append(key)
    if isinstance(dst, LocalStorage):  # its listing hides them
        result.temp_files += [str(p.relative_to(dst.root)) for p in Path(dst.root).rglob(TEMP_PREFIX + "*")]
    for name, source_key in expected_records.items():
        last = latest.get(source_key)
        record = None
        try:
            raw = dst.get(name)
        except Exception:  # noqa: BLE001 - missing: judged below with the manifest state
            raw = None
        if raw is not None:
            try:
                record = record_from_json(raw)
            except Exception:  # noqa: BLE001 - any parse error makes it partial
                result.partial.append(name)
            else:
                data = sources[source_key]
                if (
                    record.source_key != source_key
                    or record.sha256 != hashlib.sha256(data).hexdigest()
                    or record.size_bytes != len(data)
                    or record.width <= 0
                    or record.height <= 0
                ):
                    result.partial.append(name)
                    record = None
                else:
                    result.records[source_key] = record
        if last is not None and last.status == DONE:
            outputs_ok = all(_exists(dst, o) for o in last.outputs)
            if record is not None and outputs_ok and last.lines == len(record.lines):
                result.done += 1
                continue
            if source_key in good:
                result.lost.append(source_key)
        elif last is not None:
            result.failed[source_key] = last.reason or ""
            if source_key in good:
                result.lost.append(source_key)
        elif source_key in good:
            result.lost.append(source_key)
    return result


def _exists(dst: Storage, key: str) -> bool:
    try:
        return dst.exists(key)
    except Exception:  # noqa: BLE001 - an unreachable store: treated as missing
        return False


def put_pages(endpoint: str, bucket: str, prefix: str, pages: dict[str, bytes]) -> None:
    """Upload ``pages`` ({key: bytes}) under ``s3://bucket/prefix/`` directly (not through any proxy)."""
    client = s3_client(endpoint)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
        client.create_bucket(Bucket=bucket)
    for key, data in pages.items():
        client.put_object(Bucket=bucket, Key=f"{prefix.strip('/')}/{key}", Body=data)
