"""The Prefect flow ``digitize-archive``: page scans under SRC to records and a manifest under DST.

DAG: list page keys (a task, retried on transient storage errors) → plan
against ``DST/manifest.jsonl`` (skip pages done by the same model) → chunks of
``chunk_size`` pages, each one ``digitize-chunk`` task run that loads,
validates, segments and crops its pages, recognizes all their lines in one
batched call, decodes them, writes the records and then the chunk's manifest
part (:func:`flows.pipeline.run_chunk`). Tasks get keys and return small
entries, never images. Every task (the listing, the chunks, and the flow's
reads and merges of the manifest) is retried with exponential backoff and
jitter only when it failed on a transient storage error.

Chunks are submitted through a bounded window (a few per worker), so memory
stays flat however many pages the archive holds: finished chunks are folded
into running totals and dropped. As chunks finish, the flow updates a progress
artifact and the terminal listeners (the CLI's rich bar); at the end it merges
the manifest and publishes a table of pages and a markdown summary.

With no ``PREFECT_API_URL``, Prefect runs the flow on a temporary local server.
The task runner is a thread pool by default, or ``prefect-dask``'s
DaskTaskRunner on an existing cluster (``dask_address``) or a local one of
``dask_workers`` processes.
"""

# ruff: noqa: E402 - Prefect reads these environment variables when it is imported.
from __future__ import annotations

import os

# Before Prefect is imported: no telemetry heartbeat (it logs "database is locked" on the
# temporary server), and time for the temporary server's first start on a busy machine.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import logging
import queue
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import prefect.runtime as prefect_runtime
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import Completed, Failed, State
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.tasks import Task, exponential_backoff

from flows.manifest import DONE, FAILED, ManifestEntry, consolidate, latest_by_source, plan_pages, read_manifest
from flows.manifest import write_part as write_manifest_part
from flows.pipeline import STAGES, ChunkJob, ChunkResult, PageJob, run_chunk
from flows.records import assign_page_ids
from flows.serializers import parse_formats
from flows.settings import Settings
from flows.storage import Storage, is_transient, open_storage

log = logging.getLogger(__name__)


# --- progress listeners (the CLI's terminal bar) ----------------------------------------------


@dataclass
class Progress:
    """Where a run stands: pages planned, done and failed so far, and whether it has finished."""

    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    finished: bool = False


ProgressListener = Callable[[Progress], None]
_LISTENERS: list[ProgressListener] = []


def add_progress_listener(listener: ProgressListener) -> None:
    """Call ``listener`` in the flow's process whenever a chunk finishes (and at start and end)."""
    _LISTENERS.append(listener)


def remove_progress_listener(listener: ProgressListener) -> None:
    """Stop calling ``listener``."""
    if listener in _LISTENERS:
        _LISTENERS.remove(listener)


def _notify(progress: Progress) -> None:
    for listener in list(_LISTENERS):
        try:
            listener(progress)
        except Exception:  # noqa: BLE001 - a display problem must not stop the run
            log.debug("progress listener failed", exc_info=True)


# --- summary -------------------------------------------------------------------------------------


@dataclass
class DigitizeSummary:
    """The outcome of a run: page counts, failures by reason, speed and time per stage."""

    src: str
    out: str
    run_id: str
    listed: int = 0
    planned: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    chunks: int = 0
    lines: int = 0
    seconds: float = 0.0
    body_seconds: float = 0.0  # summed over chunk task bodies
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    failed_examples: list[dict[str, str]] = field(default_factory=list)  # a few (page, reason), for the terminal
    model_version: str = ""
    decoder: str = ""
    flow_run_id: str = ""

    @property
    def pages_per_minute(self) -> float:
        """Return pages attempted per minute of wall time."""
        return 60.0 * (self.done + self.failed) / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Return True when no page of the run failed."""
        return self.failed == 0

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-able data."""
        return {**asdict(self), "pages_per_minute": round(self.pages_per_minute, 2)}


def reason_kind(reason: str | None) -> str:
    """Return the category of a failure reason: its stage and exception type ("image: TruncatedImage")."""
    if not reason:
        return "unknown"
    parts = reason.split(": ")
    return ": ".join(parts[:2]) if len(parts) > 2 else parts[0]


@dataclass
class _PageTable:
    """At most ``limit`` page rows for the table artifact, failures kept in preference to successes."""

    limit: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    omitted: int = 0

    def add(self, entry: ManifestEntry) -> None:
        row = {
            "page": entry.page_id,
            "status": entry.status,
            "lines": entry.lines,
            "mean_confidence": entry.mean_confidence if entry.mean_confidence is not None else "",
            "seconds": round(entry.seconds, 2),
            "reason": entry.reason or "",
        }
        if len(self.rows) < self.limit:
            self.rows.append(row)
            return
        self.omitted += 1
        if entry.status == FAILED:
            # Replace a successful row, if any is left, so failures are all listed first.
            for i in range(len(self.rows) - 1, -1, -1):
                if self.rows[i]["status"] == DONE:
                    self.rows[i] = row
                    return


# --- tasks ---------------------------------------------------------------------------------------


def retry_on_transient(task: Task[..., Any], task_run: TaskRun, state: State) -> bool:
    """Return True (retry) only when the task failed on a transient storage or network error."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception as err:  # noqa: BLE001 - the result itself could not be read
            exc = err
    return isinstance(exc, BaseException) and is_transient(exc)


@task(
    name="list-pages",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_on_transient,
    persist_result=False,
    cache_policy=NO_CACHE,
)
def list_pages(src: Storage) -> list[str]:
    """Return every page-image key under the source (all listing pages, filtered by extension)."""
    return list(src.list_keys())


@task(
    name="digitize-chunk",
    task_run_name="chunk-{job.index}",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_on_transient,
    # The manifest is the cache: done pages are skipped before any task is made.
    persist_result=False,
    cache_policy=NO_CACHE,
)
def digitize_chunk(job: ChunkJob) -> ChunkResult:
    """Process one chunk of pages (load, segment, recognize, decode, write) and return its entries."""
    return run_chunk(job)


# The flow's own manifest reads and merges are tasks too, retried like the chunks: a
# store that fails a request more times than botocore retries it would otherwise
# stop the run. Merging is idempotent (entries carry attempt ids), so a retry is safe.
@task(
    name="read-manifest",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_on_transient,
    persist_result=False,
    cache_policy=NO_CACHE,
)
def read_latest(dst: Storage) -> dict[str, ManifestEntry]:
    """Return the last manifest entry of every page under the destination, by source key."""
    return latest_by_source(read_manifest(dst))


@task(
    name="merge-manifest",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_on_transient,
    persist_result=False,
    cache_policy=NO_CACHE,
)
def merge_manifest(dst: Storage) -> int:
    """Merge the manifest parts under the destination into its ``manifest.jsonl``; return the entries merged."""
    return consolidate(dst)


# --- the flow ------------------------------------------------------------------------------------


def task_runner_for(settings: Settings) -> TaskRunner:
    """Return the task runner the settings ask for: an existing Dask cluster, a local one, or threads."""
    if settings.dask_address or settings.dask_workers:
        from prefect_dask import DaskTaskRunner

        if settings.dask_address:
            return DaskTaskRunner(address=settings.dask_address)
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": settings.dask_workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            }
        )
    return ThreadPoolTaskRunner(max_workers=settings.task_workers)


def _in_flight(settings: Settings) -> int:
    """Return how many chunks to keep submitted at once: two per worker, so none waits for work."""
    if settings.dask_address:
        return 64
    return 2 * max(settings.dask_workers or settings.task_workers, 1)


def _model_version(settings: Settings) -> str:
    """Return the version of the recognizer the tasks will load."""
    if settings.dask_address or settings.dask_workers:
        # The tasks load it on the Dask workers; here only its version is needed.
        from ocr.checkpoint import load_model

        return load_model(settings.model, "cpu")[2]
    from flows.pipeline import get_engine

    return get_engine(settings).model_version


def _markdown(summary: DigitizeSummary) -> str:
    lines = [
        f"# Digitization of `{summary.src}`",
        "",
        f"Records and manifest in `{summary.out}` (run `{summary.run_id}`).",
        "",
        "| pages listed | skipped (already done) | done | failed | lines | pages/min | seconds |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {summary.listed} | {summary.skipped} | {summary.done} | {summary.failed} | {summary.lines} "
        f"| {summary.pages_per_minute:.1f} | {summary.seconds:.1f} |",
        "",
        f"Model `{summary.model_version}`, decoder `{summary.decoder}`.",
        "",
        "Seconds per stage (summed over pages): "
        + ", ".join(f"{k} {v:.1f}" for k, v in summary.stage_seconds.items())
        + f"; chunk task bodies {summary.body_seconds:.1f} s over {summary.chunks} chunks.",
    ]
    if summary.failures_by_reason:
        lines += ["", "## Failures by reason", "", "| reason | pages |", "| --- | ---: |"]
        for reason, n in sorted(summary.failures_by_reason.items(), key=lambda kv: -kv[1]):
            lines.append(f"| {reason.replace('|', '/')} | {n} |")
    return "\n".join(lines)


@flow(
    name="digitize-archive",
    flow_run_name="digitize-{src}",
    task_runner=task_runner_for(Settings()),
    persist_result=False,
    log_prints=False,
)
def digitize_archive(
    src: str,
    out: str,
    only_failed: bool = False,
    force: bool = False,
    options: dict[str, Any] | None = None,
) -> DigitizeSummary:
    """Digitize every page under ``src`` into ``out``; ``options`` are :class:`Settings` fields.

    Ends Completed when every page is done, Failed (with the same summary as
    data) when any page failed.
    """
    settings = Settings(**(options or {}))
    logger = get_run_logger()
    started = time.perf_counter()
    formats = parse_formats(settings.formats)
    storage_kw = {
        "endpoint_url": settings.s3_endpoint_url,
        "addressing_style": settings.s3_addressing_style,
        "max_attempts": settings.storage_attempts,
    }
    src_store, dst_store = open_storage(src, **storage_kw), open_storage(out, **storage_kw)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    summary = DigitizeSummary(src=src_store.url, out=dst_store.url, run_id=run_id)
    summary.flow_run_id = str(prefect_runtime.flow_run.id or "")

    # Every task's retries: how many, and the first delay (doubling, with jitter).
    retried: dict[str, Any] = {
        "retries": settings.task_retries,
        "retry_delay_seconds": exponential_backoff(backoff_factor=settings.retry_backoff_s),
    }
    keys = list_pages.with_options(**retried)(src_store)
    ids = assign_page_ids(keys)
    summary.model_version = _model_version(settings)
    merge = merge_manifest.with_options(**retried)
    merge(dst_store)  # parts a killed run left behind
    latest = read_latest.with_options(**retried)(dst_store)
    todo = plan_pages(keys, latest, summary.model_version, only_failed=only_failed, force=force)
    summary.listed, summary.planned = len(keys), len(todo)
    summary.skipped = len(keys) - len(todo)
    logger.info(
        "%d pages under %s: %d to do, %d skipped (model %s)",
        len(keys),
        src_store.url,
        len(todo),
        summary.skipped,
        summary.model_version,
    )
    progress = Progress(total=len(todo), skipped=summary.skipped)
    _notify(progress)
    progress_id = create_progress_artifact(
        0.0 if todo else 100.0, key="digitize-progress", description=f"pages of {src_store.url} processed"
    )

    chunk_task = digitize_chunk.with_options(**retried)
    # Tens of pages per task for an archive, but a small run still spreads over every worker.
    workers = max(settings.dask_workers or settings.task_workers, 1)
    size = max(1, min(settings.chunk_size, -(-len(todo) // workers)))
    jobs = (
        ChunkJob(src_store, dst_store, [PageJob(k, ids[k]) for k in todo[i : i + size]], settings, formats, run_id, n)
        for n, i in enumerate(range(0, len(todo), size))
    )
    finished: queue.Queue = queue.Queue()
    in_flight: dict[Any, ChunkJob] = {}
    table = _PageTable(settings.table_rows)
    reasons: Counter[str] = Counter()
    last_merge = time.monotonic()

    def submit_next() -> bool:
        job = next(jobs, None)
        if job is None:
            return False
        future = chunk_task.submit(job)
        in_flight[future] = job
        future.add_done_callback(finished.put)
        return True

    def record(entries: list[ManifestEntry]) -> None:
        for e in entries:
            table.add(e)
            if e.status == DONE:
                summary.done += 1
                summary.lines += e.lines
            else:
                summary.failed += 1
                reasons[reason_kind(e.reason)] += 1
                if len(summary.failed_examples) < 20:
                    summary.failed_examples.append({"page": e.source_key, "reason": e.reason or ""})

    try:
        for _ in range(_in_flight(settings)):
            if not submit_next():
                break
        while in_flight:
            future = finished.get()
            job = in_flight.pop(future)
            try:
                result: ChunkResult = future.result()
                entries = result.entries
                summary.body_seconds += result.body_seconds
                for k, v in result.stage_seconds.items():
                    summary.stage_seconds[k] = summary.stage_seconds.get(k, 0.0) + v
            except Exception as exc:  # noqa: BLE001 - the chunk failed after its retries
                reason = f"task: {exc.__class__.__name__}: {' '.join(str(exc).split())}"[:500]
                logger.error("chunk %d failed after retries: %s", job.index, reason)
                entries = [
                    ManifestEntry(p.page_id, p.key, FAILED, reason, summary.model_version, run_id=run_id)
                    for p in job.pages
                ]
                try:
                    write_manifest_part(dst_store, run_id, job.index, entries)
                except Exception:  # noqa: BLE001 - the store is down; the summary still counts them
                    logger.exception("could not record the failed chunk %d in the manifest", job.index)
            summary.chunks += 1
            record(entries)
            del future, entries
            progress.done, progress.failed = summary.done, summary.failed
            _notify(progress)
            update_progress_artifact(progress_id, 100.0 * (summary.done + summary.failed) / max(len(todo), 1))
            if time.monotonic() - last_merge > settings.manifest_flush_s:
                merge(dst_store)
                last_merge = time.monotonic()
            submit_next()
    finally:
        merge(dst_store)

    summary.seconds = time.perf_counter() - started
    summary.failures_by_reason = dict(reasons)
    summary.decoder = "lm" if settings.use_lm else "greedy"
    if table.rows:
        create_table_artifact(
            table.rows,
            key="digitize-pages",
            description=f"pages of this run ({table.omitted} more not listed)"
            if table.omitted
            else "pages of this run",
        )
    create_markdown_artifact(_markdown(summary), key="digitize-summary", description="digitization summary")
    progress.finished = True
    _notify(progress)
    logger.info(
        "%d done, %d failed, %d skipped in %.1f s (%.1f pages/min)",
        summary.done,
        summary.failed,
        summary.skipped,
        summary.seconds,
        summary.pages_per_minute,
    )
    if summary.failed:
        return Failed(message=f"{summary.failed} of {summary.planned} pages failed", data=summary)  # type: ignore[return-value]
    return Completed(message=f"{summary.done} pages done", data=summary)  # type: ignore[return-value]


def run_digitize(
    src: str,
    out: str,
    settings: Settings | None = None,
    only_failed: bool = False,
    force: bool = False,
) -> DigitizeSummary:
    """Run the flow in this process with the settings' task runner; return its summary (failed pages included)."""
    settings = settings or Settings()
    if not (settings.dask_address or settings.dask_workers):
        from flows.pipeline import warm_up

        warm_up(settings)  # the tasks run in this process: load the model and start the decoder pool once
    options = settings.model_dump(mode="json", exclude_unset=False)
    runnable = digitize_archive.with_options(task_runner=task_runner_for(settings))
    state = runnable(src, out, only_failed=only_failed, force=force, options=options, return_state=True)
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    return result
