"""The temporary Prefect server of ``registre digitize`` without ``PREFECT_API_URL``: it never outlives the command.

Prefect would start its own temporary server (uvicorn in a subprocess) and
stop it at interpreter exit; a SIGKILLed command leaves it running, holding a
port and memory. So the CLI starts the same server itself
(:func:`temporary_server`): uvicorn serving Prefect's API app, started the
way Prefect starts its own, in a child that

- asks the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``
  on Linux), and also polls its parent's pid once a second (other systems,
  and a parent that died before the ``prctl``);
- runs in its own session, so a Ctrl-C in the terminal reaches the command
  (which stops the run cleanly and then the server), not the server first.

Run as ``python -m flows.local_server PORT PARENT_PID``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import BinaryIO

#: prctl(2) option: the signal the kernel sends this process when its parent thread dies.
PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Arrange for this process to end when ``parent_pid`` does: a kernel death signal and a watchdog thread."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(0)  # the parent died before the prctl: already orphaned

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def free_port() -> int:
    """Return a TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def temporary_server(startup_timeout_s: float = 120.0) -> Iterator[str]:
    """Start a Prefect server on loopback for this process, point Prefect's settings at it; yield its API URL.

    Stopped (SIGTERM, then SIGKILL after 5 s) on leaving; killed by the kernel
    if this process dies first. Call from the main thread: the death signal
    follows the thread that started the child.
    """
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        **get_current_settings().to_environment_variables(exclude_unset=True),
        # As Prefect's own temporary server: no UI, ephemeral mode.
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    errors = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.local_server", str(port), str(os.getpid())],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=errors,
        start_new_session=True,
    )
    try:
        wait_healthy(url, proc, startup_timeout_s, errors)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield url
            finally:
                _drain_prefect_clients()
    finally:
        stop_process(proc)
        errors.close()


def wait_healthy(api: str, proc: subprocess.Popen, timeout_s: float = 120.0, errors: BinaryIO | None = None) -> None:
    """Wait until the Prefect server ``proc`` answers ``api``/health; raise RuntimeError if it exits or stays silent.

    ``errors``: the file its stderr goes to, quoted when it exits.
    """
    import httpx

    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2) as client:
        while True:
            if proc.poll() is not None:
                tail = ""
                if errors is not None:
                    errors.seek(0)
                    tail = ": " + errors.read()[-2000:].decode(errors="replace")
                raise RuntimeError(f"the Prefect server exited with {proc.returncode}{tail}")
            try:
                if client.get(f"{api}/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Prefect server did not answer in {timeout_s:.0f} s")
            time.sleep(0.1)


def stop_process(proc: subprocess.Popen, grace_s: float = 5.0, kill_wait_s: float = 5.0) -> None:
    """Stop ``proc``: SIGTERM, then SIGKILL if it is still running after ``grace_s`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=kill_wait_s)


def _drain_prefect_clients(timeout_s: float = 10.0) -> None:
    """Send the log lines and events still queued for the server before it goes (as Prefect's test harness does).

    Left queued, Prefect's workers would retry against the stopped server at
    interpreter exit, for a minute.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=timeout_s)


def main(argv: list[str]) -> None:
    """Serve Prefect's API on 127.0.0.1:PORT until PARENT_PID dies or a signal stops it."""
    port, parent_pid = int(argv[0]), int(argv[1])
    _die_with_parent(parent_pid)
    import uvicorn

    uvicorn.run(
        "prefect.server.api.server:create_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="error",
        lifespan="on",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
