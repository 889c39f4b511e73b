"""The destination lease on a local folder and on SeaweedFS S3: refuse while held, take over when stale."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.lease import LEASE_KEY, DestinationBusy, DestinationLease, LeaseOwner
from flows.storage import LocalStorage, Storage, open_storage


@pytest.fixture(params=["local", "s3"])
def dst(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "out")
    return open_storage(request.getfixturevalue("s3_prefix") + "/out", addressing_style="path")


def test_a_second_run_refuses_naming_the_first_then_runs_after_release(dst: Storage) -> None:
    first = DestinationLease(dst, "run-1", "flow-run-1", heartbeat_s=0.2)
    first.acquire()
    owner = LeaseOwner.from_bytes(dst.get(LEASE_KEY))
    assert (owner.run_id, owner.flow_run_id, owner.pid) == ("run-1", "flow-run-1", first.owner.pid)
    with pytest.raises(DestinationBusy, match=r"in use by run run-1, flow run flow-run-1 \(host .*pid"):
        DestinationLease(dst, "run-2").acquire()
    time.sleep(0.5)  # heartbeats went through with If-Match on the version written before
    assert LeaseOwner.from_bytes(dst.get(LEASE_KEY)).heartbeat >= owner.heartbeat and not first.lost
    first.release()
    assert not dst.exists(LEASE_KEY)
    second = DestinationLease(dst, "run-2")
    second.acquire()
    assert second.took_over is None
    second.release()


def test_a_lease_without_heartbeat_goes_stale_and_is_taken_over(dst: Storage) -> None:
    hung = DestinationLease(dst, "run-hung", heartbeat_s=3600, stale_after_s=1.0)
    hung.acquire()
    with pytest.raises(DestinationBusy):
        DestinationLease(dst, "run-2").acquire()
    time.sleep(1.5)
    taker = DestinationLease(dst, "run-2")
    taker.acquire()
    assert taker.took_over and "run-hung" in taker.took_over and "no heartbeat for" in taker.took_over
    # The hung run, should it wake up, finds it lost the lease at its next heartbeat.
    hung.refresh()
    assert hung.lost and "taken over by run run-2" in hung.lost
    hung.release()
    assert LeaseOwner.from_bytes(dst.get(LEASE_KEY)).run_id == "run-2"  # not deleted by the loser
    taker.release()


def test_the_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(dst: Storage) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = DestinationLease(dst, "run-killed")
    dead.owner.pid = int(gone.stdout)
    assert dst.put_new(LEASE_KEY, dead.owner.to_bytes())
    taker = DestinationLease(dst, "run-2")
    taker.acquire()
    assert taker.took_over and f"process {dead.owner.pid}" in taker.took_over
    taker.release()


def test_something_else_at_the_lease_key_is_not_overwritten(dst: Storage) -> None:
    dst.put(LEASE_KEY, json.dumps({"hello": 1}).encode())
    with pytest.raises(DestinationBusy, match="not a registre lease"):
        DestinationLease(dst, "run-1").acquire()
    assert json.loads(dst.get(LEASE_KEY)) == {"hello": 1}
