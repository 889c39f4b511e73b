"""Fixtures of the reliability tests: the flow tests' fixtures (tiny model, Prefect), SeaweedFS, moto_server, CLI env.

The flow tests' fixtures are imported from ``tests/flows/conftest.py`` (loaded
under its own module name), so both suites use one definition of the tiny
recognizer, Prefect's test server and the SeaweedFS store (``loopback``).
Session fixtures are per folder: in a whole-suite run this folder starts its
own Prefect test server and store beside those of ``tests/flows``.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # faultproxy, badinputs, runkit

_spec = importlib.util.spec_from_file_location("registre_flow_test_fixtures", HERE.parent / "flows" / "conftest.py")
flow_fixtures = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = flow_fixtures  # dataclasses look their module up there
_spec.loader.exec_module(flow_fixtures)

tiny_model = flow_fixtures.tiny_model
tiny_model_version = flow_fixtures.tiny_model_version
page_bytes = flow_fixtures.page_bytes
prefect_harness = flow_fixtures.prefect_harness
bucket = flow_fixtures.bucket
s3_env = flow_fixtures.s3_env
s3_server = flow_fixtures.s3_server

from loopback import object_store  # noqa: E402
from runkit import cli_env  # noqa: E402


@pytest.fixture(scope="session")
def prefect_api_url(prefect_harness: None) -> str:
    """The API URL of Prefect's test server, for ``registre`` subprocesses (no temporary server each)."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "prefect_test_harness set no API URL"
    return url


@pytest.fixture
def registre_env(prefect_api_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a ``registre`` subprocess: the test Prefect server, no AWS settings of the machine."""
    env = cli_env(prefect_api_url)
    for name in list(env):
        if name.startswith(("AWS_", "REGISTRE_")):
            del env[name]
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "no-aws-config")
    return env


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto_server on loopback: an S3 store that keeps keys SeaweedFS refuses (``..``, ``./``), to stage them."""
    with object_store("moto", tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@pytest.fixture
def listener() -> Iterator[tuple[str, list[bytes]]]:
    """A TCP listener on loopback that records what connects to it: (``http://`` URL, received requests)."""
    hits: list[bytes] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    hits.append(conn.recv(4096) or b"<connected>")
                except OSError:
                    hits.append(b"<connected>")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", hits
    finally:
        stop.set()
        thread.join(timeout=2)
        server.close()
