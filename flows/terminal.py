"""``registre digitize`` in a terminal: a rich progress bar over the flow, then a summary and an exit code.

Without ``PREFECT_API_URL`` the command starts a temporary Prefect server
(:mod:`flows.local_server`) that ends with it, even when it is SIGKILLed.
SIGTERM or SIGINT stop the run cleanly (see :func:`flows.digitize.stop_on_signals`);
the command then prints what was done and exits with 128 + the signal's number.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from flows.settings import Settings

#: Exit codes: every page done; some page failed; the run could not start or stopped early.
#: A run stopped by a signal exits with 128 + the signal's number (143 for SIGTERM, 130 for SIGINT).
EXIT_OK, EXIT_PAGES_FAILED, EXIT_ERROR = 0, 1, 2


def exit_code_of_stop(stopped: str) -> int:
    """Return the exit code of a run stopped by ``stopped`` (a signal's name, or another reason)."""
    try:
        return 128 + signal.Signals[stopped].value
    except KeyError:
        return EXIT_ERROR


def digitize_in_terminal(
    src: str,
    out: str,
    settings: Settings,
    only_failed: bool = False,
    force: bool = False,
    verbose: bool = False,
) -> int:
    """Run the flow with a progress bar on stderr, print the summary; return the exit code."""
    console = Console(stderr=True)
    if only_failed and force:
        console.print("[red]registre: --only-failed and --force exclude each other[/red]")
        return EXIT_ERROR
    if not verbose:
        # Prefect's INFO lines would tear the progress bar; they still reach the server's UI.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    from flows.digitize import Progress as RunProgress
    from flows.digitize import add_progress_listener, remove_progress_listener, run_digitize, stop_on_signals
    from flows.lease import DestinationBusy
    from flows.serializers import parse_formats

    if not verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_quiet_prefect_info)

    try:
        settings = settings.model_copy(update={"formats": parse_formats(settings.formats)})
    except ValueError as exc:
        console.print(f"[red]registre: {exc}[/red]")
        return EXIT_ERROR

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal and not verbose,
    )
    task_id = bar.add_task("starting Prefect", total=None, failed=0)

    from prefect.settings import PREFECT_API_URL

    # From the environment or the active Prefect profile, as Prefect itself reads it.
    temporary = not PREFECT_API_URL.value()
    announced: list[str] = []

    def on_progress(p: RunProgress) -> None:
        if p.flow_run_id and not announced:
            announced.append(p.flow_run_id)
            console.print(_run_address(p.flow_run_id, p.flow_run_url, temporary), highlight=False)
        if p.stopping and len(announced) < 2:
            announced.append(p.stopping)
            console.print(
                f"[yellow]{p.stopping}: stopping; no new chunk, chunks in flight end at their next page "
                "(send it again to stop at once)[/yellow]"
            )
        bar.update(
            task_id,
            description=p.stage or ("digitizing" if not p.finished else "finished"),
            total=p.total,
            completed=p.done + p.failed,
            failed=p.failed,
        )

    add_progress_listener(on_progress)
    try:
        # Signals during start-up too: the run then starts no chunk and ends at once.
        with stop_on_signals(), bar:
            server = contextlib.nullcontext() if not temporary else _temporary_server()
            with server:
                summary = run_digitize(src, out, settings, only_failed=only_failed, force=force)
    except DestinationBusy as exc:
        console.print(f"[red]registre: {exc}[/red]", highlight=False)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - any error that stops the run is reported in one line
        console.print(f"[red]registre: digitize stopped: {exc.__class__.__name__}: {exc}[/red]")
        return EXIT_ERROR
    finally:
        remove_progress_listener(on_progress)
        from flows.pipeline import close_engines

        close_engines()

    _print_summary(console, summary, temporary)
    if summary.stopped:
        return exit_code_of_stop(summary.stopped)
    return EXIT_OK if summary.ok else EXIT_PAGES_FAILED


def _temporary_server() -> Any:
    from flows.local_server import temporary_server

    return temporary_server()


def _run_address(flow_run_id: str, url: str, temporary: bool) -> str:
    """Return the line naming the Prefect flow run: its UI address, or why there is none."""
    if temporary:
        return (
            f"Prefect flow run {flow_run_id} (on a temporary Prefect server that ends with this command; "
            "set PREFECT_API_URL to a Prefect server to follow runs in its UI)"
        )
    return f"Prefect flow run {flow_run_id}" + (f": {url}" if url else " (set PREFECT_UI_URL for its UI address)")


def _quiet_prefect_info(record: logging.LogRecord) -> bool:
    """Return False for Prefect's INFO chatter on the terminal (the server's UI still gets it)."""
    return record.levelno >= logging.WARNING or not record.name.startswith("prefect")


def _print_summary(console: Console, summary: Any, temporary: bool) -> None:
    table = Table(title=f"{summary.src} → {summary.out}", show_header=True)
    for col in ("listed", "skipped", "done", "failed", "lines", "pages/min", "seconds"):
        table.add_column(col, justify="right")
    table.add_row(
        str(summary.listed),
        str(summary.skipped),
        str(summary.done),
        str(summary.failed),
        str(summary.lines),
        f"{summary.pages_per_minute:.1f}",
        f"{summary.seconds:.1f}",
    )
    console.print(table)
    console.print(
        f"pages/min: from the first page started to the last page finished ({summary.work_seconds:.1f} s; "
        "start-up excluded); seconds: the whole flow run",
        highlight=False,
    )
    if summary.registers:
        adapted = sum(r["adapted"] for r in summary.registers)
        console.print(
            f"adapted to {adapted} of {len(summary.registers)} register(s) ({summary.adapt_seconds:.0f} s):",
            highlight=False,
        )
        for r in summary.registers[:20]:
            console.print(f"  {r['register']}: {r['note'] or 'base model'} ({r['version']})", highlight=False)
        if len(summary.registers) > 20:
            console.print(f"  ... and {len(summary.registers) - 20} more (the run's summary artifact lists them)")
    if summary.lease_takeover:
        console.print(f"[yellow]took over a stale lease: {summary.lease_takeover}[/yellow]", highlight=False)
    if summary.flow_run_id:
        console.print(_run_address(summary.flow_run_id, summary.flow_run_url, temporary), highlight=False)
    if summary.stopped:
        console.print(
            f"[yellow]stopped by {summary.stopped}: {summary.done} pages done, {summary.failed} failed, "
            f"{summary.left} left to do; rerun the same command to go on[/yellow]",
            highlight=False,
        )
    if summary.failures_by_reason:
        console.print("[red]failures by reason:[/red]")
        for reason, n in sorted(summary.failures_by_reason.items(), key=lambda kv: -kv[1]):
            console.print(f"  {n:6d}  {reason}")
        for ex in summary.failed_examples[:5]:
            console.print(f"  e.g. {ex['page']}: {ex['reason']}", markup=False, highlight=False)
        console.print(f"details: {summary.out.rstrip('/')}/manifest.jsonl; retry with --only-failed")
    sys.stderr.flush()
