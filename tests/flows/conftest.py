"""Fixtures of the flow tests: a tiny real recognizer, small real pages, Prefect's test server, SeaweedFS S3."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from loopback import object_store, s3_client

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


@dataclass
class S3Server:
    """A running S3-compatible store on loopback."""

    endpoint: str

    def client(self):  # noqa: ANN201 - a boto3 client
        return s3_client(self.endpoint)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS (``weed server -s3``) on 127.0.0.1, free ports, data in a temp folder; killed at teardown."""
    with object_store("seaweedfs", tmp_path_factory.mktemp("seaweed")) as endpoint:
        yield S3Server(endpoint)


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
