"""Stopping ``registre digitize`` with real signals, and one run per destination, on real subprocesses.

SIGTERM (what a scheduler or a Prefect worker sends to cancel) stops a run
within seconds: no new chunk, chunks in flight end at their next page, the
manifest parts are merged, the command prints what was done and exits 143.
The temporary Prefect server the command starts (no ``PREFECT_API_URL``) never
outlives it, also when the command is SIGKILLed. A second run on a busy
destination (SeaweedFS) refuses, naming the first; a hung run's lease goes
stale and is taken over.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from badinputs import good_pages
from runkit import REGISTRE, REPO, cli_env, count_records, run_registre

from flows.lease import LEASE_KEY, LeaseOwner
from flows.manifest import DONE, PARTS_DIR, read_manifest
from flows.storage import LocalStorage, open_storage

PAGES = 60


def descendants(pid: int) -> set[int]:
    """Return the pids of every living process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Return True while ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.fixture(scope="module")
def pages_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for key, data in good_pages(PAGES, width=300, height=160).items():
        (src / key).parent.mkdir(parents=True, exist_ok=True)
        (src / key).write_bytes(data)
    return src


@pytest.fixture(scope="module")
def standalone_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A ``registre`` environment without PREFECT_API_URL (so it starts its own server), in its own PREFECT_HOME."""
    env = cli_env(PREFECT_HOME=str(tmp_path_factory.mktemp("prefect-home")))
    for name in list(env):
        if name.startswith(("PREFECT_API_URL", "PREFECT_UI_URL", "AWS_", "REGISTRE_")):
            del env[name]
    return env


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts; they and everything below them are SIGKILLed at teardown whatever happened."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        for pid in [proc.pid, *descendants(proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


def start(args: list[str], env: dict[str, str], procs: list[subprocess.Popen]) -> subprocess.Popen:
    proc = subprocess.Popen(
        [*REGISTRE, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    procs.append(proc)
    return proc


def wait_for(condition, what: str, proc: subprocess.Popen, timeout: float = 120) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"registre exited ({proc.returncode}) before {what}: {proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} in {timeout:.0f} s")
        time.sleep(0.1)


def digitize_args(src: Path | str, out: Path | str, model: Path) -> list[str]:
    return ["digitize", str(src), "--out", str(out), "--model", str(model), "--no-lm", "--chunk-size", "4"]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_a_run_within_15_s_and_leaves_no_process(
    stop: signal.Signals,
    tmp_path: Path,
    tiny_model: Path,
    pages_src: Path,
    standalone_env: dict[str, str],
    started: list,
) -> None:
    out = tmp_path / "out"
    proc = start(digitize_args(pages_src, out, tiny_model), standalone_env, started)
    wait_for(lambda: out.exists() and count_records(out) >= 3, "records", proc)
    below = descendants(proc.pid)
    assert any("flows.local_server" in cmdline(p) for p in below), "no temporary Prefect server was started"
    t0 = time.monotonic()
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=60)
    stop_s = time.monotonic() - t0
    print(f"\n{stop.name} to exit: {stop_s:.1f} s")
    assert stop_s < 15, err[-3000:]
    assert proc.returncode == 128 + stop, err[-3000:]
    assert f"stopped by {stop.name}" in err and "left to do" in err and "Traceback" not in err
    time.sleep(0.5)
    assert not [p for p in below if alive(p)], [cmdline(p) for p in below if alive(p)]

    # What was written is recorded and merged; the rest is left to do; the lease is given back.
    entries = read_manifest(LocalStorage(out))
    done = {e.source_key for e in entries if e.status == DONE}
    assert len(done) == count_records(out) and 0 < len(done) < PAGES
    assert not (out / PARTS_DIR).exists() and not (out / LEASE_KEY).exists()


def test_the_temporary_prefect_server_dies_with_a_sigkilled_command(
    tmp_path: Path, tiny_model: Path, pages_src: Path, standalone_env: dict[str, str], started: list
) -> None:
    out = tmp_path / "out"
    proc = start(digitize_args(pages_src, out, tiny_model), standalone_env, started)
    wait_for(lambda: out.exists() and count_records(out) >= 1, "records", proc)
    server = [p for p in descendants(proc.pid) if "flows.local_server" in cmdline(p)]
    assert server
    proc.kill()  # the command only: its server is in a session of its own, out of reach of a group kill
    proc.wait()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in server), "the temporary Prefect server outlived the SIGKILLed command"


def test_one_run_per_destination_and_a_hung_runs_lease_goes_stale(
    tmp_path: Path,
    tiny_model: Path,
    registre_env: dict[str, str],
    s3_env,  # noqa: ANN001 - the SeaweedFS fixture
    bucket: str,
    started: list,
) -> None:
    out = f"s3://{bucket}/lease-run/out"
    pages_src = tmp_path / "src"  # few pages: the first run is stopped before its first page
    for key, data in good_pages(8, width=300, height=160).items():
        (pages_src / key).parent.mkdir(parents=True, exist_ok=True)
        (pages_src / key).write_bytes(data)
    env = {
        **registre_env,
        "AWS_ENDPOINT_URL": s3_env.endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "REGISTRE_S3_ADDRESSING_STYLE": "path",
        "REGISTRE_LEASE_HEARTBEAT_S": "0.5",
        # Long enough for the second command to start and find the heartbeat fresh on a busy machine.
        "REGISTRE_LEASE_STALE_S": "30",
    }
    dst = open_storage(out, endpoint_url=s3_env.endpoint, addressing_style="path")
    first = start(digitize_args(pages_src, out, tiny_model), env, started)
    wait_for(lambda: dst.exists(LEASE_KEY), "lease", first)
    # Hung (its process alive, its heartbeat stopped): a machine asleep, a stuck NFS read.
    os.killpg(first.pid, signal.SIGSTOP)
    holder = LeaseOwner.from_bytes(dst.get(LEASE_KEY))
    assert holder.pid == first.pid

    second = run_registre(digitize_args(pages_src, out, tiny_model), env, timeout=180)
    assert second.returncode == 2, second.stderr[-3000:]
    assert f"is in use by run {holder.run_id}" in second.stderr and f"pid {first.pid}" in second.stderr
    assert "Traceback" not in second.stderr, second.stderr[-3000:]

    time.sleep(max(0.0, 30.5 - holder.heartbeat_age_s()))
    third = run_registre(digitize_args(pages_src, out, tiny_model), env, timeout=300)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "took over a stale lease" in third.stderr and holder.run_id in third.stderr
    assert not dst.exists(LEASE_KEY)
    entries = read_manifest(dst)
    assert len({e.source_key for e in entries if e.status == DONE}) == 8


def test_a_signal_during_a_registers_adaptation_stops_the_run(
    tmp_path: Path, standalone_env: dict[str, str], started: list
) -> None:
    """`digitize --adapt`: SIGTERM while the recognizer adapts to a register ends the adaptation at its next step;
    nothing is stored, the command says what is left and exits 143."""
    from tests.conftest import EXAMPLES, SHARED_DATA

    src, out = tmp_path / "src", tmp_path / "out"
    for name, page in (
        ("reg/a.jpg", EXAMPLES / "FRAN_0025_0989_L-0.jpg"),
        ("reg/b.jpg", SHARED_DATA / "lectaurep" / "train" / "random-set-1" / "FRAN_0025_0989_L-1.jpg"),
        ("other/c.jpg", EXAMPLES / "FRAN_0025_0989_L-0.jpg"),
    ):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(page.read_bytes())
    log = tmp_path / "stderr.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [*REGISTRE, "digitize", str(src), "--out", str(out), "--adapt", "--no-lm", "-v"],
            cwd=REPO,
            env={**standalone_env, "REGISTRE_ADAPT_STEPS": "100000"},
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
            start_new_session=True,
        )
    started.append(proc)
    wait_for(lambda: "adapting, step 50/" in log.read_text(), "an adaptation under way", proc, timeout=300)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    text = log.read_text()
    assert time.monotonic() - t0 < 15, text[-3000:]
    assert proc.returncode == 128 + signal.SIGTERM, text[-3000:]
    assert "stopped by SIGTERM" in text and "3 left to do" in text and "Traceback" not in text
    assert not (out / "adapted").exists() and not [p for p in out.glob("*.json")]
