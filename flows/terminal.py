"""``registre digitize`` in a terminal: a rich progress bar over the flow, then a summary and an exit code."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from flows.settings import Settings

#: Exit codes: every page done; some page failed; the run could not start or stopped early.
EXIT_OK, EXIT_PAGES_FAILED, EXIT_ERROR = 0, 1, 2


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
    from flows.digitize import add_progress_listener, remove_progress_listener, run_digitize
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

    def on_progress(p: RunProgress) -> None:
        bar.update(
            task_id,
            description="digitizing" if not p.finished else "finished",
            total=p.total,
            completed=p.done + p.failed,
            failed=p.failed,
        )

    add_progress_listener(on_progress)
    try:
        with bar:
            summary = run_digitize(src, out, settings, only_failed=only_failed, force=force)
    except Exception as exc:  # noqa: BLE001 - any error that stops the run is reported in one line
        console.print(f"[red]registre: digitize stopped: {exc.__class__.__name__}: {exc}[/red]")
        return EXIT_ERROR
    finally:
        remove_progress_listener(on_progress)
        from flows.pipeline import close_engines

        close_engines()

    _print_summary(console, summary)
    return EXIT_OK if summary.ok else EXIT_PAGES_FAILED


def _quiet_prefect_info(record: logging.LogRecord) -> bool:
    """Return False for Prefect's INFO chatter on the terminal (the server's UI still gets it)."""
    return record.levelno >= logging.WARNING or not record.name.startswith("prefect")


def _print_summary(console: Console, summary: Any) -> None:
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
    if summary.failures_by_reason:
        console.print("[red]failures by reason:[/red]")
        for reason, n in sorted(summary.failures_by_reason.items(), key=lambda kv: -kv[1]):
            console.print(f"  {n:6d}  {reason}")
        for ex in summary.failed_examples[:5]:
            console.print(f"  e.g. {ex['page']}: {ex['reason']}", markup=False, highlight=False)
        console.print(f"details: {summary.out.rstrip('/')}/manifest.jsonl; retry with --only-failed")
    sys.stderr.flush()
