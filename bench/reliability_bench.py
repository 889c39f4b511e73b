"""Reliability benchmark: bad inputs, injected S3 faults and killed runs at scale; pages lost and duplicated.

Usage: python bench/reliability_bench.py [--quick] [--pages 300] [--kills 10] [--fault-rates 0.3,0.4,0.5]
       [--fault-pages 60] [--no-truncation] [--chunk-size 10] [--storage-attempts N] [--model PATH]
       [--skip corpus,faults,kills] [--json FILE]

Three scenarios, each through the real ``registre digitize`` command (a
subprocess, ``--no-lm``) against a Prefect test server started here:

* corpus: every kind of bad input of ``tests/reliability/badinputs.py`` with
  good pages in one run; the outcome of each kind (done with N lines, or the
  failure reason) and whether it is the expected one;
* faults: scans and records on SeaweedFS on loopback, reached through the
  fault-injecting proxy of ``tests/reliability/faultproxy.py`` at each rate of
  ``--fault-rates`` (500, 503, SlowDown, resets before and after the store
  applied the request, bodies cut half-way, stalls; ``--no-truncation`` leaves
  out the cut bodies); a run that stops is rerun, as a user would, up to three
  times;
* kills: ``--pages`` small pages in a local folder; the run is SIGKILLed
  ``--kills`` times at seeded points and rerun to the end.

After each scenario the destination is read back (records parsed, hashed
against their sources, manifest counted): pages lost and duplicated must be 0.
The output ends with what was survived (each fault rate, each kill) and the
totals of pages lost and duplicated; the exit code is 0 only when both are 0.
The defaults take about 5 minutes on 2 busy cores.
The recognizer is a tiny random CRNN made here unless ``--model`` is given:
reliability does not depend on what the model reads, and it keeps runs short.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # loopback
sys.path.insert(0, str(HERE.parent / "tests" / "reliability"))

from badinputs import DONE, bad_inputs, good_pages  # noqa: E402
from faultproxy import FAULT_KINDS, FaultProxy  # noqa: E402
from loopback import object_store  # noqa: E402
from machine import describe_machine  # noqa: E402
from runkit import audit, cli_env, put_pages, run_registre, run_with_kills  # noqa: E402

from flows.manifest import DONE as DONE_STATE  # noqa: E402
from flows.records import assign_page_ids  # noqa: E402
from flows.storage import LocalStorage, S3Storage  # noqa: E402


def tiny_model(folder: Path) -> Path:
    """Write a small random CRNN (as the tests' fixture does) and return its path."""
    import torch

    from ocr.charset import Charset
    from ocr.checkpoint import save_model
    from ocr.model import CRNN, CRNNConfig

    torch.manual_seed(0)
    charset = Charset.build([])
    model = CRNN(CRNNConfig(num_classes=len(charset), channels=(8, 16, 16, 16), lstm_hidden=32, lstm_layers=1))
    path = folder / "tiny.pt"
    save_model(path, model, charset, "bench-tiny-1")
    return path


def write_folder(folder: Path, files: dict[str, bytes]) -> None:
    for key, data in files.items():
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(data)


def digitize_args(src: str, out: str, model: Path, chunk_size: int, *extra: str) -> list[str]:
    return ["digitize", src, "--out", out, "--model", str(model), "--no-lm", "--chunk-size", str(chunk_size), *extra]


# --- scenarios -----------------------------------------------------------------------------------


def corpus_scenario(work: Path, model: Path, env: dict[str, str], chunk_size: int) -> dict:
    """Run every bad-input kind with good pages; return per-kind outcomes and the run's totals."""
    cases = bad_inputs()
    good = good_pages(5)
    files = {**good, **{c.key: c.data for c in cases}}
    src, out = work / "corpus-src", work / "corpus-out"
    write_folder(src, files)
    started = time.perf_counter()
    run = run_registre(digitize_args(str(src), str(out), model, chunk_size, "--formats", "json,alto,page"), env, 600)
    seconds = time.perf_counter() - started
    result = audit(LocalStorage(out), files, good=set(good) | {c.key for c in cases if c.expect == DONE})
    latest = {e.source_key: e for e in result.entries}
    rows = []
    for case in cases:
        entry = latest.get(case.key)
        if entry is None:
            outcome, ok = "no manifest entry", False
        elif entry.status == DONE_STATE:
            record = result.records.get(case.key)
            lines = len(record.lines) if record else "?"
            outcome = f"done, {lines} lines"
            ok = case.expect == DONE and record is not None
            if ok and case.like is not None:
                ref = len(result.records[case.like].lines) if case.like in result.records else 0
                ok = ref > 0 and abs(len(record.lines) - ref) <= max(3, ref // 2)
                outcome += f" (same page as JPEG: {ref})"
            if ok and case.max_lines is not None:
                ok = len(record.lines) <= case.max_lines
        else:
            reason = entry.reason or ""
            # "stage: Type: key: message" -> "stage: Type: message" (the key is the row's file)
            parts = reason.split(": ", 3)
            shown = f"{parts[0]}: {parts[1]}: {parts[3]}" if len(parts) == 4 and parts[2] == case.key else reason
            outcome = "failed, " + shown[:100]
            ok = case.expect != DONE and case.reason.lower() in reason.lower() and reason.startswith("image: ")
        rows.append({"kind": case.kind, "expected": case.expect, "outcome": outcome, "as expected": ok})
    return {
        "rows": rows,
        "exit_code": run.returncode,
        "crashed": "Traceback" in run.stderr or run.returncode not in (0, 1),
        "good_done": sum(1 for k in good if k in result.records and k not in result.lost),
        "good": len(good),
        "lost": len(result.lost),
        "duplicated": len(result.duplicated),
        "partial": len(result.partial),
        "seconds": round(seconds, 1),
    }


def fault_scenario(
    endpoint: str,
    model: Path,
    env: dict[str, str],
    rate: float,
    kinds: tuple[str, ...],
    pages: int,
    chunk_size: int,
    seed: int,
    tag: str,
    storage_attempts: int | None,
) -> dict:
    """Digitize ``pages`` pages from and to S3 through a proxy failing ``rate`` of requests; return the figures."""
    good = good_pages(pages)
    first = next(iter(good.values()))
    bad = {"bad/truncated.jpg": first[: len(first) // 2], "bad/empty.png": b""}
    bucket = "reliability"
    put_pages(endpoint, bucket, f"{tag}/scans", {**good, **bad})
    src, out = f"s3://{bucket}/{tag}/scans", f"s3://{bucket}/{tag}/records"
    extra = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    extra["REGISTRE_RETRY_BACKOFF_S"] = "0.5"
    if storage_attempts:
        extra["REGISTRE_STORAGE_ATTEMPTS"] = str(storage_attempts)
    runs, exits, stops = 0, [], []
    started = time.perf_counter()
    with FaultProxy(endpoint, rate=rate, seed=seed, kinds=kinds, stall_s=1.0, min_rate=rate) as proxy:
        run_env = {**env, **extra, "AWS_ENDPOINT_URL": proxy.url}
        while runs < 4:
            runs += 1
            run = run_registre(digitize_args(src, out, model, chunk_size), run_env, 900)
            exits.append(run.returncode)
            if run.returncode != 2:  # 2: the run stopped before its end; a user reruns it
                break
            stops.append(stop_reason(run.stderr))
        stats = proxy.stats
    seconds = time.perf_counter() - started
    os.environ.update({k: v for k, v in extra.items() if k.startswith("AWS_")})  # to read the records back
    result = audit(
        S3Storage(bucket, f"{tag}/records", endpoint_url=endpoint, addressing_style="path"), {**good, **bad}, set(good)
    )
    return {
        "rate asked": rate,
        "kinds": ",".join(kinds),
        "requests": stats.requests,
        "faults": stats.injected,
        "fault rate": round(stats.rate, 3),
        "runs": runs,
        "exit codes": exits,
        "good done": f"{result.done}/{len(good)}",
        "lost": len(result.lost),
        "duplicated": len(result.duplicated),
        "partial": len(result.partial),
        "seconds": round(seconds, 1),
        "stopped by": "; ".join(stops) or "-",
    }


def stop_reason(stderr: str) -> str:
    """Return the exception a stopped run printed ("digitize stopped: ...", wrapped by the terminal), shortened."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    starts = [i for i, ln in enumerate(lines) if "digitize stopped:" in ln]
    if starts:
        text = " ".join(lines[starts[-1] : starts[-1] + 4]).split("digitize stopped:", 1)[1]
    else:
        errors = [ln for ln in lines if "Error" in ln or "error" in ln]
        text = (errors or lines or ["no output"])[-1]
    return " ".join(text.split())[:120]


def kill_scenario(
    work: Path, model: Path, env: dict[str, str], pages: int, kills: int, chunk_size: int, seed: int
) -> dict:
    """Kill a local run ``kills`` times at seeded points and rerun it to the end; return the figures."""
    files = good_pages(pages, width=300, height=160)
    src, out = work / "kill-src", work / "kill-out"
    write_folder(src, files)
    log = run_with_kills(
        digitize_args(str(src), str(out), model, chunk_size), env, out, kills, seed, pages, timeout=900
    )
    result = audit(LocalStorage(out), files)
    final_done = {e.source_key: e.attempt for e in result.entries if e.status == DONE_STATE}
    recomputed = {k for seen in log.done_after_kill for k, attempt in seen.items() if final_done.get(k) != attempt}
    recomputed |= {k for k, m in log.done_mtimes.items() if not (out / k).exists() or (out / k).stat().st_mtime_ns != m}
    ids = assign_page_ids(sorted(files))
    return {
        "pages": pages,
        "kills": log.kills,
        "records at each kill": log.records_at_kill,
        "runs": log.runs,
        "final exit": log.final.returncode if log.final else None,
        "done": result.done,
        "lost": len(result.lost),
        "duplicated": len(result.duplicated),
        "partial": len(result.partial),
        "done pages recomputed": len(recomputed),
        "temporary files left": len(result.temp_files),
        "unmerged parts": result.unmerged_parts,
        "records": sum(1 for k in ids.values() if (out / f"{k}.json").exists()),
        "seconds": round(log.seconds, 1),
    }


# --- the table -----------------------------------------------------------------------------------


def print_table(title: str, rows: list[dict]) -> None:
    if not rows:
        return
    cols = list(rows[0])
    cells = [[str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print(f"\n{title}")
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)) + " |")
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for row in cells:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |")


def _fault_survived(f: dict) -> bool:
    """Return True when a fault run ended with a summary (no crash) and every good page done, whole and once."""
    done, total = (int(x) for x in f["good done"].split("/"))
    return f["exit codes"][-1] in (0, 1) and done == total and f["lost"] == f["duplicated"] == f["partial"] == 0


def _kills_survived(k: dict) -> bool:
    """Return True when the killed run was finished by a rerun with every page done, whole and once."""
    return k["final exit"] == 0 and k["done"] == k["pages"] and k["lost"] == k["duplicated"] == k["partial"] == 0


def _reruns(runs: int) -> str:
    """Return " (after N reruns)" for a scenario that took more than one run, else ""."""
    return f" (after {runs - 1} rerun{'s' if runs > 2 else ''})" if runs > 1 else ""


def survival_lines(figures: dict) -> list[str]:
    """Return the one-line verdicts: bad-input kinds as expected, fault rates and kills survived."""
    out = []
    if "corpus" in figures:
        c = figures["corpus"]
        ok = sum(r["as expected"] for r in c["rows"])
        out.append(f"bad inputs: {ok}/{len(c['rows'])} kinds as expected, run crashed: {c['crashed']}")
    if "faults" in figures:
        runs = figures["faults"]
        survived = [f"{f['fault rate']:.0%}" + _reruns(f["runs"]) for f in runs if _fault_survived(f)]
        failed = [f"{f['fault rate']:.0%}" for f in runs if not _fault_survived(f)]
        out.append(
            f"fault rates survived (share of S3 requests failed): {', '.join(survived) or 'none'}"
            + (f"; NOT survived: {', '.join(failed)}" if failed else "")
        )
    if "kills" in figures:
        k = figures["kills"]
        verdict = "survived" if _kills_survived(k) else "NOT survived"
        out.append(
            f"kills: {k['kills']} SIGKILLs over {k['pages']} pages {verdict} "
            f"({k['runs']} runs, {k['done']}/{k['pages']} done, {k['done pages recomputed']} done pages recomputed)"
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="30 pages, 2 kills, one fault rate (0.3), 12 fault pages")
    ap.add_argument("--pages", type=int, default=300, help="pages of the killed-run scenario")
    ap.add_argument("--kills", type=int, default=10, help="SIGKILLs before the run may finish")
    ap.add_argument("--fault-rates", default="0.3,0.4,0.5", help="comma-separated shares of S3 requests to fail")
    ap.add_argument("--fault-pages", type=int, default=60, help="good pages of each fault run")
    ap.add_argument("--no-truncation", action="store_true", help="no response bodies cut half-way")
    ap.add_argument("--storage-attempts", type=int, default=None, help="REGISTRE_STORAGE_ATTEMPTS (default: as set)")
    ap.add_argument("--chunk-size", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--model", type=Path, default=None, help="recognizer (default: a tiny random CRNN)")
    ap.add_argument("--skip", default="", help="comma-separated scenarios to skip: corpus, faults, kills")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if args.quick:
        args.pages, args.kills, args.fault_rates, args.fault_pages = 30, 2, "0.3", 12
    rates = [float(r) for r in args.fault_rates.split(",") if r]
    kinds = tuple(k for k in FAULT_KINDS if k != "truncate") if args.no_truncation else FAULT_KINDS
    skip = set(args.skip.split(","))

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    figures: dict = {"machine": describe_machine()}
    with (
        tempfile.TemporaryDirectory(prefix="registre-reliability-") as tmp,
        prefect_test_harness(server_startup_timeout=120),
    ):
        work = Path(tmp)
        model = args.model or tiny_model(work)
        env = cli_env(PREFECT_API_URL.value())
        for name in [n for n in env if n.startswith(("AWS_", "REGISTRE_"))]:
            del env[name]
        if "corpus" not in skip:
            print("corpus run...", file=sys.stderr)
            figures["corpus"] = corpus_scenario(work, model, env, args.chunk_size)
        if "faults" not in skip:
            figures["faults"] = []
            with object_store("seaweedfs", work / "seaweed") as endpoint:
                for i, rate in enumerate(rates):
                    print(f"fault run at {rate:.0%}...", file=sys.stderr)
                    figures["faults"].append(
                        fault_scenario(
                            endpoint,
                            model,
                            env,
                            rate,
                            kinds,
                            args.fault_pages,
                            args.chunk_size,
                            args.seed + i,
                            f"r{i}",
                            args.storage_attempts,
                        )
                    )
        if "kills" not in skip:
            print(f"killed runs over {args.pages} pages...", file=sys.stderr)
            figures["kills"] = kill_scenario(work, model, env, args.pages, args.kills, args.chunk_size, args.seed)

    print(f"registre reliability benchmark — {figures['machine']}")
    if "corpus" in figures:
        c = figures["corpus"]
        print_table("Bad inputs (one `registre digitize` run, with good pages)", c["rows"])
        print(
            f"\ncorpus run: exit {c['exit_code']}, crashed: {c['crashed']}, "
            f"good pages done {c['good_done']}/{c['good']}, "
            f"lost {c['lost']}, duplicated {c['duplicated']}, partial {c['partial']}, {c['seconds']} s; "
            f"{sum(r['as expected'] for r in c['rows'])}/{len(c['rows'])} kinds as expected"
        )
    if "faults" in figures:
        print_table("Injected S3 faults (SeaweedFS through the fault proxy)", figures["faults"])
    if "kills" in figures:
        print_table("Killed runs (SIGKILL at seeded points, then rerun)", [figures["kills"]])
    print()
    for line in survival_lines(figures):
        print(line)
    lost = sum(f["lost"] for f in figures.get("faults", [])) + figures.get("kills", {}).get("lost", 0)
    lost += figures.get("corpus", {}).get("lost", 0)
    dup = sum(f["duplicated"] for f in figures.get("faults", [])) + figures.get("kills", {}).get("duplicated", 0)
    dup += figures.get("corpus", {}).get("duplicated", 0)
    print(f"pages lost: {lost} (must be 0); pages duplicated: {dup} (must be 0)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return 0 if lost == 0 and dup == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
