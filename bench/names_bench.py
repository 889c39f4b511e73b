"""Benchmark of register entries, names and search (issue 23) on the LECTAUREP validation pages.

Reference, from the ground truth of each validation page (ocr/splits.toml):

* rows: the act numbers of the ground truth's number column (columns found
  from the printed header of the ground-truth lines); a row is found when an
  entry built from the *predicted* text starts at that act number's line;
* lines in the right row: on random-set-1 pages, whose transcribers tagged the
  first line of each act's names cell (``First_line``), a names line is in the
  right row when its entry starts at the tagged line above it;
* surnames: surname-like tokens of the names column: capitalized, in the INSEE
  surname list and not in the first-name list, not a register word (the
  shipped LM's lower-case vocabulary and a list of places) nor a title, not
  after a word that introduces a place (``à``, ``rue``, ``St``, ``(``), and
  written fewer than 5 times in the training transcriptions;
* dates: ground-truth date cells that parse to an ISO date (the readable ones),
  compared with the ISO date of the entry read from the predicted text; also
  on the entries whose month heading was read right (the year and month of a
  bare day come from it).

The distractor pages' lines get the median confidence of the lines read, so
their exact spellings do not outrank a page read by the recognizer only by
being transcribed.

Predicted text: ``registre eval GT_DIR --segmentation gt --predictions FILE``
(the shipped recognizer and names LM on the ground-truth line polygons), run
once and cached. The search index holds the validation pages as read plus
every training page of LECTAUREP (ground-truth text) as distractors; a surname
is found when a page of the top 10 results for it is its page.

Search time: a synthetic index of 100,000 pages (INSEE names, register-like
lines: about 15 persons and 30 lines per page), built once under /tmp.

Usage::

    registre eval VALDIR --segmentation gt --predictions /tmp/predictions.jsonl
    python bench/names_bench.py --predictions /tmp/predictions.jsonl [--synthetic-pages 100000]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rapidfuzz.distance import Levenshtein  # noqa: E402

from bench.machine import describe_machine  # noqa: E402
from ocr.corpus import DEFAULT_DATA, split_of  # noqa: E402
from ocr.groundtruth import read_alto  # noqa: E402
from registers.dates import is_month_header  # noqa: E402
from registers.index import IndexLine, NamesIndex, index_stats, search  # noqa: E402
from registers.keys import fold  # noqa: E402
from registers.layout import Entry, RegisterLine, build_entries  # noqa: E402
from registers.page import read_entries  # noqa: E402
from registers.persons import TITLES, Person, load_knowledge  # noqa: E402

LECTAUREP = DEFAULT_DATA / "lectaurep" / "train"
RESULTS = Path(__file__).resolve().parent / "results" / "names.md"
_WORD = re.compile(r"[A-ZÀ-Ý][a-zà-ÿA-ZÀ-Ý'^-]+")
#: Words after which a capitalized word names a place, not a person.
_PLACE_WORDS = frozenset(
    "à a rue r. place boulevard bd boul. avenue av. quai passage impasse cité villa allée st ste saint sainte "
    "sur sous les en dem^t demt dom. dom domicilié domiciliée demeurant siège".split()
)


def _box(polygon: list[tuple[int, int]]) -> tuple[int, int, int, int]:
    xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
    return min(xs), min(ys), max(xs), max(ys)


def load_pages() -> tuple[dict[str, tuple], dict[str, str]]:
    """Return {page id: (GroundTruthPage, split)} for every LECTAUREP page, and the splits."""
    pages, splits = {}, {}
    for xml in sorted(LECTAUREP.glob("*/*.xml")):
        page = read_alto(xml)
        pages[page.id] = page
        splits[page.id] = split_of(xml)
    return pages, splits


def training_counts(pages: dict, splits: dict) -> Counter:
    """Return how often each folded word is written in the training transcriptions."""
    counts: Counter = Counter()
    for pid, page in pages.items():
        if splits[pid] == "train":
            for ln in page.lines:
                counts.update(fold(w) for w in re.findall(r"[^\W\d_]+", ln.text))
    return counts


def reference_surnames(lines: list[RegisterLine], height: int, counts: Counter) -> list[tuple[str, str]]:
    """Return (line id, surname token) of the surname-like tokens of the ground truth's names column."""
    know = load_knowledge()
    entries, _ = build_entries(lines, height)
    out = []
    by_id = {ln.id: ln for ln in lines}
    for e in entries:
        cell = e.cell("names")
        for lid in cell.line_ids if cell else []:
            text = by_id[lid].text.replace("^", "")
            for m in _WORD.finditer(text):
                tok = m.group(0).strip("'-")
                before = text[: m.start()].split()
                prev = fold(before[-1]) if before else ""
                if (
                    len(tok) >= 3
                    and prev not in _PLACE_WORDS
                    and not prev.endswith("(")
                    and fold(tok) not in TITLES
                    and know.is_surname(tok)
                    and not know.is_firstname(tok)
                    and not know.is_common(tok)
                    and counts[fold(tok)] < 5
                    and tok != "XXX"
                ):
                    out.append((lid, tok))
    return out


def first_line_rows(page, lines: list[RegisterLine]) -> dict[str, str]:
    """Return {names line id: id of the tagged first line of its act} on pages tagged ``First_line``."""
    tagged = {ln.id for ln in page.lines if "First_line" in (ln.type or "")}
    return tagged


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--predictions", type=Path, default=Path("/tmp/i23-predictions-all.jsonl"))
    ap.add_argument("--synthetic-pages", type=int, default=100_000)
    ap.add_argument("--synthetic-index", type=Path, default=Path("/tmp/i23-synthetic-names.sqlite"))
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--synthetic-only", action="store_true", help="Only build (or time) the synthetic index.")
    args = ap.parse_args()
    if args.synthetic_only:
        print(json.dumps(synthetic_benchmark(args.synthetic_index, args.synthetic_pages), indent=1))
        return

    pages, splits = load_pages()
    counts = training_counts(pages, splits)
    predicted: dict[tuple[str, str], tuple[str, float]] = {}
    for line in args.predictions.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        predicted[(row["page"], row["line_id"])] = (row["text"], float(row.get("confidence", 1.0)))
    val = [pid for pid, s in splits.items() if s != "train" and any(k[0] == pid for k in predicted)]
    read_conf = statistics.median(c for _, c in predicted.values())

    index_path = Path("/tmp/i23-bench-names.sqlite")
    index_path.unlink(missing_ok=True)
    stats: dict[str, Counter] = defaultdict(Counter)
    know = load_knowledge()
    t0 = time.perf_counter()
    with NamesIndex(index_path) as index:
        for pid, page in pages.items():
            gt_lines = [RegisterLine(ln.id, _box(ln.polygon), ln.text) for ln in page.lines if len(ln.polygon) >= 2]
            if pid not in val:
                if splits[pid] == "train":  # distractors: training pages as transcribed
                    entries = read_entries(gt_lines, page.height, know)
                    for e in entries:
                        for p in e.persons:
                            p.confidence = min(p.confidence, read_conf)
                    index.replace_page(pid, [IndexLine(ln.id, ln.text, ln.box, read_conf) for ln in gt_lines], entries)
                continue
            split = splits[pid]
            pred_lines = [RegisterLine(ln.id, ln.box, *predicted.get((pid, ln.id), ("", 0.0))) for ln in gt_lines]
            pred_entries = read_entries(pred_lines, page.height, know)
            index.replace_page(pid, [IndexLine(ln.id, ln.text, ln.box, ln.confidence) for ln in pred_lines],
                               pred_entries)  # fmt: skip
            gt_entries = read_entries(gt_lines, page.height, know)
            s = stats[split]
            # Rows: the ground truth's act-number lines that start a predicted entry.
            pred_starts = {}
            for e in pred_entries:
                for role in ("number", "date"):
                    if e.cell(role):
                        pred_starts.setdefault(e.cell(role).line_ids[0], e)
            headings_right = all(
                predicted.get((pid, ln.id), ("",))[0].split() == ln.text.split()
                for ln in gt_lines
                if is_month_header(ln.text)
            )
            for e in gt_entries:
                start = (
                    e.cell("number") if e.cell("number") and re.search(r"\d", e.cell("number").text) else e.cell("date")
                )
                if start is None:
                    continue
                s["rows"] += 1
                found = next((pred_starts[i] for i in start.line_ids if i in pred_starts), None)
                s["rows_found"] += found is not None
                if e.date is not None and e.date.iso:
                    right = bool(found and found.date and found.date.iso == e.date.iso)
                    s["dates"] += 1
                    s["dates_right"] += right
                    if headings_right:
                        s["dates_heading_read"] += 1
                        s["dates_heading_read_right"] += right
            for e in gt_entries:
                if e.cell("date") is not None:
                    s["date_cells"] += 1
                    s["date_cells_parsed"] += bool(e.date and e.date.iso)
            # Lines in the right row, where the transcribers tagged each act's first names line.
            tagged = first_line_rows(page, gt_lines)
            if tagged:
                entry_of = {lid: n for n, e in enumerate(pred_entries) for lid in e.line_ids}
                by_id = {ln.id: ln for ln in gt_lines}
                ordered = sorted(tagged, key=lambda i: by_id[i].box[1])
                for gt_e in gt_entries:
                    cell = gt_e.cell("names")
                    for lid in cell.line_ids if cell else []:
                        above = [t for t in ordered if by_id[t].box[1] <= by_id[lid].cy]
                        if not above:
                            continue
                        # Right when the line's entry is the one holding its act's tagged first line.
                        s["tagged_lines"] += 1
                        s["tagged_right"] += lid in entry_of and entry_of[lid] == entry_of.get(above[-1])
            # Surnames: read exactly / within one edit (same line), found by search later.
            for lid, tok in reference_surnames(gt_lines, page.height, counts):
                text = predicted.get((pid, lid), ("", 0.0))[0]
                words = [w.strip(".,;:()'\"-^") for w in text.replace("^", "").split()]
                s["surnames"] += 1
                s["exact"] += tok in words
                s["one_edit"] += any(Levenshtein.distance(tok.lower(), w.lower()) <= 1 for w in words)
                stats[split + ":queries"][f"{pid}\t{tok}"] += 1
    build_s = time.perf_counter() - t0

    search_times = []
    for split in ("val-seen", "val-unseen"):
        s = stats[split]
        for key in stats[split + ":queries"]:
            pid, tok = key.split("\t")
            t = time.perf_counter()
            found = search(index_path, tok, limit=10)
            search_times.append(time.perf_counter() - t)
            s["found_top10"] += any(m.page_id == pid for m in found)
            s["queries_run"] += 1
        # Each query stands for its token mentions: count them all.
        s["found_top10_mentions"] = sum(
            n for key, n in stats[split + ":queries"].items()
            if any(m.page_id == key.split("\t")[0] for m in search(index_path, key.split("\t")[1], limit=10))
        )  # fmt: skip

    synth = synthetic_benchmark(args.synthetic_index, args.synthetic_pages)
    write_report(args.out, stats, synth, build_s, statistics.median(search_times), index_stats(index_path), len(val))


# --- synthetic index --------------------------------------------------------------------------------


def synthetic_benchmark(path: Path, n_pages: int) -> dict:
    """Build (once) a synthetic index of ``n_pages`` pages and time searches on it, in-process and by the CLI."""
    know = load_knowledge()
    surnames = sorted(k for k, c in know.classes.items() if "N" in c and k.isalpha() and len(k) >= 4)
    firstnames = sorted(k for k, c in know.classes.items() if "P" in c and k.isalpha())
    rng = random.Random(23)
    built_s = 0.0
    if not path.exists() or index_stats(path)["pages"] != n_pages:
        path.unlink(missing_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        t0 = time.perf_counter()
        # Common surnames recur, as in an archive: draw from a Zipf-like head of the list.
        weights = [1.0 / (1 + i) ** 0.6 for i in range(len(surnames))]
        streets = ["rue de Rivoli", "rue Saint Honoré", "boulevard Voltaire", "rue du Bac", "place Vendôme"]
        natures = ["vente", "procuration", "quittance", "notoriété", "obligation", "inventaire", "testament"]
        with NamesIndex(tmp) as index:
            for p in range(n_pages):
                names = rng.choices(surnames, weights=weights, k=15)
                lines, entries = [], []
                for k in range(15):
                    sur, first = names[k].capitalize(), rng.choice(firstnames).capitalize()
                    y = 300 + 150 * k
                    text = f"{sur} (par Mr {first}) demt à Paris, {rng.choice(streets)}, {rng.randint(1, 99)}"
                    lid = f"l{k:02d}"
                    lines.append(IndexLine(lid, text, (1000, y, 1700, y + 60), 0.9))
                    lines.append(IndexLine(f"n{k:02d}", str(100 + k), (350, y, 420, y + 60), 0.9))
                    person = Person(sur, first, "M.", "Paris", 0.9, 0, len(sur), lid, (1000, y, 1200, y + 60))
                    entries.append(Entry(k, (350, y, 1900, y + 120), [lid], [], str(100 + k), None, "",
                                         rng.choice(natures), [person]))  # fmt: skip
                index.replace_page(f"synthetic__{p:06d}", lines, entries, f"synthetic/{p:06d}.jpg", "a", "m")
                if p % 10_000 == 9_999:
                    index.db.commit()
                    print(f"{p + 1} synthetic pages", file=sys.stderr)
        built_s = time.perf_counter() - t0
        with NamesIndex(tmp) as index:
            index.set_meta("synthetic_built_s", f"{built_s:.1f}")
        tmp.replace(path)
    else:
        import sqlite3

        db = sqlite3.connect(path)
        row = db.execute("SELECT value FROM meta WHERE key = 'synthetic_built_s'").fetchone()
        db.close()
        built_s = float(row[0]) if row else 0.0
    queries = [s.capitalize() for s in rng.sample(surnames, 40)]
    queries += [q[:2] + q[3:] for q in queries[:20]]  # a letter dropped: fuzzy
    queries += ["Lefebvre", "Dupont", "Jean Martin", "Ardilouze"]
    cold = subprocess_search_times(path, queries[:5])
    t0 = time.perf_counter()
    search(path, queries[0])  # loads the vocabulary once, as a long-lived process would
    first = time.perf_counter() - t0
    warm = []
    for q in queries:
        t = time.perf_counter()
        search(path, q, limit=10)
        warm.append(time.perf_counter() - t)
    return {
        "pages": n_pages,
        "stats": index_stats(path),
        "bytes": path.stat().st_size,
        "built_s": built_s,
        "first_s": first,
        "warm_median_s": statistics.median(warm),
        "warm_max_s": max(warm),
        "cli_s": cold,
        "queries": len(queries),
    }


def subprocess_search_times(path: Path, queries: list[str]) -> list[float]:
    """Return the wall time of ``registre search`` processes (Python start, import, vocabulary load, query)."""
    folder = path.parent / "i23-synthetic-dst"
    folder.mkdir(exist_ok=True)
    link = folder / "names.sqlite"
    if not link.exists():
        link.symlink_to(path)
    registre = Path(sys.executable).parent / "registre"
    out = []
    for q in queries:
        t = time.perf_counter()
        subprocess.run([str(registre), "search", str(folder), q, "--limit", "10"], capture_output=True, check=False)
        out.append(time.perf_counter() - t)
    return out


# --- report -------------------------------------------------------------------------------------------


def _pct(a: float, b: float) -> str:
    return f"{100.0 * a / b:.1f} %" if b else "–"


def write_report(out: Path, stats: dict, synth: dict, build_s: float, search_med: float, ix: dict, n_val: int) -> None:
    seen, unseen = stats["val-seen"], stats["val-unseen"]
    both = seen + unseen

    def row(label: str, num: str, den: str, target: str = "") -> tuple[str, str, str, str, str]:
        cells = [_pct(st[num], st[den]) for st in (seen, unseen)]
        return (label, *cells, _pct(seen[num] + unseen[num], seen[den] + unseen[den]), target)

    rows = [
        ("surname tokens (reference)", str(seen["surnames"]), str(unseen["surnames"]), str(both["surnames"]), ""),
        row("read exactly", "exact", "surnames"),
        row("within one edit", "one_edit", "surnames"),
        row("right page in search's top 10", "found_top10_mentions", "surnames", "≥ 90 % seen, ≥ 75 % unseen"),
        row("rows found / rows in ground truth", "rows_found", "rows", "≥ 90 %"),
        row("names lines in the right row (First_line-tagged pages)", "tagged_right", "tagged_lines"),
        row("readable dates parsed right (ISO equal to the ground truth's)", "dates_right", "dates", "≥ 95 %"),
        row(
            "  the same, on pages whose month heading was read right", "dates_heading_read_right", "dates_heading_read"
        ),
        row("ground-truth date cells that parse to an ISO date", "date_cells_parsed", "date_cells"),
    ]
    lines = [
        "# Register entries, names and search (issue 23)",
        "",
        f"`python bench/names_bench.py` on {datetime.now(UTC):%Y-%m-%d}, {describe_machine()}.",
        "",
        f"{n_val} LECTAUREP validation pages (ocr/splits.toml), text read by the shipped recognizer and names LM on "
        "the ground-truth line polygons (`registre eval --segmentation gt --predictions`); reference from the "
        "ground truth (see the script's docstring). Search index: the validation pages as read plus "
        f"every LECTAUREP training page as transcribed ({ix['pages']} pages, {ix['persons']} persons, "
        f"{ix['terms']} terms; built in {build_s:.1f} s); median search {1000 * search_med:.0f} ms.",
        "",
        "| measure | seen hands | unseen hands | all | target |",
        "| --- | ---: | ---: | ---: | --- |",
        *[f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows],
        "",
        f"Rows: {seen['rows']} seen, {unseen['rows']} unseen; readable dates: {seen['dates']} seen, "
        f"{unseen['dates']} unseen.",
        "",
        "## Search time on a synthetic index",
        "",
        f"{synth['pages']:,} synthetic pages ({synth['stats']['persons']:,} persons, "
        f"{synth['stats']['lines']:,} lines, "
        f"{synth['stats']['terms']:,} terms; {synth['bytes'] / 2**20:.0f} MiB"
        + (f"; built in {synth['built_s'] / 60:.1f} min" if synth["built_s"] else "")
        + "), INSEE surnames drawn with a Zipf-like weight so common names recur.",
        "",
        "| | seconds |",
        "| --- | ---: |",
        f"| `registre search DST QUERY` as a command (start-up, vocabulary load, query), median of "
        f"{len(synth['cli_s'])} | {statistics.median(synth['cli_s']):.2f} |",
        f"| first query of a process (loads the term vocabulary) | {synth['first_s']:.2f} |",
        f"| each further query, median of {synth['queries']} (exact, one letter dropped, two words) "
        f"| {synth['warm_median_s']:.3f} |",
        f"| slowest further query | {synth['warm_max_s']:.3f} |",
    ]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
