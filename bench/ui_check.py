"""What a person sees in Prefect's UI after a run: screenshots of a real run's logs, task runs and artifacts.

Starts a Prefect server on loopback (UI included) in a temporary
PREFECT_HOME, runs ``registre digitize`` on ``examples/pages`` plus two broken
files (an empty PNG, a truncated JPEG) against it, then takes screenshots with
headless Chromium (Debian's ``chromium``, installed with apt-get if missing)
of the flow run's logs, task runs and artifacts tabs and of each artifact.
Also checks from the API what the screenshots should show: the failed pages
as WARNING log lines, the all-failed chunk's state, the flow's final message.
Not part of CI (it needs Chromium and takes a minute or two).

    .venv/bin/python bench/ui_check.py [--out bench/results/ui] [--no-lm]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import describe_machine  # noqa: E402
from flows.local_server import free_port, stop_process, wait_healthy  # noqa: E402

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium() -> str:
    """Return the path of Chromium, installing Debian's package first if it is missing."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    print("installing chromium with apt-get ...", file=sys.stderr)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    path = shutil.which("chromium")
    if not path:
        raise SystemExit("chromium is still missing after apt-get install")
    return path


def make_source(folder: Path) -> Path:
    """Copy the example pages and add two broken files; return the folder."""
    folder.mkdir(parents=True)
    for page in sorted((REPO / "examples" / "pages").glob("*.jpg")):
        shutil.copy(page, folder / page.name)
    (folder / "notes.png").write_bytes(b"")
    first = sorted((REPO / "examples" / "pages").glob("*.jpg"))[0].read_bytes()
    (folder / "scan-cut.jpg").write_bytes(first[: len(first) // 3])
    return folder


def screenshot(browser: str, url: str, png: Path, profile: Path, size: str = "1400,1000") -> None:
    """Save a screenshot of ``url`` once the page's scripts have run, as a small palette PNG."""
    subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={size}",
            "--virtual-time-budget=20000",
            f"--screenshot={png}",
            url,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=180,
    )
    from PIL import Image

    with Image.open(png) as im:
        small = im.convert("RGB").quantize(colors=64)
    small.save(png, optimize=True)


def api_checks(api: str, flow_run_id: str) -> dict:
    """Return what the API says of the run: final state, chunk states, WARNING lines, artifact ids."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
        LogFilterLevel,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
    )
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        tasks = client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id]))
        )
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]), level=LogFilterLevel(ge_=30))
        )
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {
        "flow_run_state": f"{run.state.name}: {run.state.message}",
        "chunks": {t.name: f"{t.state.name}: {t.state.message or ''}" for t in tasks if t.name.startswith("chunk-")},
        "chunk_seconds": {
            t.name: round(t.total_run_time.total_seconds(), 1) for t in tasks if t.name.startswith("chunk-")
        },
        "warnings": [log.message for log in logs],
        "artifacts": {a.key: str(a.id) for a in artifacts if a.key},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ui", help="folder of the PNGs")
    parser.add_argument("--no-lm", action="store_true", help="greedy decoding (faster)")
    args = parser.parse_args()
    browser = chromium()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="registre-ui-") as tmp:
        tmpdir = Path(tmp)
        port = free_port()
        ui, api = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/api"
        env = {
            **os.environ,
            "PREFECT_HOME": str(tmpdir / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_URL": ui,
            # The address the UI's scripts call (by default port 4200, not this server's).
            "PREFECT_UI_API_URL": api,
        }
        env.pop("PREFECT_API_URL", None)
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_healthy(api, server)
            src = make_source(tmpdir / "src")
            command = [sys.executable, "-m", "flows.cli", "digitize", str(src), "--out", str(tmpdir / "out")]
            if args.no_lm:
                command.append("--no-lm")
            t0 = time.monotonic()
            run = subprocess.run(
                command, cwd=REPO, env={**env, "PREFECT_API_URL": api}, capture_output=True, text=True, timeout=1800
            )
            seconds = time.monotonic() - t0
            print(run.stderr[-4000:], file=sys.stderr)
            found = re.search(r"Prefect flow run ([0-9a-f-]{36})", run.stderr)
            if not found:
                raise SystemExit(f"registre printed no flow run id (exit {run.returncode})")
            flow_run_id = found.group(1)
            time.sleep(2)  # the last log lines and events reach the server
            checks = api_checks(api, flow_run_id)
            # The flow run page opens on its logs (the UI ignores a tab in the address), where each
            # chunk's final state and message is a line too.
            shots = {"flow-run-logs.png": f"{ui}/runs/flow-run/{flow_run_id}"}
            for key, artifact_id in checks["artifacts"].items():
                shots[f"artifact-{key}.png"] = f"{ui}/artifacts/artifact/{artifact_id}"
            profile = tmpdir / "chromium-profile"
            for name, url in shots.items():
                # The logs tab tall enough to reach the WARNING lines of the failed pages.
                screenshot(browser, url, args.out / name, profile, "1400,2800" if "logs" in name else "1400,1000")
                print(f"{name}: {url}", file=sys.stderr)
        finally:
            stop_process(server, grace_s=15)
    report = {
        "machine": describe_machine(),
        "date": time.strftime("%Y-%m-%d"),
        "exit_code": run.returncode,
        "command_seconds": round(seconds, 1),
        "printed_run_address": bool(re.search(r"Prefect flow run [0-9a-f-]{36}:\s+http", run.stderr)),
        **checks,
        "screenshots": sorted(shots),
    }
    (args.out / "ui_check.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps(report, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
