"""One run per destination: a lease object ``DST/.registre-lease.json`` that a run takes, refreshes and gives back.

Two runs merging manifests into one DST could drop each other's parts
(:mod:`flows.manifest`), and a nightly scheduled run is easily still going
when a person starts a rerun. So a run first creates the lease with a
conditional write the store arbitrates (S3 ``If-None-Match: *``; a local
folder: ``O_CREAT|O_EXCL``), refreshes its heartbeat every
``lease_heartbeat_s`` with ``If-Match`` on the version it wrote, and deletes it
at the end. A second run finds the lease and refuses, naming the first.

A lease is stale, and may be taken over (with a message), when its heartbeat
is older than its ``stale_after_s``, or at once when its owner ran on this
host and its process is gone (a run killed with SIGKILL). A takeover replaces
the stale object with ``If-Match`` on the version judged stale, so of two
runs taking over together only one succeeds. A store without conditional
writes gets check-then-write, caught by the read-back every heartbeat makes:
a run that finds another owner in its lease stops taking chunks.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from flows.storage import MissingKey, Storage

log = logging.getLogger(__name__)

LEASE_KEY = ".registre-lease.json"


class DestinationBusy(RuntimeError):
    """Another run holds the destination's lease."""


@dataclass
class LeaseOwner:
    """Who holds a lease: host, process, runs, and when it started and last showed it was alive (UTC)."""

    host: str
    pid: int
    run_id: str
    flow_run_id: str
    started: str
    heartbeat: str
    stale_after_s: float
    token: str

    def heartbeat_age_s(self, now: datetime | None = None) -> float:
        """Return the seconds since the owner's last heartbeat (by the clocks of both hosts)."""
        now = now or datetime.now(UTC)
        return (now - datetime.fromisoformat(self.heartbeat)).total_seconds()

    def process_gone(self) -> bool:
        """Return True when the owner ran on this host and its process no longer exists."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, another user's
        return False

    def stale_reason(self, now: datetime | None = None) -> str | None:
        """Return why the lease may be taken over, or None while its owner may still be running."""
        if self.process_gone():
            return f"its process {self.pid} on {self.host} is gone"
        age = self.heartbeat_age_s(now)
        if age > self.stale_after_s:
            return f"no heartbeat for {age:.0f} s (stale after {self.stale_after_s:.0f} s)"
        return None

    def describe(self) -> str:
        """Return the owner in words, for messages."""
        flow_run = f", flow run {self.flow_run_id}" if self.flow_run_id else ""
        return (
            f"run {self.run_id}{flow_run} (host {self.host}, pid {self.pid}, started {self.started}, "
            f"last heartbeat {self.heartbeat_age_s():.0f} s ago)"
        )

    def to_bytes(self) -> bytes:
        """Return the lease object's JSON bytes."""
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LeaseOwner:
        """Return the owner stored in a lease object; raises ValueError for anything else."""
        try:
            fields = json.loads(data)
            return cls(**{k: fields[k] for k in cls.__dataclass_fields__})
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"not a registre lease: {exc}") from exc


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class DestinationLease:
    """The lease of one run on one destination: :meth:`acquire`, a heartbeat thread, :meth:`release`."""

    def __init__(
        self,
        dst: Storage,
        run_id: str,
        flow_run_id: str = "",
        heartbeat_s: float = 60.0,
        stale_after_s: float = 600.0,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.dst = dst
        self.heartbeat_s = heartbeat_s
        self.owner = LeaseOwner(
            host=socket.gethostname(),
            pid=os.getpid(),
            run_id=run_id,
            flow_run_id=flow_run_id,
            started=_now(),
            heartbeat=_now(),
            stale_after_s=stale_after_s,
            token=uuid.uuid4().hex,
        )
        self.on_lost = on_lost
        self.took_over: str | None = None  # the stale owner replaced, in words
        self._tag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str | None = None

    def acquire(self) -> None:
        """Take the lease (or a stale one over) and start the heartbeat; raise DestinationBusy if it is held."""
        for _ in range(3):  # a lease released between our create and our read: try again
            if self.dst.put_new(LEASE_KEY, self.owner.to_bytes()):
                self._confirm()
                break
            try:
                data, tag = self.dst.get_tagged(LEASE_KEY)
            except MissingKey:
                continue
            try:
                holder = LeaseOwner.from_bytes(data)
            except ValueError:
                raise DestinationBusy(
                    f"{self.dst.describe(LEASE_KEY)} exists but is not a registre lease; remove it to run here"
                ) from None
            if holder.token == self.owner.token:
                # Our create was applied but its answer lost, and the retried PUT refused.
                self._confirm()
                break
            why = holder.stale_reason()
            if why is None:
                raise DestinationBusy(
                    f"{self.dst.url} is in use by {holder.describe()}; one run per destination. "
                    f"Wait for it to end, or if it was stopped, its lease ({self.dst.describe(LEASE_KEY)}) "
                    f"is taken over once it is stale ({holder.stale_after_s:.0f} s without heartbeat)."
                )
            self.owner.heartbeat = _now()
            if self.dst.put_if_tag(LEASE_KEY, self.owner.to_bytes(), tag):
                self.took_over = f"{holder.describe()}: {why}"
                self._confirm()
                break
        else:
            raise DestinationBusy(f"{self.dst.url}: could not take the lease (it changed hands three times)")
        self._thread = threading.Thread(target=self._beat, name="registre-lease", daemon=True)
        self._thread.start()

    def _confirm(self) -> None:
        """Read the lease back: on a store without conditional writes, a racing run's PUT may have won."""
        data, tag = self.dst.get_tagged(LEASE_KEY)
        holder = LeaseOwner.from_bytes(data)
        if holder.token != self.owner.token:
            raise DestinationBusy(f"{self.dst.url} was taken at the same moment by {holder.describe()}")
        self._tag = tag

    def _beat(self) -> None:
        """Refresh the heartbeat until released; on losing the lease, record why and call ``on_lost``."""
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - a store hiccup: the next beat tries again
                log.warning("lease heartbeat on %s failed: %s", self.dst.url, exc)
            if self.lost:
                if self.on_lost:
                    self.on_lost(self.lost)
                return

    def refresh(self) -> None:
        """Write a new heartbeat if the lease is still ours; else set :attr:`lost`."""
        self.owner.heartbeat = _now()
        if self._tag is not None and self.dst.put_if_tag(LEASE_KEY, self.owner.to_bytes(), self._tag):
            _, self._tag = self.dst.get_tagged(LEASE_KEY)
            return
        try:
            data, tag = self.dst.get_tagged(LEASE_KEY)
            holder = LeaseOwner.from_bytes(data)
            if holder.token == self.owner.token:
                self._tag = tag  # our PUT was applied but its answer lost: still ours
                return
            self.lost = f"the lease of {self.dst.url} was taken over by {holder.describe()}"
        except MissingKey:
            self.lost = f"the lease {self.dst.describe(LEASE_KEY)} was removed"

    def release(self) -> None:
        """Stop the heartbeat and delete the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.lost or self._tag is None:
            return
        try:
            holder = LeaseOwner.from_bytes(self.dst.get_tagged(LEASE_KEY)[0])
            if holder.token == self.owner.token:
                self.dst.delete(LEASE_KEY)
        except MissingKey:
            pass
        except Exception as exc:  # noqa: BLE001 - the run's outcome stands; the lease goes stale by itself
            log.warning("could not release the lease %s: %s", self.dst.describe(LEASE_KEY), exc)
