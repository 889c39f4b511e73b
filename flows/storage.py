"""Where pages come from and records go: a local folder or an S3 prefix, behind one small interface.

Keys are relative to the folder or prefix, with ``/`` separators. Every write is
atomic: a reader sees the old object, the new one, or none, never half of one
(local: a temporary file in the same folder, then ``os.replace``; S3: one PUT,
which the store commits whole or not at all). Listings give each key's size
(the flow balances chunks by bytes), and the destination's lease uses
conditional writes (S3 ``If-None-Match``/``If-Match``, local ``O_EXCL``).

S3 goes through boto3, configured the standard AWS way (``AWS_ENDPOINT_URL``,
``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``..., profiles and
``~/.aws/config``), so MinIO, SeaweedFS and other S3-compatible stores work.
Transient S3 failures (throttling, 5xx, dropped connections, timeouts) are
retried by botocore's *standard* retry mode, which backs off exponentially with
full jitter. botocore reads a response's body after its retry loop (error
documents and listings as well as object bodies, botocore#3132), so an answer
whose connection breaks off mid-body is retried here, the same way; whatever
still fails is classified by :func:`is_transient` so that Prefect retries the
task only for errors a retry can cure.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import http.client
import logging
import os
import random
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

#: File name endings of page scans (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
#: Prefix of the temporary files of atomic local writes; listings skip them.
TEMP_PREFIX = ".registre-tmp-"
#: First and longest pause, in seconds, before reading a cut-off S3 answer again (full jitter).
CUT_BODY_BACKOFF_S = (0.1, 5.0)


class StorageError(RuntimeError):
    """A storage operation that failed; ``transient`` says whether retrying later may succeed."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class MissingKey(StorageError):
    """The key does not exist (never transient)."""


# errno values of local I/O that a later attempt can cure (network filesystems, busy devices).
_TRANSIENT_ERRNOS = {errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT, errno.ESTALE, errno.ECONNRESET}
_TRANSIENT_S3_CODES = {
    "RequestTimeout",
    "RequestTimeoutException",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "TooManyRequests",
    "InternalError",
    "ServiceUnavailable",
    "RequestLimitExceeded",
}


def cut_body_errors() -> tuple[type[BaseException], ...]:
    """Return the exception types of an S3 answer whose connection broke off while its body was read.

    botocore raises none of them from its own retry loop (there a broken
    connection becomes a ``ConnectionClosedError``, and is retried): they come
    from reading a body afterwards, raw from urllib3 for error documents and
    listings, wrapped by botocore's ``StreamingBody`` for object bodies.
    """
    from botocore.exceptions import IncompleteReadError, ResponseStreamingError
    from urllib3.exceptions import ProtocolError

    return (ProtocolError, ResponseStreamingError, IncompleteReadError, http.client.IncompleteRead)


def is_transient(exc: BaseException) -> bool:
    """Return True for errors a retry may cure: throttling, 5xx, timeouts, dropped connections, cut bodies."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, StorageError):
            return exc.transient
        if isinstance(exc, cut_body_errors()):
            return True
        from botocore.exceptions import ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            return err.get("Code") in _TRANSIENT_S3_CODES or status >= 500 or status == 429
        if isinstance(exc, (BotoConnectionError, HTTPClientError)):
            return True
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def has_extension(key: str, extensions: Iterable[str]) -> bool:
    """Return True when ``key`` ends with one of ``extensions`` (case-insensitive)."""
    low = key.lower()
    return any(low.endswith(e.lower()) for e in extensions)


class Storage(ABC):
    """A flat namespace of byte objects under one folder or prefix."""

    url: str

    @abstractmethod
    def list_sizes(
        self, extensions: Iterable[str] | None = IMAGE_EXTENSIONS, under: str = ""
    ) -> Iterator[tuple[str, int]]:
        """Yield (key, size in bytes) of every key (sorted) ending with one of ``extensions``, as listed."""

    def list_keys(self, extensions: Iterable[str] | None = IMAGE_EXTENSIONS, under: str = "") -> Iterator[str]:
        """Yield every key (relative, ``/``-separated, in sorted order) ending with one of ``extensions``."""
        return (key for key, _ in self.list_sizes(extensions, under))

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Return the bytes of ``key``; raises :class:`MissingKey` when it does not exist."""

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Write ``data`` at ``key`` atomically (readers never see a partial object)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` if it exists."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Return True when ``key`` exists."""

    def describe(self, key: str) -> str:
        """Return the full location of ``key`` for messages."""
        return f"{self.url.rstrip('/')}/{key}"

    # Conditional writes, for the destination's lease (flows.lease): a version tag is what
    # the store compares (S3: the ETag; local: a hash of the content).

    @abstractmethod
    def get_tagged(self, key: str) -> tuple[bytes, str]:
        """Return the bytes of ``key`` and its version tag; raises :class:`MissingKey`."""

    @abstractmethod
    def put_new(self, key: str, data: bytes) -> bool:
        """Write ``data`` at ``key`` only if no object is there; return False when one already is."""

    @abstractmethod
    def put_if_tag(self, key: str, data: bytes, tag: str) -> bool:
        """Replace ``key`` only while its version tag is ``tag``; return False when it changed or vanished."""

    def _replace_if_tag_checked(self, key: str, data: bytes, tag: str) -> bool:
        """Replace ``key`` after reading its tag back (no compare-and-swap): False when it changed or vanished."""
        try:
            _, current = self.get_tagged(key)
        except MissingKey:
            return False
        if current != tag:
            return False
        self.put(key, data, "application/json")
        return True


def _check_key(key: str) -> str:
    """Return ``key`` if it is safe to write under the storage root, else raise ValueError.

    Written keys are page ids and fixed names: no backslash either, which is a
    separator on Windows and on some stores' filesystem back ends.
    """
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"unsafe storage key {key!r}")
    return key


def _check_read_key(key: str) -> str:
    """Return ``key`` if it names a file inside the folder, else raise ValueError.

    Looser than :func:`_check_key`: a listed file may hold a backslash in its
    name (an ordinary character on POSIX), and it must be readable.
    """
    parts = key.split("/")
    if not key or key.startswith("/") or "\x00" in key or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"unsafe storage key {key!r}")
    if os.sep != "/" and os.sep in key:
        raise ValueError(f"unsafe storage key {key!r}")
    return key


@dataclass
class LocalStorage(Storage):
    """A folder on a local or mounted filesystem."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.url = str(self.root)

    def _path(self, key: str, write: bool = False) -> Path:
        # Reads accept any key a listing can give; writes only safe names (see _check_key).
        checked = _check_key(key) if write else _check_read_key(key)
        return self.root.joinpath(*checked.split("/"))

    def list_sizes(
        self, extensions: Iterable[str] | None = IMAGE_EXTENSIONS, under: str = ""
    ) -> Iterator[tuple[str, int]]:
        """Yield (key, bytes) of the files below the folder (recursively), sorted, filtered by extension."""
        base = self.root / under if under else self.root
        if not base.exists():
            if under:
                return
            raise MissingKey(f"{self.root}: no such folder")
        if not base.is_dir():
            raise StorageError(f"{base}: not a folder")
        exts = tuple(extensions) if extensions is not None else None
        keys = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith(TEMP_PREFIX) or (exts is not None and not has_extension(name, exts)):
                    continue
                try:
                    size = os.stat(os.path.join(dirpath, name)).st_size
                except OSError:
                    continue  # removed since the walk saw it
                keys.append((name if rel == "." else f"{rel}/{name}", size))
        yield from sorted(keys)

    def get(self, key: str) -> bytes:
        """Return the file's bytes."""
        try:
            path = self._path(key)
        except ValueError as exc:
            raise StorageError(f"{self.describe(key)}: cannot read ({exc})") from exc
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise MissingKey(f"{self.describe(key)}: no such file") from exc
        except OSError as exc:
            raise StorageError(f"{self.describe(key)}: cannot read ({exc})", transient=is_transient(exc)) from exc

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Write a temporary file beside the target, flush it to disk, then rename it into place."""
        path = self._path(key, write=True)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX + path.name + ".")
        except OSError as exc:
            raise StorageError(f"{self.describe(key)}: cannot write ({exc})", transient=is_transient(exc)) from exc
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; records are meant to be shared
            os.replace(tmp, path)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StorageError(f"{self.describe(key)}: cannot write ({exc})", transient=is_transient(exc)) from exc
            raise

    def delete(self, key: str) -> None:
        """Remove the file if present, and its folder if that leaves it empty (S3 has no empty folders)."""
        path = self._path(key, write=True)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"{self.describe(key)}: cannot delete ({exc})", transient=is_transient(exc)) from exc
        if path.parent != self.root:
            try:
                path.parent.rmdir()
            except OSError:
                pass  # not empty, or already gone

    def exists(self, key: str) -> bool:
        """Return True when the file exists."""
        return self._path(key).is_file()

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        """Return the file's bytes and the sha256 of them."""
        data = self.get(key)
        return data, hashlib.sha256(data).hexdigest()

    def put_new(self, key: str, data: bytes) -> bool:
        """Create the file with O_CREAT|O_EXCL (the filesystem refuses a second creator)."""
        path = self._path(key, write=True)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise StorageError(f"{self.describe(key)}: cannot create ({exc})", transient=is_transient(exc)) from exc
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return True

    def put_if_tag(self, key: str, data: bytes, tag: str) -> bool:
        """Replace the file if its content still hashes to ``tag`` (check, then an atomic rename).

        A filesystem has no compare-and-swap: two writers checking at the same
        instant could both replace it. The lease re-reads its file at every
        heartbeat, so such a loser learns it within one heartbeat.
        """
        return self._replace_if_tag_checked(key, data, tag)


def parse_s3_url(url: str) -> tuple[str, str]:
    """Return (bucket, prefix) of ``s3://bucket/prefix``; the prefix is empty or ends with ``/``."""
    if not url.startswith("s3://"):
        raise ValueError(f"{url!r} is not an s3:// URL")
    rest = url[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"{url!r} has no bucket name")
    prefix = prefix.strip("/")
    return bucket, (prefix + "/" if prefix else "")


@dataclass
class S3Storage(Storage):
    """Objects under ``s3://bucket/prefix`` through boto3; picklable (the client is made per process)."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    addressing_style: str = "auto"
    max_attempts: int = 5
    _client: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.prefix = self.prefix.strip("/") + "/" if self.prefix.strip("/") else ""
        self.url = f"s3://{self.bucket}/{self.prefix}"

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> S3Storage:
        """Return the storage of ``s3://bucket/prefix``."""
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, **kwargs)

    def __getstate__(self) -> dict:
        # boto3 clients do not pickle; Dask workers and retried tasks build their own.
        state = self.__dict__.copy()
        state["_client"] = None
        return state

    @property
    def client(self) -> Any:
        """Return this process's boto3 S3 client (thread-safe; built on first use)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                s3={"addressing_style": self.addressing_style},
                retries={"mode": "standard", "max_attempts": self.max_attempts},
                connect_timeout=10,
                read_timeout=60,
                max_pool_connections=32,
            )
            # A fresh session per storage: boto3's default session is not thread-safe to create from.
            session = boto3.session.Session()
            self._client = session.client("s3", endpoint_url=self.endpoint_url, config=config)
        return self._client

    def _key(self, key: str, write: bool = False) -> str:
        # Reads accept any listed key; writes must stay under the prefix (some S3-compatible
        # stores map keys to filesystem paths, where ``..`` would climb out).
        if write:
            _check_key(key)
        elif not key:
            raise ValueError("empty storage key")
        return self.prefix + key

    def _error(self, action: str, key: str, exc: Exception) -> StorageError:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                return MissingKey(f"{self.describe(key)}: no such object")
            if code == "NoSuchBucket":
                return MissingKey(f"s3://{self.bucket}: no such bucket")
            return StorageError(f"{self.describe(key)}: cannot {action} ({code}: {exc})", transient=is_transient(exc))
        return StorageError(f"{self.describe(key)}: cannot {action} ({exc})", transient=is_transient(exc))

    def _call(self, action: str, key: str, request: Callable[[], T]) -> T:
        """Return ``request()``, made again while its answer breaks off mid-body; failures become StorageError.

        Up to ``max_attempts`` more times, as botocore retries the other
        transient errors, with exponential backoff and full jitter. Every S3
        request registre makes is idempotent (GET, LIST, HEAD, a PUT of the
        same bytes, DELETE), so making one again is safe.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        cut = cut_body_errors()
        first, longest = CUT_BODY_BACKOFF_S
        for attempt in range(self.max_attempts + 1):
            try:
                return request()
            except cut as exc:
                if attempt >= self.max_attempts:
                    raise self._error(action, key, exc) from exc
                log.debug("%s %s: answer cut off (%s); asking again", action, self.describe(key), exc)
                time.sleep(random.uniform(0.0, min(longest, first * 2**attempt)))
            except (ClientError, BotoCoreError) as exc:
                raise self._error(action, key, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def list_sizes(
        self, extensions: Iterable[str] | None = IMAGE_EXTENSIONS, under: str = ""
    ) -> Iterator[tuple[str, int]]:
        """Yield (key, bytes) under the prefix, page by page of 1,000 (S3 returns them sorted)."""
        exts = tuple(extensions) if extensions is not None else None
        prefix = self.prefix + (under.strip("/") + "/" if under else "")
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            # One listing page per request, so a page cut off is asked again, not the whole listing.
            page = self._call("list", under or "", functools.partial(self.client.list_objects_v2, **params))
            for obj in page.get("Contents", []):
                key = obj["Key"][len(self.prefix) :]
                if not key or key.endswith("/") or (exts is not None and not has_extension(key, exts)):
                    continue
                yield key, int(obj.get("Size") or 0)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            params["ContinuationToken"] = token

    def get(self, key: str) -> bytes:
        """Return the object's bytes."""
        s3_key = self._key(key)

        def request() -> bytes:
            return self.client.get_object(Bucket=self.bucket, Key=s3_key)["Body"].read()

        return self._call("get", key, request)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Write the object with one PUT (S3 commits it whole or not at all)."""
        request = functools.partial(
            self.client.put_object,
            Bucket=self.bucket,
            Key=self._key(key, write=True),
            Body=data,
            ContentType=content_type,
        )
        self._call("put", key, request)

    def delete(self, key: str) -> None:
        """Remove the object (deleting a missing key is not an error in S3)."""
        request = functools.partial(self.client.delete_object, Bucket=self.bucket, Key=self._key(key, write=True))
        self._call("delete", key, request)

    def exists(self, key: str) -> bool:
        """Return True when a HEAD of the object succeeds."""
        try:
            self._call("head", key, functools.partial(self.client.head_object, Bucket=self.bucket, Key=self._key(key)))
        except MissingKey:
            return False
        return True

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        """Return the object's bytes and its ETag."""
        s3_key = self._key(key)

        def request() -> tuple[bytes, str]:
            answer = self.client.get_object(Bucket=self.bucket, Key=s3_key)
            return answer["Body"].read(), str(answer.get("ETag", ""))

        return self._call("get", key, request)

    def _conditional_put(self, key: str, data: bytes, **condition: str) -> bool | None:
        """Return True when the conditional PUT was applied, False when its condition failed, None if unsupported."""
        request = functools.partial(
            self.client.put_object,
            Bucket=self.bucket,
            Key=self._key(key, write=True),
            Body=data,
            ContentType="application/json",
            **condition,
        )
        try:
            self._call("put", key, request)
        except MissingKey:
            return False  # IfMatch on a key that is gone
        except StorageError as exc:
            cause = exc.__cause__
            code = getattr(cause, "response", {}).get("Error", {}).get("Code", "")
            status = int(getattr(cause, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                return False
            if code in ("NotImplemented", "InvalidArgument") or status == 501:
                return None
            raise
        return True

    def put_new(self, key: str, data: bytes) -> bool:
        """PUT with ``If-None-Match: *`` (AWS S3, SeaweedFS, MinIO refuse it when the key exists).

        A store that does not implement conditional writes gets a HEAD, then a
        plain PUT: a race of two creators is then caught by the lease's
        read-back (:mod:`flows.lease`). A HEAD first as well with every store,
        so one that silently ignores the header never overwrites a live lease.
        """
        if self.exists(key):
            return False
        applied = self._conditional_put(key, data, IfNoneMatch="*")
        if applied is None:
            log.info("%s: the store ignores If-None-Match; plain PUT, checked by reading back", self.url)
            self.put(key, data, "application/json")
            return True
        return applied

    def put_if_tag(self, key: str, data: bytes, tag: str) -> bool:
        """PUT with ``If-Match: <ETag>``; without store support, compare the ETag first, then PUT."""
        applied = self._conditional_put(key, data, IfMatch=tag)
        if applied is None:
            return self._replace_if_tag_checked(key, data, tag)
        return applied


def open_storage(
    url: str, endpoint_url: str | None = None, addressing_style: str = "auto", max_attempts: int = 5
) -> Storage:
    """Return the storage of a local folder or an ``s3://bucket/prefix`` URL."""
    if url.startswith("s3://"):
        return S3Storage.from_url(
            url, endpoint_url=endpoint_url, addressing_style=addressing_style, max_attempts=max_attempts
        )
    if "://" in url:
        raise ValueError(f"{url!r}: only local folders and s3:// URLs are supported")
    return LocalStorage(Path(url).expanduser())
