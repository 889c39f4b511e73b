"""The Prefect flow ``digitize-archive``: page scans under SRC to records and a manifest under DST.

DAG: list page keys and their sizes (a task, retried on transient storage
errors) → take the destination's lease (a task too; :mod:`flows.lease`: one
run per DST) → plan
against ``DST/manifest.jsonl`` (skip pages done by the same model) → chunks of
about equal work (bytes of the source objects, :func:`plan_chunks`; about
``chunk_size`` pages each), each one ``digitize-chunk`` task run that loads,
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

Failed pages and chunk retries are logged through Prefect's run logger at
WARNING (page id, source key, reason), so the run's logs filtered by level
find them; a chunk with failed pages says so in its state's message, and the
flow's final message counts failures by kind. SIGTERM or SIGINT stops the run
cleanly (:func:`stop_on_signals`): no new chunk, chunks in flight end at the
next page, the manifest parts written are merged, pages not written stay to
do, and the run ends Cancelled.

With ``adapt`` (``registre digitize --adapt``), planning is per register (each folder of scans),
lazily, as the window of chunks needs work: an ``adapt-to-register`` task reads a few of the
register's pages, fine-tunes the recognizer on its own readings
(:func:`flows.adaptation.model_for_register`) or reuses the weights an earlier run stored in
``DST/adapted/``, and the register's chunks carry that model (its pages done with it are skipped
as usual); the next register adapts while the chunks of the one before run.

With no ``PREFECT_API_URL``, Prefect runs the flow on a temporary local server
(the CLI starts its own, :mod:`flows.local_server`).
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

import contextlib
import logging
import queue
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
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
from prefect.states import Cancelled, Completed, Failed, State
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.tasks import Task, exponential_backoff

from flows.adaptation import AdaptStopped, RegisterModel, group_by_register, model_for_register
from flows.lease import DestinationBusy, DestinationLease
from flows.manifest import DONE, FAILED, ManifestEntry, consolidate, latest_by_source, plan_pages, read_manifest
from flows.manifest import write_part as write_manifest_part
from flows.names import NamesSummary, update_names_index
from flows.pipeline import (
    STAGES,
    ChunkJob,
    ChunkResult,
    PageJob,
    clear_stop,
    request_stop,
    run_chunk,
    stop_requested,
)
from flows.records import assign_page_ids
from flows.serializers import parse_formats
from flows.settings import Settings, decoder_label
from flows.storage import IMAGE_EXTENSIONS, Storage, is_transient, open_storage

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
    flow_run_id: str = ""
    flow_run_url: str = ""  # the run's page in the Prefect UI, when PREFECT_UI_URL is known
    stopping: str = ""  # the signal (or lost lease) that stopped the run, once one did
    stage: str = ""  # what the run does before its pages, in words ("adapting to register X (1/3)")


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
    flow_run_url: str = ""
    # Wall time from the first page started to the last page finished (start-up, listing,
    # planning and the final merge excluded), so runs of one archive compare.
    work_seconds: float = 0.0
    stopped: str = ""  # "SIGTERM", "SIGINT" or a lost lease: the run ended early
    left: int = 0  # pages planned but not attempted (a stopped run)
    lease_takeover: str = ""  # the stale lease this run took over, in words
    # The names index (issue 23): entries and persons of the pages indexed by this run, pages in DST/names.sqlite.
    entries: int = 0
    persons: int = 0
    indexed_pages: int = 0
    index_error: str = ""
    # With --adapt: each register's model (flows.adaptation.RegisterModel.to_dict) and the seconds adapting took.
    registers: list[dict[str, Any]] = field(default_factory=list)
    adapt_seconds: float = 0.0

    @property
    def pages_per_minute(self) -> float:
        """Return pages attempted per minute, from the first page started to the last page finished."""
        return 60.0 * (self.done + self.failed) / self.work_seconds if self.work_seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Return True when no page of the run failed."""
        return self.failed == 0

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-able data."""
        return {**asdict(self), "pages_per_minute": round(self.pages_per_minute, 2)}


def failure_counts(reasons: Counter[str] | dict[str, int]) -> str:
    """Return failure kinds with their page counts, most frequent first: "image: TruncatedImage ×2, ..."."""
    return ", ".join(f"{kind} ×{n}" for kind, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))


#: Work a page costs whatever its size, in bytes of source object: reading, validating and
#: recording even an empty file (two broken files then weigh like one small scan).
PAGE_FLOOR_BYTES = 32 * 1024


def plan_chunks(keys: list[str], sizes: dict[str, int], chunks: int) -> list[list[str]]:
    """Return ``keys`` cut, in order, into at most ``chunks`` chunks of about equal bytes of source object.

    Work per page grows with its scan's size, so chunks balanced by bytes
    finish together where chunks of equal page counts do not (three scans in
    one chunk, two broken files in the other). Each page goes to the chunk
    where the middle of its byte range falls, so a chunk's bytes differ from
    the mean by less than one page's. Empty chunks (a page larger than the
    mean) are dropped.
    """
    if not keys or chunks < 1:
        return []
    weights = [max(sizes.get(k, 0), 0) + PAGE_FLOOR_BYTES for k in keys]
    total = float(sum(weights))
    out: list[list[str]] = [[] for _ in range(chunks)]
    before = 0
    for key, weight in zip(keys, weights, strict=True):
        out[min(int(chunks * (before + weight / 2) / total), chunks - 1)].append(key)
        before += weight
    return [c for c in out if c]


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
        # The source key (what the user listed), and the reason's kind only: the full
        # message is in the manifest, and long ones made the UI's table unreadable.
        row = {
            "source": entry.source_key,
            "status": entry.status,
            "lines": entry.lines,
            "mean_confidence": entry.mean_confidence if entry.mean_confidence is not None else "",
            "seconds": round(entry.seconds, 2),
            "reason": reason_kind(entry.reason) if entry.reason else "",
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


#: Options of every task that talks to storage: retried with backoff after a transient storage error only
#: (the flow sets the retries and backoff of ``Settings`` with ``with_options``), no persisted result, no cache.
RETRIED_ON_TRANSIENT: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_on_transient,
    "persist_result": False,
    "cache_policy": NO_CACHE,
}


@task(
    name="list-pages",
    **RETRIED_ON_TRANSIENT,
)
def list_pages(src: Storage) -> list[tuple[str, int]]:
    """Return (key, bytes) of every page image under the source (all listing pages, filtered by extension)."""
    return list(src.list_sizes(IMAGE_EXTENSIONS))


@task(
    name="digitize-chunk",
    task_run_name="chunk-{job.index}",
    # The manifest is the cache: done pages are skipped before any task is made (no result, no cache).
    **RETRIED_ON_TRANSIENT,
)
def digitize_chunk(job: ChunkJob) -> ChunkResult:
    """Process one chunk of pages (load, segment, recognize, decode, write) and return its entries.

    Failed pages are logged at WARNING; a chunk with any ends in a Completed
    state whose message counts them (named ``AllPagesFailed`` when none was
    done), so the chunk that held them is found from the task runs.
    """
    logger = get_run_logger()
    try:
        result = run_chunk(job)
    except Exception as exc:
        if is_transient(exc):
            attempt = prefect_runtime.task_run.run_count or 1
            shown = ", ".join(p.page_id for p in job.pages[:5]) + (", ..." if len(job.pages) > 5 else "")
            logger.warning(
                "chunk %d (%d pages: %s): transient storage error on attempt %d, retried while attempts are left: %s",
                job.index,
                len(job.pages),
                shown,
                attempt,
                exc,
            )
        raise
    failed = [e for e in result.entries if e.status == FAILED]
    for e in failed:
        logger.warning("page %s (%s) failed: %s", e.page_id, e.source_key, e.reason)
    if not failed:
        return result
    kinds = failure_counts(Counter(reason_kind(e.reason) for e in failed))
    if len(failed) == len(job.pages):
        return Completed(  # type: ignore[return-value]
            name="AllPagesFailed", message=f"all {len(failed)} pages failed: {kinds}", data=result
        )
    return Completed(message=f"{len(failed)} of {len(job.pages)} pages failed: {kinds}", data=result)  # type: ignore[return-value]


@task(
    name="adapt-to-register",
    task_run_name="adapt-{register}",
    **RETRIED_ON_TRANSIENT,
)
def adapt_to_register(
    register: str,
    keys: list[str],
    ids: dict[str, str],
    src: Storage,
    dst: Storage,
    settings: Settings,
    workdir: str,
    base_version: str,
    force: bool,
) -> RegisterModel:
    """Return the model a register's pages are read with: adapted to its own readings (``--adapt``), or the base one."""
    logger = get_run_logger()
    return model_for_register(
        register, keys, ids, src, settings, Path(workdir), base_version, dst, force=force, say=logger.info
    )


@task(
    name="take-lease",
    **RETRIED_ON_TRANSIENT,
)
def take_lease(lease: DestinationLease) -> DestinationLease:
    """Return the lease once taken (its heartbeat running); ends Failed, with no traceback, if another run has it."""
    try:
        lease.acquire()
    except DestinationBusy as exc:
        # Not an error of this run's code: a clear message in the UI and for the CLI.
        return Failed(message=str(exc), data=exc)  # type: ignore[return-value]
    return lease


# The flow's own manifest reads and merges are tasks too, retried like the chunks: a
# store that fails a request more times than botocore retries it would otherwise
# stop the run. Merging is idempotent (entries carry attempt ids), so a retry is safe.
@task(
    name="read-manifest",
    **RETRIED_ON_TRANSIENT,
)
def read_latest(dst: Storage) -> dict[str, ManifestEntry]:
    """Return the last manifest entry of every page under the destination, by source key."""
    return latest_by_source(read_manifest(dst))


@task(
    name="merge-manifest",
    **RETRIED_ON_TRANSIENT,
)
def merge_manifest(dst: Storage) -> int:
    """Merge the manifest parts under the destination into its ``manifest.jsonl``; return the entries merged."""
    return consolidate(dst)


@task(
    name="index-names",
    **RETRIED_ON_TRANSIENT,
)
def index_names(dst: Storage, source: str) -> NamesSummary:
    """Bring ``DST/names.sqlite`` in line with the merged manifest; return the entries and persons indexed."""
    return update_names_index(dst, latest_by_source(read_manifest(dst)), source)


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
        *(
            [f"**Stopped by {summary.stopped}**: {summary.left} pages left to do; rerun the same command.", ""]
            if summary.stopped
            else []
        ),
        *([f"Took over a stale lease: {summary.lease_takeover}.", ""] if summary.lease_takeover else []),
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
        "",
        f"pages/min: pages attempted per minute from the first page started to the last page finished "
        f"({summary.work_seconds:.1f} s; start-up excluded). seconds: the whole run.",
        "",
        f"Register entries: {summary.entries}, persons: {summary.persons}, in the pages indexed by this run; "
        f"the names index `names.sqlite` holds {summary.indexed_pages} pages (`registre search`).",
        *([f"**Names index not updated**: {summary.index_error}"] if summary.index_error else []),
    ]
    if summary.registers:
        lines += [
            "",
            f"## Registers ({summary.adapt_seconds:.0f} s adapting)",
            "",
            "| register | model | adapted |",
            "| --- | --- | --- |",
        ]
        lines += [f"| `{r['register']}` | `{r['version']}` | {r['note'] or 'no'} |" for r in summary.registers]
    if summary.failures_by_reason:
        lines += ["", "## Failures by reason", "", "| reason | pages |", "| --- | ---: |"]
        for reason, n in sorted(summary.failures_by_reason.items(), key=lambda kv: -kv[1]):
            lines.append(f"| {reason.replace('|', '/')} | {n} |")
    return "\n".join(lines)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside, a first SIGTERM or SIGINT asks the run to stop cleanly; a second acts as the handler before.

    A scheduler or a Prefect worker cancelling a run sends SIGTERM: the run
    then takes no new chunk and its chunks end at the next page. Signals can
    only be handled in the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        if stop_requested():
            # Asked twice: stop at once, the way the process would have without us.
            for sig, old in previous.items():
                signal.signal(sig, old)
            signal.raise_signal(signum)
            return
        request_stop(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _run_url() -> str:
    """Return the flow run's page in the Prefect UI, or "" when no UI address is configured."""
    from prefect.settings import PREFECT_UI_URL

    return str(prefect_runtime.flow_run.ui_url or "") if PREFECT_UI_URL.value() else ""


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
    data) when any page failed, Cancelled when a signal stopped it. Raises
    :class:`flows.lease.DestinationBusy` when another run holds ``out``.
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
    summary.flow_run_url = _run_url()

    # Every task's retries: how many, and the first delay (doubling, with jitter).
    retried: dict[str, Any] = {
        "retries": settings.task_retries,
        "retry_delay_seconds": exponential_backoff(backoff_factor=settings.retry_backoff_s),
    }
    listed = list_pages.with_options(**retried)(src_store)

    def lease_lost(why: str) -> None:
        logger.error("%s: stopping; the other run goes on", why)
        request_stop("lost lease")

    lease = DestinationLease(
        dst_store,
        run_id,
        summary.flow_run_id,
        heartbeat_s=settings.lease_heartbeat_s,
        stale_after_s=settings.lease_stale_s,
        on_lost=lease_lost,
    )
    taken = take_lease.with_options(**retried)(lease, return_state=True)
    if not taken.is_completed():
        exc = taken.result(raise_on_failure=False)
        if isinstance(exc, DestinationBusy):
            return Failed(message=str(exc), data=exc)  # type: ignore[return-value]
        raise exc if isinstance(exc, BaseException) else RuntimeError(f"could not take the lease: {taken.message}")
    if lease.took_over:
        summary.lease_takeover = lease.took_over
        logger.warning("took over the stale lease of %s", lease.took_over)
    try:
        with stop_on_signals():
            _digitize_pages(
                summary, settings, formats, src_store, dst_store, listed, retried, only_failed, force, logger
            )
    finally:
        lease.release()
        clear_stop()

    summary.seconds = time.perf_counter() - started
    summary.decoder = decoder_label(settings)
    create_markdown_artifact(_markdown(summary), key="digitize-summary", description="digitization summary")
    logger.info(
        "%d done, %d failed, %d skipped, %d left in %.1f s; %.1f pages/min from the first page to the last",
        summary.done,
        summary.failed,
        summary.skipped,
        summary.left,
        summary.seconds,
        summary.pages_per_minute,
    )
    kinds = f": {failure_counts(summary.failures_by_reason)}" if summary.failures_by_reason else ""
    if summary.stopped:
        message = (
            f"stopped by {summary.stopped}: {summary.done} pages done, {summary.failed} failed{kinds}, "
            f"{summary.left} left to do"
        )
        logger.warning(message)
        return Cancelled(message=message, data=summary)  # type: ignore[return-value]
    if summary.failed:
        return Failed(message=f"{summary.failed} of {summary.planned} pages failed{kinds}", data=summary)  # type: ignore[return-value]
    return Completed(message=f"{summary.done} pages done", data=summary)  # type: ignore[return-value]


def _digitize_pages(
    summary: DigitizeSummary,
    settings: Settings,
    formats: list[str],
    src_store: Storage,
    dst_store: Storage,
    listed: list[tuple[str, int]],
    retried: dict[str, Any],
    only_failed: bool,
    force: bool,
    logger: Any,
) -> None:
    """Plan and run the chunks of the listed pages (holding the destination's lease), filling in ``summary``."""
    sizes = dict(listed)
    keys = [k for k, _ in listed]
    ids = assign_page_ids(keys)
    summary.model_version = _model_version(settings)
    merge = merge_manifest.with_options(**retried)
    merge(dst_store)  # parts a killed run left behind
    latest = read_latest.with_options(**retried)(dst_store)
    summary.listed = len(keys)
    progress = Progress(total=0, flow_run_id=summary.flow_run_id, flow_run_url=summary.flow_run_url)
    if not settings.adapt:
        todo = plan_pages(keys, latest, summary.model_version, only_failed=only_failed, force=force)
        summary.planned, summary.skipped = len(todo), len(keys) - len(todo)
        logger.info(
            "%d pages under %s: %d to do, %d skipped (model %s)",
            len(keys),
            src_store.url,
            len(todo),
            summary.skipped,
            summary.model_version,
        )
        progress.total, progress.skipped = len(todo), summary.skipped
        _notify(progress)
        plans: Iterator[tuple[list[str], Settings, str]] = iter([(todo, settings, summary.model_version)])
        _run_chunks(summary, settings, formats, src_store, dst_store, ids, sizes, plans, retried, progress, logger)
        return
    groups = group_by_register(keys)
    # Until a register is reached, its pages not yet done count as to do (as if its stored weights are reused).
    estimates = {r: _pending(k, latest, only_failed, force) for r, k in groups.items()}
    progress.total = sum(estimates.values())
    _notify(progress)
    reached: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="registre-adapted-") as workdir:
        plans = _register_plans(
            summary, settings, src_store, dst_store, groups, estimates, reached, ids, latest, only_failed, force,
            retried, workdir, progress,
        )  # fmt: skip
        _run_chunks(summary, settings, formats, src_store, dst_store, ids, sizes, plans, retried, progress, logger)
    if stop_requested():
        # The registers not reached are left to do, as pages planned and not attempted are.
        summary.left += sum(n for r, n in estimates.items() if r not in reached)


def _pending(keys: list[str], latest: dict[str, ManifestEntry], only_failed: bool, force: bool) -> int:
    """Return how many of ``keys`` are to do whatever the model: not done yet (``only_failed``: failed)."""
    if force or only_failed:  # neither looks at the model version
        return len(plan_pages(keys, latest, "", only_failed=only_failed, force=force))
    return sum(1 for k in keys if k not in latest or latest[k].status != DONE)


def _register_plans(
    summary: DigitizeSummary,
    settings: Settings,
    src_store: Storage,
    dst_store: Storage,
    groups: dict[str, list[str]],
    estimates: dict[str, int],
    reached: set[str],
    ids: dict[str, str],
    latest: dict[str, ManifestEntry],
    only_failed: bool,
    force: bool,
    retried: dict[str, Any],
    workdir: str,
    progress: Progress,
) -> Iterator[tuple[list[str], Settings, str]]:
    """Yield, register by register (``--adapt``), the keys to do, the settings that read them and their model's version.

    Each register (folder of scans, ``groups``) gets its own model (:func:`adapt_to_register`) when
    its turn comes, so the pages of the first registers are read while the later ones wait: an
    archive of many registers does not adapt to all of them before its first page. The progress
    total starts from ``estimates`` and is corrected as registers are reached (added to ``reached``);
    ``summary`` counts their planned and skipped pages. A stop ends the planning.
    """
    adapt = adapt_to_register.with_options(**retried)
    for n, (register, register_keys) in enumerate(groups.items(), 1):
        if stop_requested():
            return
        if only_failed and not estimates[register]:
            reached.add(register)
            summary.skipped += len(register_keys)  # nothing of it failed: no model needed
            continue
        progress.stage = f"adapting to register {register or '.'} ({n}/{len(groups)})"
        _notify(progress)
        started = time.perf_counter()
        try:
            model = adapt(
                register,
                register_keys,
                {k: ids[k] for k in register_keys},
                src_store,
                dst_store,
                settings,
                workdir,
                summary.model_version,
                force,
            )
        except AdaptStopped:
            return
        except Exception as exc:  # noqa: BLE001 - a register that cannot be adapted to is read by the base model
            why = f"{exc.__class__.__name__}: {' '.join(str(exc).split())}"[:300]
            get_run_logger().error("register %s: not adapted (%s); read with the base model", register or ".", why)
            model = RegisterModel(register, str(settings.model), summary.model_version, False, f"not adapted: {why}")
        finally:
            summary.adapt_seconds += time.perf_counter() - started
        reached.add(register)
        summary.registers.append(model.to_dict())
        todo = plan_pages(register_keys, latest, model.version, only_failed=only_failed, force=force)
        summary.planned += len(todo)
        summary.skipped += len(register_keys) - len(todo)
        get_run_logger().info(
            "register %s: %d pages, %d to do, %d skipped (model %s)",
            register or ".",
            len(register_keys),
            len(todo),
            len(register_keys) - len(todo),
            model.version,
        )
        progress.total += len(todo) - estimates[register]
        progress.skipped, progress.stage = summary.skipped, ""
        _notify(progress)
        yield todo, settings.model_copy(update={"model": Path(model.model)}), model.version


def _run_chunks(
    summary: DigitizeSummary,
    settings: Settings,
    formats: list[str],
    src_store: Storage,
    dst_store: Storage,
    ids: dict[str, str],
    sizes: dict[str, int],
    plans: Iterator[tuple[list[str], Settings, str]],
    retried: dict[str, Any],
    progress: Progress,
    logger: Any,
) -> None:
    """Run the chunks of the planned pages through a bounded window of tasks, filling in ``summary``.

    ``plans`` yields (keys to do, the settings that read them, their model's version); it is read
    lazily, as the window needs chunks, so a register is planned (and adapted to) only when the
    chunks before it are submitted.
    """
    run_id = summary.run_id
    merge = merge_manifest.with_options(**retried)
    progress_id = create_progress_artifact(
        0.0, key="digitize-progress", description=f"pages of {src_store.url} processed"
    )
    chunk_task = digitize_chunk.with_options(**retried)
    workers = max(settings.dask_workers or settings.task_workers, 1)
    versions: list[str] = []  # each chunk's model version, by chunk index

    def chunk_jobs() -> Iterator[ChunkJob]:
        for keys_, plan_settings, version in plans:
            # Tens of pages per task for an archive, but a small run still spreads over every worker;
            # pages go to chunks by bytes, so chunks of big scans hold fewer pages than chunks of small
            # ones. A chunk holds pages of one register (one model).
            size = max(1, min(settings.chunk_size, -(-len(keys_) // workers)))
            for chunk in plan_chunks(keys_, sizes, -(-len(keys_) // size)) if keys_ else []:
                versions.append(version)
                pages = [PageJob(k, ids[k]) for k in chunk]
                yield ChunkJob(src_store, dst_store, pages, plan_settings, formats, run_id, len(versions) - 1)

    jobs = chunk_jobs()
    finished: queue.Queue = queue.Queue()
    in_flight: dict[Any, ChunkJob] = {}
    table = _PageTable(settings.table_rows)
    reasons: Counter[str] = Counter()
    last_merge = time.monotonic()
    first_started, last_finished = float("inf"), 0.0

    def submit_next() -> bool:
        if stop_requested():
            return False
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
            try:
                # A timeout, so that a stop request is seen while every chunk is still busy.
                future = finished.get(timeout=0.5)
            except queue.Empty:
                if stop_requested() and not progress.stopping:
                    progress.stopping = summary.stopped = _stop_name()
                    logger.warning(
                        "%s: stopping; no new chunk, the %d chunks in flight end at their next page",
                        progress.stopping,
                        len(in_flight),
                    )
                    _notify(progress)
                continue
            job = in_flight.pop(future)
            try:
                result: ChunkResult = future.result()
                entries = result.entries
                summary.body_seconds += result.body_seconds
                for k, v in result.stage_seconds.items():
                    summary.stage_seconds[k] = summary.stage_seconds.get(k, 0.0) + v
                if entries:
                    first_started = min(first_started, result.first_started)
                    last_finished = max(last_finished, result.last_finished)
            except Exception as exc:  # noqa: BLE001 - the chunk failed after its retries
                reason = f"task: {exc.__class__.__name__}: {' '.join(str(exc).split())}"[:500]
                logger.error("chunk %d failed after retries: %s", job.index, reason)
                entries = [
                    ManifestEntry(p.page_id, p.key, FAILED, reason, versions[job.index], run_id=run_id)
                    for p in job.pages
                ]
                for p in job.pages:
                    logger.warning("page %s (%s) failed: %s", p.page_id, p.key, reason)
                try:
                    write_manifest_part(dst_store, run_id, job.index, entries)
                except Exception:  # noqa: BLE001 - the store is down; the summary still counts them
                    logger.exception("could not record the failed chunk %d in the manifest", job.index)
            summary.chunks += 1
            record(entries)
            del future, entries
            progress.done, progress.failed = summary.done, summary.failed
            _notify(progress)
            update_progress_artifact(progress_id, 100.0 * (summary.done + summary.failed) / max(progress.total, 1))
            if time.monotonic() - last_merge > settings.manifest_flush_s:
                merge(dst_store)
                last_merge = time.monotonic()
            submit_next()
    finally:
        merge(dst_store)
    if not stop_requested():
        update_progress_artifact(progress_id, 100.0)  # also when every page was skipped

    if stop_requested():
        summary.stopped = summary.stopped or _stop_name()
        summary.left += summary.planned - summary.done - summary.failed
    summary.work_seconds = max(last_finished - first_started, 0.0) if last_finished else 0.0
    summary.failures_by_reason = dict(reasons)
    try:
        names = index_names.with_options(**retried)(dst_store, src_store.url)
        summary.entries, summary.persons, summary.indexed_pages = names.entries, names.persons, names.pages_total
        if names.sample:
            create_table_artifact(
                names.sample,
                key="digitize-names",
                description=f"persons found: the first {len(names.sample)} of {names.persons} "
                f"({names.entries} register entries in {names.indexed} pages)",
            )
    except Exception as exc:  # noqa: BLE001 - the records and manifest are written; the index can be rebuilt
        summary.index_error = f"{exc.__class__.__name__}: {' '.join(str(exc).split())}"[:300]
        logger.error("names index not updated: %s", summary.index_error)
    if table.rows:
        create_table_artifact(
            table.rows,
            key="digitize-pages",
            description="pages of this run by source key; reason kinds here, full reasons in DST/manifest.jsonl"
            + (f" ({table.omitted} more pages not listed)" if table.omitted else ""),
        )
    progress.finished = True
    _notify(progress)


def _stop_name() -> str:
    """Return what asked the run to stop (a signal's name, or "lost lease")."""
    from flows.pipeline import stop_reason

    return stop_reason() or "a stop request"


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
