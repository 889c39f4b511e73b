"""A fault-injecting HTTP proxy for an S3 endpoint on loopback (stdlib only, one thread per connection).

Clients talk to :attr:`FaultProxy.url` instead of the store. A seeded share of
the requests is answered with a fault instead of (or after) the store's answer:

``500``          ``InternalError`` XML, status 500
``503``          ``ServiceUnavailable`` XML, status 503
``slowdown``     ``SlowDown`` XML, status 503 (S3's throttling answer)
``reset``        the connection is reset (TCP RST) before the request reaches the store
``lost``         the request reaches the store (a PUT is applied), then the connection is reset:
                 the client never learns the outcome and must retry an operation that happened
``truncate``     the store's answer is cut half-way through its body, then the connection is reset
``stall``        nothing is answered for ``stall_s`` seconds, then the connection is reset (a gateway
                 timing out); with ``stall_s`` beyond the client's read timeout, the client times out first

Whether a request fails is drawn from the seed, the request (method, path
and query) and how many times that same request was seen before, so the first
attempt and the retries of one request get independent draws, and a run's
faults hardly depend on how its threads interleave. ``min_rate`` puts a floor
under the share actually injected (a short run can draw low): once 20
requests were seen, a request that would leave the share below it fails too.
The kinds take turns in a seeded order, so every kind occurs in any run with
as many faults as kinds.

Staged faults, for one failure path at a time: ``only`` (a regular expression
matched against ``"METHOD /path?query"``) limits which requests may fail,
``attempts`` fails only the first N sends of each request (its retries past
N pass), and ``targets`` fails at most that many distinct requests.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

#: Every fault kind the proxy can inject.
FAULT_KINDS = ("500", "503", "slowdown", "reset", "lost", "truncate", "stall")

_ERRORS = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "ServiceUnavailable", "Service is unable to handle request."),
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
}
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}


@dataclass
class FaultStats:
    """What the proxy did: requests seen, faults injected per kind, requests passed through."""

    requests: int = 0
    passed: int = 0
    faults: Counter = field(default_factory=Counter)
    by_method: Counter = field(default_factory=Counter)

    @property
    def injected(self) -> int:
        """Return the number of requests answered with a fault."""
        return sum(self.faults.values())

    @property
    def rate(self) -> float:
        """Return the share of requests answered with a fault (0–1)."""
        return self.injected / self.requests if self.requests else 0.0


def _draw(seed: int, *parts: object) -> float:
    """Return a number in [0, 1) fixed by the seed and the parts."""
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return struct.unpack(">Q", digest[:8])[0] / 2**64


class FaultProxy:
    """A loopback HTTP proxy to ``upstream`` that fails ``rate`` of the requests with ``kinds`` of faults."""

    def __init__(
        self,
        upstream: str,
        rate: float = 0.3,
        seed: int = 0,
        kinds: tuple[str, ...] = FAULT_KINDS,
        stall_s: float = 1.5,
        min_rate: float = 0.0,
        only: str | None = None,
        attempts: int | None = None,
        targets: int | None = None,
    ) -> None:
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rate = rate
        self.seed = seed
        self.kinds = tuple(kinds)
        self.stall_s = stall_s
        self.min_rate = min_rate
        self.only = re.compile(only) if only else None
        self.attempts = attempts
        self.targets = targets
        self._targeted: set[tuple[str, str]] = set()
        order = sorted(self.kinds, key=lambda k: _draw(seed, "order", k))
        self._turns = order
        self.enabled = True
        self.stats = FaultStats()
        self._seen: Counter = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Return the proxy's endpoint URL (``http://127.0.0.1:PORT``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultProxy:
        """Start serving in a background thread; return self."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def decide(self, method: str, path: str) -> str | None:
        """Return the fault to inject for this request (None: pass it through), and count it."""
        with self._lock:
            n = self._seen[(method, path)]
            self._seen[(method, path)] += 1
            self.stats.requests += 1
            self.stats.by_method[method] += 1
            fault = None
            eligible = (
                self.enabled
                and bool(self.kinds)
                and (self.only is None or bool(self.only.search(f"{method} {path}")))
                and (self.attempts is None or n < self.attempts)
                and (self.targets is None or (method, path) in self._targeted or len(self._targeted) < self.targets)
            )
            if eligible:
                fail = _draw(self.seed, method, path, n, "fail?") < self.rate
                seen, injected = self.stats.requests, self.stats.injected
                if not fail and seen >= 20 and injected / seen < self.min_rate:
                    fail = True
                if fail:
                    fault = self._turns[injected % len(self._turns)]
                    self._targeted.add((method, path))
            if fault is None:
                self.stats.passed += 1
            else:
                self.stats.faults[fault] += 1
            return fault

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            upstream_conn: http.client.HTTPConnection | None = None

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
                pass  # quiet: the test reads the stats instead

            def handle_expect_100(self) -> bool:
                return True  # the body is read below; "100 Continue" is sent by send_response_only

            def _read_body(self) -> bytes:
                if self.headers.get("Expect", "").lower() == "100-continue":
                    self.send_response_only(100)
                    self.end_headers()
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    # Forwarded as it came (aws-chunked signatures and trailers included).
                    raw = bytearray()
                    while True:
                        line = self.rfile.readline(65537)
                        raw += line
                        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                        if size == 0:
                            while True:
                                trailer = self.rfile.readline(65537)
                                raw += trailer
                                if trailer in (b"\r\n", b"\n", b""):
                                    return bytes(raw)
                        raw += self.rfile.read(size + 2)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _reset(self) -> None:
                """Abort the connection with a TCP RST (SO_LINGER 0), as a crashed server or LB does."""
                try:
                    self.wfile.flush()
                except OSError:
                    pass
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
                self.close_connection = True
                try:
                    self.connection.close()
                except OSError:
                    pass

            def _error(self, fault: str) -> None:
                status, code, message = _ERRORS[fault]
                body = (
                    '<?xml version="1.0" encoding="UTF-8"?>\n'
                    f"<Error><Code>{code}</Code><Message>{message}</Message>"
                    f"<Resource>{self.path.split('?')[0]}</Resource><RequestId>{uuid.uuid4().hex[:16]}</RequestId></Error>"
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
                for attempt in range(2):
                    conn = self.upstream_conn or http.client.HTTPConnection(*proxy.upstream, timeout=60)
                    try:
                        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                        for name, value in self.headers.items():
                            if name.lower() not in _HOP_BY_HOP and name.lower() != "expect":
                                conn.putheader(name, value)
                        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                            conn.putheader("Transfer-Encoding", self.headers["Transfer-Encoding"])
                        conn.endheaders()
                        if body:
                            conn.send(body)
                        resp = conn.getresponse()
                        data = resp.read()
                        self.upstream_conn = None if resp.will_close else conn
                        return resp.status, resp.reason, resp.getheaders(), data
                    except (OSError, http.client.HTTPException):
                        conn.close()
                        self.upstream_conn = None
                        if attempt:
                            raise
                raise AssertionError("unreachable")

            def _respond(
                self, status: int, reason: str, headers: list[tuple[str, str]], data: bytes, cut: bool
            ) -> None:
                self.send_response_only(status, reason)
                for name, value in headers:
                    low = name.lower()
                    if low in _HOP_BY_HOP or (low == "content-length" and self.command != "HEAD"):
                        continue
                    self.send_header(name, value)
                if self.command != "HEAD" and status not in (204, 304):
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command == "HEAD" or status in (204, 304):
                    return
                if cut:
                    self.wfile.write(data[: len(data) // 2])
                    self._reset()
                    return
                self.wfile.write(data)

            def _handle(self) -> None:
                fault = proxy.decide(self.command, self.path)
                if fault == "reset" and self.headers.get("Content-Length", "0") != "0":
                    # Mid-upload: the client is still sending its body (or waits for "100 Continue").
                    if not self.headers.get("Expect"):
                        self.rfile.read(min(int(self.headers["Content-Length"]) // 2, 1 << 20))
                    self._reset()
                    return
                body = self._read_body()
                if fault in _ERRORS:
                    self._error(fault)
                    return
                if fault == "reset":
                    self._reset()
                    return
                if fault == "stall":
                    time.sleep(proxy.stall_s)
                    self._reset()
                    return
                try:
                    status, reason, headers, data = self._forward(body)
                except (OSError, http.client.HTTPException):
                    self._error("503")
                    return
                if fault == "lost" or (fault == "truncate" and (self.command == "HEAD" or len(data) < 2)):
                    self._reset()
                    return
                self._respond(status, reason, headers, data, cut=(fault == "truncate"))

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        return Handler
