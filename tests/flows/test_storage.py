from __future__ import annotations

import http.client
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ResponseStreamingError
from urllib3.exceptions import ProtocolError

from flows.storage import (
    TEMP_PREFIX,
    LocalStorage,
    MissingKey,
    S3Storage,
    StorageError,
    is_transient,
    open_storage,
    parse_s3_url,
)

# --- local ---------------------------------------------------------------------------------------


def test_local_put_get_list_delete(tmp_path: Path) -> None:
    st = LocalStorage(tmp_path)
    st.put("reg/a.jpg", b"A")
    st.put("reg/sub/b.TIF", b"B")
    st.put("c.png", b"C")
    st.put("notes.txt", b"N")
    st.put("out.json", b"{}")
    assert list(st.list_keys()) == ["c.png", "reg/a.jpg", "reg/sub/b.TIF"]
    assert list(st.list_keys(extensions=None)) == ["c.png", "notes.txt", "out.json", "reg/a.jpg", "reg/sub/b.TIF"]
    assert st.get("reg/a.jpg") == b"A"
    assert st.exists("c.png") and not st.exists("nope.png")
    st.delete("reg/sub/b.TIF")
    assert not (tmp_path / "reg" / "sub").exists(), "an emptied folder is removed, as S3 has none"
    with pytest.raises(MissingKey):
        st.get("reg/sub/b.TIF")


def test_local_put_replaces_atomically_and_leaves_no_temp_file(tmp_path: Path) -> None:
    st = LocalStorage(tmp_path)
    st.put("p.json", b"old")
    st.put("p.json", b"new")
    assert (tmp_path / "p.json").read_bytes() == b"new"
    assert oct((tmp_path / "p.json").stat().st_mode & 0o777) == "0o644"
    # A put that cannot complete (the target is a folder) leaves the old state and no temp file.
    (tmp_path / "d.json").mkdir()
    with pytest.raises(StorageError) as err:
        st.put("d.json", b"x")
    assert not err.value.transient
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)] == []


def test_local_listing_skips_temp_files_of_interrupted_writes(tmp_path: Path) -> None:
    (tmp_path / f"{TEMP_PREFIX}a.jpg.123").write_bytes(b"partial")
    (tmp_path / "a.jpg").write_bytes(b"whole")
    assert list(LocalStorage(tmp_path).list_keys()) == ["a.jpg"]


@pytest.mark.parametrize("key", ["../x.json", "/etc/passwd", "a/../../x", "a//b", "", ".", "a\\..\\b"])
def test_keys_cannot_escape_the_root(tmp_path: Path, key: str) -> None:
    st = LocalStorage(tmp_path / "dst")
    with pytest.raises(ValueError):
        st.put(key, b"x")
    assert not (tmp_path / "x.json").exists()


def test_a_listed_name_with_backslashes_is_read_but_never_written(tmp_path: Path) -> None:
    # On POSIX a backslash is an ordinary character of a file name.
    (tmp_path / "back\\slash\\..\\win.jpg").write_bytes(b"scan")
    st = LocalStorage(tmp_path)
    assert [st.get(k) for k in st.list_keys()] == [b"scan"]
    with pytest.raises(ValueError):
        st.put("back\\slash.json", b"x")
    with pytest.raises(StorageError):
        st.get("../outside.jpg")


def test_missing_source_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(MissingKey, match="no such folder"):
        list(LocalStorage(tmp_path / "absent").list_keys())


def test_open_storage_dispatches_on_url(tmp_path: Path) -> None:
    assert isinstance(open_storage(str(tmp_path)), LocalStorage)
    s3 = open_storage("s3://bucket/some/prefix/", addressing_style="path")
    assert isinstance(s3, S3Storage) and (s3.bucket, s3.prefix) == ("bucket", "some/prefix/")
    assert parse_s3_url("s3://b") == ("b", "")
    with pytest.raises(ValueError):
        open_storage("gs://bucket/x")
    with pytest.raises(ValueError):
        parse_s3_url("s3:///x")


# --- transient or not ------------------------------------------------------------------------------


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


def test_transient_errors_are_told_apart() -> None:
    assert is_transient(_client_error("SlowDown", 503))
    assert is_transient(_client_error("InternalError", 500))
    assert is_transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert is_transient(TimeoutError())
    assert is_transient(StorageError("x", transient=True))
    assert not is_transient(_client_error("NoSuchKey", 404))
    assert not is_transient(_client_error("AccessDenied", 403))
    assert not is_transient(FileNotFoundError(2, "no such file"))
    assert not is_transient(ValueError("bad image"))
    # A connection cut while a body was read (botocore#3132).
    assert is_transient(ProtocolError("Connection broken", http.client.IncompleteRead(b"<?xml", 200)))
    assert is_transient(ResponseStreamingError(error="Connection broken: reset"))
    # Wrapped: the cause decides.
    try:
        try:
            raise _client_error("SlowDown", 503)
        except ClientError as exc:
            raise RuntimeError("chunk failed") from exc
    except RuntimeError as wrapped:
        assert is_transient(wrapped)


def test_unreachable_s3_endpoint_is_a_transient_storage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    st = S3Storage("bucket", endpoint_url="http://127.0.0.1:9", addressing_style="path", max_attempts=1)
    with pytest.raises(StorageError) as err:
        st.get("a.jpg")
    assert err.value.transient


def test_s3_answers_cut_off_mid_body_are_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads and listings made again after a cut body, up to max_attempts more times; then a transient error."""
    monkeypatch.setattr("flows.storage.CUT_BODY_BACKOFF_S", (0.0, 0.0))
    calls: list[str] = []

    class Body:
        def read(self) -> bytes:
            if len(calls) <= 3:
                raise ResponseStreamingError(error="Connection broken: IncompleteRead")
            return b"scan"

    class Client:
        def get_object(self, **kw: object) -> dict:
            calls.append("get")
            return {"Body": Body()}

        def list_objects_v2(self, **kw: object) -> dict:
            calls.append("list")
            if len(calls) == 1:
                raise ProtocolError("Connection broken", http.client.IncompleteRead(b"<List", 900))
            if "ContinuationToken" not in kw:
                return {"Contents": [{"Key": "p/a.jpg"}], "IsTruncated": True, "NextContinuationToken": "t"}
            return {"Contents": [{"Key": "p/b.jpg"}], "IsTruncated": False}

    st = S3Storage("bucket", "p", max_attempts=3)
    st._client = Client()
    assert list(st.list_keys()) == ["a.jpg", "b.jpg"] and calls == ["list"] * 3
    calls.clear()
    assert st.get("a.jpg") == b"scan" and calls == ["get"] * 4
    calls.clear()
    st.max_attempts = 1
    with pytest.raises(StorageError) as err:
        st.get("a.jpg")
    assert err.value.transient and calls == ["get"] * 2


# --- S3 on a real SeaweedFS -----------------------------------------------------------------------


def test_s3_put_get_list_delete(s3_prefix: str) -> None:
    st = open_storage(s3_prefix, addressing_style="path")
    st.put("reg/a.jpg", b"A", "image/jpeg")
    st.put("reg/b.JPEG", b"B")
    st.put("reg/notes.txt", b"N")
    assert sorted(st.list_keys()) == ["reg/a.jpg", "reg/b.JPEG"]
    assert st.get("reg/a.jpg") == b"A"
    assert st.exists("reg/a.jpg") and not st.exists("reg/zzz.jpg")
    with pytest.raises(MissingKey):
        st.get("reg/zzz.jpg")
    st.put("reg/a.jpg", b"A2")
    assert st.get("reg/a.jpg") == b"A2"
    st.delete("reg/a.jpg")
    assert not st.exists("reg/a.jpg")
    with pytest.raises(ValueError):
        st.put("../outside.json", b"x")
    # Picklable for Dask workers and retried tasks: the client is rebuilt on the other side.
    clone = pickle.loads(pickle.dumps(st))
    assert clone.get("reg/b.JPEG") == b"B"


def test_s3_listing_pages_through_more_than_1000_keys(s3_prefix: str) -> None:
    st = open_storage(s3_prefix, addressing_style="path")
    keys = [f"reg/{i:05d}.jpg" for i in range(1050)] + [f"reg/{i:05d}.xml" for i in range(5)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: st.put(k, b"x"), keys))
    listed = list(st.list_keys())
    assert len(listed) == 1050
    assert listed == sorted(k for k in keys if k.endswith(".jpg"))
    assert len(list(st.list_keys(extensions=None))) == 1055


def test_s3_prefix_isolates_and_missing_bucket_is_reported(s3_prefix: str) -> None:
    a = open_storage(s3_prefix + "/a", addressing_style="path")
    b = open_storage(s3_prefix + "/ab", addressing_style="path")
    a.put("p.jpg", b"1")
    b.put("q.jpg", b"2")
    assert list(a.list_keys()) == ["p.jpg"]
    assert list(b.list_keys()) == ["q.jpg"]
    with pytest.raises(MissingKey):
        list(open_storage("s3://no-such-bucket-here/x", addressing_style="path").list_keys())


def test_endpoint_comes_from_the_standard_aws_environment(s3_prefix: str) -> None:
    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    st = S3Storage.from_url(s3_prefix, addressing_style="path")  # no endpoint_url given
    st.put("x.png", b"png")
    assert st.get("x.png") == b"png"


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_listings_give_sizes_and_conditional_writes_refuse(kind: str, tmp_path: Path, request) -> None:  # noqa: ANN001
    if kind == "local":
        st = LocalStorage(tmp_path)
    else:
        st = open_storage(request.getfixturevalue("s3_prefix"), addressing_style="path")
    st.put("reg/a.jpg", b"A" * 300)
    st.put("b.png", b"")
    assert list(st.list_sizes()) == [("b.png", 0), ("reg/a.jpg", 300)]
    assert st.put_new("lock.json", b"one") and not st.put_new("lock.json", b"two")
    data, tag = st.get_tagged("lock.json")
    assert data == b"one"
    assert st.put_if_tag("lock.json", b"three", tag) and not st.put_if_tag("lock.json", b"four", tag)
    assert st.get("lock.json") == b"three" and not st.put_if_tag("gone.json", b"x", tag)
