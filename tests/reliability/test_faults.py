"""Injected S3 faults: a digitize run through a faulty loopback proxy completes, losing and duplicating nothing.

SeaweedFS holds the scans and the records; ``registre digitize`` (the real CLI,
a subprocess) reaches it only through :class:`faultproxy.FaultProxy`, which
fails a seeded ≥ 30 % of the requests with 500, 503, SlowDown, resets before
and after the store applied the request, bodies cut half-way, and stalls.
Retries (botocore's, then Prefect's per chunk) must carry every good page to
``done`` exactly once, with no partial record.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from badinputs import good_pages
from faultproxy import FAULT_KINDS, FaultProxy
from runkit import audit, put_pages, run_registre

from flows.storage import S3Storage

pytestmark = pytest.mark.usefixtures("prefect_harness")

#: Share of S3 requests the proxy fails in the suite (the benchmark goes higher).
FAULT_RATE = 0.35
SEED = 7
#: The mixed faults of the main test: every kind, cut response bodies included
#: (also staged on their own in test_cut_response_bodies_are_read_again).
MIXED_KINDS = FAULT_KINDS


def digitize_args(src: str, out: str, model: Path, *extra: str) -> list[str]:
    return ["digitize", src, "--out", out, "--model", str(model), "--no-lm", "--chunk-size", "2", *extra]


def aws_env(endpoint: str, attempts: int = 8) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        # Seconds, not the default 2 s doubling, between Prefect's chunk retries: the suite stays short.
        "REGISTRE_RETRY_BACKOFF_S": "0.2",
        # At a 35 % fault rate, 5 attempts (the default) leave each request a 0.5 % chance to fail
        # them all; 8 keeps the Prefect task retries above botocore's rare, and the test short.
        "REGISTRE_STORAGE_ATTEMPTS": str(attempts),
    }


def test_digitize_completes_through_a_faulty_s3(
    s3_env, bucket: str, tiny_model: Path, registre_env: dict[str, str]
) -> None:
    pages = good_pages(10)
    first = next(iter(pages.values()))
    bad = {"bad/truncated.jpg": first[: len(first) // 2], "bad/empty.png": b""}
    put_pages(s3_env.endpoint, bucket, "faults/scans", {**pages, **bad})
    src, out = f"s3://{bucket}/faults/scans", f"s3://{bucket}/faults/records"

    proxy = FaultProxy(s3_env.endpoint, rate=FAULT_RATE, seed=SEED, kinds=MIXED_KINDS, stall_s=1.0, min_rate=0.3)
    with proxy:
        env = {**registre_env, **aws_env(proxy.url)}
        run = run_registre(digitize_args(src, out, tiny_model), env, timeout=240)
        stats = proxy.stats
        print(
            f"\nfault run: {stats.requests} requests, {stats.injected} faults ({stats.rate:.0%}): "
            f"{dict(stats.faults)} {dict(stats.by_method)}"
        )
        assert stats.rate >= 0.30 and set(stats.faults) == set(MIXED_KINDS), stats
        # Exit 1: the two bad pages failed; every other page is done (0 would hide them, 2 is a crash).
        assert run.returncode == 1, run.stderr[-3000:]
        assert "failures by reason" in run.stderr and "task:" not in run.stderr, run.stderr[-3000:]

        # Read back directly from the store, not through the proxy.
        dst = S3Storage(bucket, "faults/records", addressing_style="path")
        sources = {**pages, **bad}
        result = audit(dst, sources, good=set(pages))
        assert (result.lost, result.duplicated, result.partial, result.stray) == ([], [], [], [])
        assert result.done == len(pages) and result.unmerged_parts == 0
        assert set(result.failed) == set(bad)
        assert "truncated" in result.failed["bad/truncated.jpg"] and "empty" in result.failed["bad/empty.png"]
        # Every record object is whole: its listed size is what a GET returns, and it parses (audit above).
        sizes = {
            o["Key"]: o["Size"]
            for o in s3_env.client().list_objects_v2(Bucket=bucket, Prefix="faults/records/")["Contents"]
        }
        for obj, size in sizes.items():
            assert len(dst.get(obj[len("faults/records/") :])) == size

        # A rerun through the same faults redoes nothing: no page gets a second done state.
        before = stats.requests
        again = run_registre(digitize_args(src, out, tiny_model, "--only-failed"), env, timeout=240)
        assert again.returncode == 1, again.stderr[-3000:]
        print(f"rerun: {proxy.stats.requests - before} requests, fault rate so far {proxy.stats.rate:.0%}")
    after = audit(dst, sources, good=set(pages))
    assert (after.lost, after.duplicated, after.partial) == ([], [], [])
    assert after.done_entries == result.done_entries


def test_cut_response_bodies_are_read_again(
    s3_env, bucket: str, tiny_model: Path, registre_env: dict[str, str]
) -> None:
    """Every first answer with a body is cut half-way (connection reset): a second read must be made."""
    pages = good_pages(4)
    put_pages(s3_env.endpoint, bucket, "cut/scans", pages)
    src, out = f"s3://{bucket}/cut/scans", f"s3://{bucket}/cut/records"
    with FaultProxy(s3_env.endpoint, rate=1.0, kinds=("truncate",), attempts=1) as proxy:
        run = run_registre(digitize_args(src, out, tiny_model), {**registre_env, **aws_env(proxy.url)}, timeout=180)
    assert proxy.stats.faults["truncate"] >= len(pages)
    assert run.returncode == 0, run.stderr[-3000:]
    result = audit(S3Storage(bucket, "cut/records", addressing_style="path"), pages)
    assert (result.done, result.lost, result.duplicated, result.partial) == (len(pages), [], [], [])


def test_a_manifest_part_written_but_unacknowledged_is_not_counted_twice(
    s3_env, bucket: str, tiny_model: Path, registre_env: dict[str, str]
) -> None:
    """The first manifest part PUT is applied by the store but every answer to it is lost.

    botocore gives up after its attempts, Prefect retries the chunk, and the
    chunk's pages get done again under a new part: the manifest must still say
    each page is done once.
    """
    pages = good_pages(4)
    put_pages(s3_env.endpoint, bucket, "lost/scans", pages)
    src, out = f"s3://{bucket}/lost/scans", f"s3://{bucket}/lost/records"
    # botocore's max_attempts counts retries, not sends: storage_attempts=2 makes 3 sends.
    proxy = FaultProxy(
        s3_env.endpoint, rate=1.0, kinds=("lost",), only=r"^PUT .*/manifest\.parts/", attempts=3, targets=1
    )
    with proxy:
        env = {**registre_env, **aws_env(proxy.url, attempts=2)}
        run = run_registre(digitize_args(src, out, tiny_model), env, timeout=180)
    assert proxy.stats.faults["lost"] == 3
    assert run.returncode == 0, run.stderr[-3000:]
    result = audit(S3Storage(bucket, "lost/records", addressing_style="path"), pages)
    assert (result.done, result.lost, result.partial) == (len(pages), [], [])
    assert result.duplicated == [], f"pages with two done entries: {result.duplicated}"
