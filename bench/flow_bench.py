"""End-to-end benchmark of the digitize-archive flow: pages/min, time per stage, Prefect overhead, memory.

Usage: python bench/flow_bench.py [--pages 501] [--quick] [--no-lm] [--cores 2] [--chunk-size 20]

The example pages are repeated (symlinks) to make a run of ``--pages`` pages,
digitized by the real flow on Prefect's temporary local server, with the
shipped model and names LM, on ``--cores`` CPU cores. The flow process's
memory (with its decoder pool) is sampled as chunks finish, to show that it
does not grow with the number of pages. Prefect's overhead is measured by
running chunks of ``--direct-pages`` pages through the same code with a plain
thread pool and no Prefect, once just before the flow and once just after, and
comparing the flow's seconds per page with the mean of the two: on a shared
virtual machine two runs minutes apart differ by as much as the overhead, and
the bracket shows that spread instead of hiding it.

Targets (issue 6): Prefect overhead ≤ 5 % of the run; memory flat; ≥ 10 pages/min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

import psutil  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "pages"
MB = 1024 * 1024


def limit_cores(n: int) -> list[int]:
    """Pin this process (and the processes it starts) to its first ``n`` CPUs; return them."""
    cpus = sorted(os.sched_getaffinity(0))[:n]
    os.sched_setaffinity(0, cpus)
    return cpus


def make_source(folder: Path, pages: int) -> list[str]:
    """Fill ``folder`` with ``pages`` symlinks cycling over the example pages; return the names."""
    examples = sorted(EXAMPLES.glob("*.jpg"))
    names = []
    for i in range(pages):
        src = examples[i % len(examples)]
        name = f"p{i:05d}-{src.name}"
        (folder / name).symlink_to(src)
        names.append(name)
    return names


#: Seconds between memory samples during the flow. A sample reads /proc/<pid>/smaps of every process of the
#: run: ~35 ms of CPU with the recognizer and the decoder pool loaded, more as the flow grows. At 0.5 s this
#: benchmark's own sampling took 5-8 % of 2 cores during the flow only, which read as Prefect overhead.
SAMPLE_EVERY_S = 5.0


def tree_memory(proc: psutil.Process) -> tuple[float, float]:
    """Return (MB of this process and its workers, MB of the Prefect server subprocess), as PSS.

    PSS shares each page among the processes mapping it: the decoder pool's
    forked copies of the LM are not counted twice as RSS would.
    """

    def pss(p: psutil.Process) -> int:
        try:
            return p.memory_full_info().pss
        except (psutil.AccessDenied, AttributeError):
            return p.memory_info().rss

    own, server = pss(proc), 0
    for child in proc.children(recursive=True):
        try:
            serving = is_server(child)
            mem = pss(child)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if serving:
            server += mem
        else:
            own += mem
    return own / MB, server / MB


def tree_cpu_seconds(proc: psutil.Process) -> float:
    """Return CPU seconds (user + system) used so far by this process and its live and reaped children."""
    t = proc.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in proc.children(recursive=True):
        try:
            if is_server(child):
                continue
            c = child.cpu_times()
            total += c.user + c.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def is_server(child: psutil.Process) -> bool:
    """Return True for the temporary Prefect server (and its uvicorn workers) among the flow's children."""
    cmd = " ".join(child.cmdline())
    return "uvicorn" in cmd or ("prefect" in cmd and "server" in cmd)


def server_cpu_seconds(proc: psutil.Process) -> dict[int, float]:
    """Return CPU seconds (user + system) so far of each live Prefect server process under ``proc``, by pid."""
    out = {}
    for child in proc.children(recursive=True):
        try:
            if is_server(child):
                t = child.cpu_times()
                out[child.pid] = t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def run_flow(src: Path, out: Path, settings, total: int) -> dict:
    """Run the flow with memory sampling; return its summary, wall time and memory samples."""
    from flows.digitize import Progress, add_progress_listener, remove_progress_listener, run_digitize

    proc = psutil.Process()
    samples: list[tuple[int, float, float]] = []  # (pages finished, flow MB, server MB)
    peak = {"flow": 0.0, "server": 0.0}
    # The temporary server lives and dies inside run_digitize: its CPU time is read while it runs. Its seconds
    # at the first and the last page's progress bracket the work (start-up and shutdown excluded).
    server_cpu: dict[int, float] = {}
    server_cpu_at: dict[str, float] = {}
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(SAMPLE_EVERY_S):
            server_cpu.update(server_cpu_seconds(proc))
            own, server = tree_memory(proc)
            peak["flow"] = max(peak["flow"], own)
            peak["server"] = max(peak["server"], server)

    def on_progress(p: Progress) -> None:
        server_cpu.update(server_cpu_seconds(proc))
        server_cpu_at.setdefault("first", sum(server_cpu.values()))
        server_cpu_at["last"] = sum(server_cpu.values())
        own, server = tree_memory(proc)
        samples.append((p.done + p.failed, own, server))
        if p.total:
            print(
                f"  {time.strftime('%H:%M:%S')} {p.done + p.failed}/{p.total} pages,"
                f" flow {own:.0f} MB, server {server:.0f} MB",
                file=sys.stderr,
                flush=True,
            )

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    add_progress_listener(on_progress)
    t0, cpu0 = time.perf_counter(), tree_cpu_seconds(proc)
    try:
        summary = run_digitize(str(src), str(out), settings)
    finally:
        wall = time.perf_counter() - t0
        cpu = tree_cpu_seconds(proc) - cpu0
        stop.set()
        remove_progress_listener(on_progress)
        print(file=sys.stderr)
    return {
        "summary": summary,
        "wall": wall,
        "cpu": cpu,
        "samples": samples,
        "peak": peak,
        "server_cpu": sum(server_cpu.values()),
        "server_cpu_during_pages": server_cpu_at.get("last", 0.0) - server_cpu_at.get("first", 0.0),
    }


def run_direct(src: Path, out: Path, settings, names: list[str]) -> float:
    """Return seconds to process ``names`` with the flow's chunk code on a plain thread pool (no Prefect)."""
    from flows.digitize import plan_chunks
    from flows.pipeline import ChunkJob, PageJob, get_engine, run_chunk
    from flows.records import assign_page_ids
    from flows.serializers import parse_formats
    from flows.storage import LocalStorage

    engine = get_engine(settings)
    ids = assign_page_ids(names)
    size = max(1, min(settings.chunk_size, -(-len(names) // settings.task_workers)))  # the flow's rule
    sizes = {n: (src / n).stat().st_size for n in names}
    jobs = [
        ChunkJob(
            LocalStorage(src),
            LocalStorage(out),
            [PageJob(k, ids[k]) for k in keys],
            settings,
            parse_formats(settings.formats),
            "direct",
            n,
        )
        for n, keys in enumerate(plan_chunks(names, sizes, -(-len(names) // size)))
    ]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(settings.task_workers) as pool:
        list(pool.map(lambda job: run_chunk(job, engine), jobs))
    return time.perf_counter() - t0


def slope_per_100(samples: list[tuple[int, float, float]], column: int) -> float:
    """Return the least-squares growth in MB per 100 pages over the second half of the run."""
    half = [s for s in samples if s[0] >= samples[-1][0] / 2] if samples else []
    if len(half) < 3:
        return 0.0
    xs = [s[0] for s in half]
    ys = [s[column] for s in half]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 100 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def halves_flat(samples: list[tuple[int, float, float]]) -> bool:
    """Return True when the flow's memory in the second half of the run is not above the first half's."""
    end = samples[-1][0] if samples else 0
    first = [s[1] for s in samples if 0 < s[0] <= end / 2]
    second = [s[1] for s in samples if s[0] > end / 2]
    if not first or not second:
        return True
    return sum(second) / len(second) <= 1.1 * sum(first) / len(first)


def main() -> int:
    """Run the benchmark and print its table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=501, help="pages in the run (repeats of the examples)")
    ap.add_argument("--quick", action="store_true", help="12 pages, 6 for the no-Prefect comparison")
    ap.add_argument(
        "--direct-pages", type=int, default=40, help="pages of each no-Prefect comparison run (before and after)"
    )
    ap.add_argument("--cores", type=int, default=2, help="CPU cores to use")
    ap.add_argument("--chunk-size", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2, help="chunk tasks at once (thread task runner)")
    ap.add_argument("--no-lm", action="store_true", help="greedy decoding instead of the names LM")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if args.quick:
        args.pages, args.direct_pages = 12, 6
    cpus = limit_cores(args.cores)
    load_start = os.getloadavg()[0]
    import torch

    torch.set_num_threads(len(cpus))
    from flows.settings import Settings

    settings = Settings(
        chunk_size=args.chunk_size,
        task_workers=args.workers,
        use_lm=not args.no_lm,
        formats=["json", "alto", "page"],
        decode_workers=len(cpus),
    )
    with tempfile.TemporaryDirectory(prefix="flow-bench-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "src").mkdir()
        names = make_source(tmp_path / "src", args.pages)
        t0 = time.perf_counter()
        from flows.pipeline import warm_up

        warm_up(settings)
        load_s = time.perf_counter() - t0
        direct_names = names[: args.direct_pages]
        (tmp_path / "src-direct").mkdir()
        for n in direct_names:
            (tmp_path / "src-direct" / n).symlink_to(EXAMPLES / n.split("-", 1)[1])
        direct_s = [run_direct(tmp_path / "src-direct", tmp_path / "out-direct-before", settings, direct_names)]
        flow = run_flow(tmp_path / "src", tmp_path / "out", settings, args.pages)
        direct_s.append(run_direct(tmp_path / "src-direct", tmp_path / "out-direct-after", settings, direct_names))

    s = flow["summary"]
    pages = s.done + s.failed
    per_page_flow = s.seconds / max(pages, 1)
    per_page_direct_runs = [d / max(len(direct_names), 1) for d in direct_s]
    per_page_direct = sum(per_page_direct_runs) / len(per_page_direct_runs)
    overhead = max(per_page_flow - per_page_direct, 0.0) / per_page_flow if per_page_flow else 0.0
    startup = flow["wall"] - s.seconds
    body = sum(s.stage_seconds.values()) or 1.0
    samples = flow["samples"]
    at = {
        f: next((x for x in samples if x[0] >= f * pages), samples[-1] if samples else (0, 0, 0))
        for f in (0.1, 0.5, 1.0)
    }
    slope = slope_per_100(samples, 1)
    cpu_per_page = flow["cpu"] / max(pages, 1)
    figures = {
        "machine": describe_machine(),
        "load_average_1min_start_end": [round(load_start, 1), round(os.getloadavg()[0], 1)],
        "cores_used": len(cpus),
        "decoder": s.decoder,
        "model": s.model_version,
        "pages": pages,
        "failed": s.failed,
        "chunks": s.chunks,
        "chunk_size": args.chunk_size,
        "flow_seconds": round(s.seconds, 1),
        "pages_per_min": round(60 * pages / s.seconds, 2) if s.seconds else 0.0,
        # The flow's own figure: from the first page started to the last finished.
        "pages_per_min_first_to_last_page": round(s.pages_per_minute, 2),
        "stage_seconds_per_page": {k: round(v / max(pages, 1), 3) for k, v in s.stage_seconds.items()},
        "stage_share": {k: round(v / body, 3) for k, v in s.stage_seconds.items()},
        "cpu_seconds_per_page": round(cpu_per_page, 2),
        "pages_per_min_if_cores_were_idle": round(60 * len(cpus) / cpu_per_page, 1) if cpu_per_page else 0.0,
        "startup_seconds": round(startup + load_s, 1),
        "direct_pages": len(direct_names),
        "direct_seconds_per_page_before_after": [round(d, 3) for d in per_page_direct_runs],
        "direct_seconds_per_page": round(per_page_direct, 3),
        "flow_seconds_per_page": round(per_page_flow, 3),
        "prefect_overhead_share": round(overhead, 4),
        "prefect_overhead_per_chunk_s": round(max(per_page_flow - per_page_direct, 0.0) * pages / max(s.chunks, 1), 3),
        "pss_mb_at_10_50_100pct": [round(at[f][1]) for f in (0.1, 0.5, 1.0)],
        "pss_peak_mb": round(flow["peak"]["flow"]),
        "pss_growth_mb_per_100_pages": round(slope, 1) if pages >= 100 else "n/a (< 100 pages)",
        "server_cpu_seconds_whole_run": round(flow["server_cpu"], 1),
        "server_cpu_seconds_first_to_last_page": round(flow["server_cpu_during_pages"], 1),
        "server_pss_mb_at_10_50_100pct": [round(at[f][2]) for f in (0.1, 0.5, 1.0)],
    }
    width = max(len(k) for k in figures)
    print(f"digitize-archive flow benchmark — {figures['machine']}, {len(cpus)} cores used")
    for k, v in figures.items():
        print(f"  {k:<{width}}  {v}")
    targets = {
        "prefect overhead <= 5 %": overhead <= 0.05,
        ">= 10 pages/min": figures["pages_per_min"] >= 10,
        # In-flight chunks make the samples swing by hundreds of MB: judge the trend, not one sample.
        "memory flat (2nd half mean <= 1st half mean + 10 %)": halves_flat(samples) if pages >= 100 else None,
    }
    for name, ok in targets.items():
        verdict = "not measured" if ok is None else "met" if ok else "NOT met"
        print(f"  target {name:<52} {verdict}")
    if args.json:
        args.json.write_text(json.dumps({**figures, "targets": targets}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
