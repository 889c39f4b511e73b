"""``registre adapt``: the lines a register's adaptation trains on, and its one or two rounds.

Two sources of lines, either or both: pages an archivist corrected (ALTO or PAGE-XML beside
their scans: their own text, every 10th line held out to choose the weights), and the
register's other pages as the pipeline reads them (line finder, recognizer, names LM: no
correction). With both, the corrected lines adapt first, the adapted model reads the pages,
and a second round trains on both; the corrected held-out lines decide what is kept. With
pages only, the model trains on its own readings (self-training) and the last weights are
kept, since nothing measures them (bench/results/adapt.md has what each gains).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flows.evaluation import load_ground_truth_pages, read_lines
from flows.settings import Settings

log = logging.getLogger(__name__)

#: Pages of the register read for the model's own readings, spread over it (~150 lines each).
DEFAULT_MAX_PAGES = 10


@dataclass
class RegisterLines:
    """Lines to adapt on, with the pages they came from and the pages skipped (``{"page", "reason"}``)."""

    lines: list = field(default_factory=list)  # ocr.adapt.AdaptLine
    pages: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)


def corrected_lines(gt_dir: Path) -> RegisterLines:
    """Return the transcribed lines of the corrected pages under ``gt_dir`` (EvalError when there is none)."""
    from ocr.adapt import AdaptLine
    from ocr.charset import label_text
    from ocr.corpus import page_lines

    pages, skipped = load_ground_truth_pages(gt_dir)
    out = RegisterLines(skipped=skipped)
    for page, gray in pages:
        out.pages.append(page.id)
        texts = {ln.id: ln.text for ln in page.lines}
        for line_id, crop in page_lines(page, gray):
            text = label_text(texts[line_id] or "")
            if text:
                out.lines.append(AdaptLine(page.id, line_id, crop, text))
    return out


def spread(keys: list[str], count: int) -> list[str]:
    """Return ``count`` of ``keys`` evenly spread from the first to the last (all of them when fewer)."""
    if count >= len(keys):
        return list(keys)
    if count == 1:
        return [keys[len(keys) // 2]]
    return [keys[round(i * (len(keys) - 1) / (count - 1))] for i in range(count)]


def register_readings(
    src: str,
    settings: Settings,
    max_pages: int = DEFAULT_MAX_PAGES,
    exclude: set[str] = frozenset(),
    say: Callable[[str], None] = log.info,
) -> RegisterLines:
    """Return the lines of up to ``max_pages`` pages of ``src`` (folder or s3://), each labelled by its reading.

    Pages are found, segmented and cropped as ``registre digitize`` does, and read with the model and
    decoder of ``settings``. A page that cannot be read is skipped with its reason; page ids in
    ``exclude`` (the corrected pages) are not read.
    """
    from flows.records import assign_page_ids
    from flows.storage import IMAGE_EXTENSIONS, open_storage

    store = open_storage(src, endpoint_url=settings.s3_endpoint_url, addressing_style=settings.s3_addressing_style)
    ids = assign_page_ids(store.list_keys(IMAGE_EXTENSIONS))
    keys = sorted(k for k, page_id in ids.items() if page_id not in exclude)
    return read_pages(store, keys, ids, settings, max_pages, say)


def read_pages(
    store: object,
    keys: list[str],
    ids: dict[str, str],
    settings: Settings,
    max_pages: int = DEFAULT_MAX_PAGES,
    say: Callable[[str], None] = log.info,
) -> RegisterLines:
    """Return the lines of up to ``max_pages`` of ``keys`` (spread over them) in ``store``, labelled by their reading.

    ``ids`` gives each key's page id. Pages are read as :func:`register_readings` says.
    """
    from flows.pipeline import PageJob, failure_reason, prepare_page
    from flows.storage import StorageError
    from ocr.adapt import AdaptLine
    from segmentation.loading import ImageError

    keys = spread(sorted(keys), max_pages)
    out = RegisterLines()
    if not keys:
        return out
    crops, owners = [], []
    for n, key in enumerate(keys, 1):
        say(f"finding lines on page {n}/{len(keys)}: {key}")
        try:
            data = store.get(key)
        except StorageError as exc:
            out.skipped.append({"page": ids[key], "reason": failure_reason("read", exc)})
            continue
        try:
            prepared = prepare_page(data, PageJob(key, ids[key]), settings)
        except Exception as exc:  # noqa: BLE001 - a bad page is skipped with its reason, as digitize fails it
            stage = "image" if isinstance(exc, ImageError) else "segment"
            out.skipped.append({"page": ids[key], "reason": failure_reason(stage, exc)})
            continue
        out.pages.append(ids[key])
        for i, crop in enumerate(prepared.crops):
            if crop is not None:
                crops.append(crop)
                owners.append((ids[key], f"l{i}"))
    if crops:
        say(f"reading {len(crops)} lines of {len(out.pages)} page(s)")
        for (page, line_id), crop, reading in zip(owners, crops, read_lines(crops, settings), strict=True):
            if reading.text.strip():
                out.lines.append(AdaptLine(page, line_id, crop, reading.text))
    for skip in out.skipped:
        log.warning("page %s skipped: %s", skip["page"], skip["reason"])
    return out


# --- one adapted model per register, for `registre digitize --adapt` and `registre eval --adapt` ----------

#: Where ``digitize --adapt`` keeps each register's adapted weights under DST, so a rerun reads with them.
ADAPTED_PREFIX = "adapted"
#: Fewer lines read than this on a register's pages and it is read by the base model (too little to train on).
MIN_ADAPT_LINES = 40


def register_of(key: str) -> str:
    """Return the register a page belongs to: the folder (prefix) holding its scan, ``""`` at the top."""
    return key.rsplit("/", 1)[0] if "/" in key else ""


def group_by_register(keys: list[str]) -> dict[str, list[str]]:
    """Return the keys grouped by register (:func:`register_of`), registers and keys in the order of ``keys``."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(register_of(key), []).append(key)
    return groups


def adapted_key(register: str) -> str:
    """Return the DST key of a register's adapted weights: a safe name of its folder and a digest of it."""
    import hashlib

    from flows.records import page_id_for

    name = page_id_for(register) if register else "top"
    return f"{ADAPTED_PREFIX}/{name}-{hashlib.sha256(register.encode()).hexdigest()[:8]}.pt"


class AdaptStopped(RuntimeError):
    """A stop was asked for (a signal, a lost lease) while a register was being adapted to."""


@dataclass
class RegisterModel:
    """The recognizer a register is read with: its own adapted weights, or the base model's."""

    register: str
    model: str  # a local weights file
    version: str
    adapted: bool
    #: What happened, in words: adapted on how many lines, reused from an earlier run, or why not adapted.
    note: str

    def to_dict(self) -> dict:
        """Return the register's line of a summary."""
        return {"register": self.register or ".", "version": self.version, "adapted": self.adapted, "note": self.note}


def model_for_register(
    register: str,
    keys: list[str],
    ids: dict[str, str],
    src: object,
    settings: Settings,
    workdir: Path,
    base_version: str,
    dst: object | None = None,
    force: bool = False,
    say: Callable[[str], None] = log.info,
) -> RegisterModel:
    """Return the model to read a register's pages with: adapted to them by self-training, or the base model.

    Up to ``settings.adapt_pages`` of ``keys`` (in storage ``src``) are found and read as digitize reads
    them, and the base model (``settings.model``) fine-tunes on its own readings (``registre adapt
    --pages``). The weights are written under ``workdir`` and, with ``dst``, stored at
    :func:`adapted_key` there; a later run finds them and reuses them (unless ``force``) while they
    were adapted from the same base model, so its pages done with them are not read again. A register
    whose pages give fewer than :data:`MIN_ADAPT_LINES` lines keeps the base model. With
    ``settings.adapt_rounds`` above 1, each later round retrains the base model on the lines as the
    round before's model reads them. A stop request ends the adaptation (:class:`AdaptStopped`).
    """
    import time

    from flows.pipeline import stop_requested
    from flows.storage import StorageError
    from ocr.adapt import AdaptConfig, AdaptError, AdaptLine, adapt_register
    from ocr.checkpoint import ModelFileError, read_model_file

    base = RegisterModel(register, str(settings.model), base_version, False, "")
    key = adapted_key(register)
    local = workdir / key.replace("/", "__")
    if dst is not None and not force:
        try:
            data = dst.get(key) if dst.exists(key) else None
        except StorageError as exc:
            log.warning("%s: cannot read the register's adapted weights (%s); adapting again", key, exc)
            data = None
        if data is not None:
            local.write_bytes(data)
            try:
                meta = read_model_file(local)
            except ModelFileError as exc:
                log.warning("%s: %s; adapting again", key, exc)
                meta = {}
            if meta.get("adapted_from") == base_version:
                say(f"register {register or '.'}: reading with its adapted model of an earlier run")
                return RegisterModel(register, str(local), str(meta["version"]), True, "reused from an earlier run")
    started = time.monotonic()
    say(f"register {register or '.'}: reading {min(len(keys), settings.adapt_pages)} of its pages to adapt to")
    read = read_pages(src, keys, ids, settings, settings.adapt_pages, say)
    if stop_requested():
        raise AdaptStopped(f"register {register or '.'}: stopped before its adaptation")
    if len(read.lines) < MIN_ADAPT_LINES:
        base.note = (
            f"not adapted: {len(read.lines)} lines read on {len(read.pages)} page(s), fewer than {MIN_ADAPT_LINES}"
        )
        say(f"register {register or '.'}: {base.note}")
        return base
    cfg = AdaptConfig(steps=settings.adapt_steps)

    def progress(step: int, steps: int, lines_per_s: float) -> None:
        if stop_requested():
            raise AdaptStopped(f"register {register or '.'}: stopped at step {step}/{steps} of its adaptation")
        if step % 50 == 0 or step == steps:
            say(f"register {register or '.'}: adapting, step {step}/{steps} ({lines_per_s:.1f} lines/s)")

    lines = read.lines
    try:
        for n in range(1, settings.adapt_rounds + 1):
            if n > 1:
                # Another round: the adapted model reads the same lines again, and the base model trains on
                # those readings (better labels than its own).
                say(f"register {register or '.'}: round {n}, reading its lines with round {n - 1}'s model")
                again = read_lines([ln.image for ln in read.lines], settings.model_copy(update={"model": local}))
                lines = [
                    AdaptLine(ln.page, ln.line_id, ln.image, r.text)
                    for ln, r in zip(read.lines, again, strict=True)
                    if r.text.strip()
                ]
            result, _ = adapt_register([], local, Path(settings.model), cfg, _given(lines), progress, say)
    except AdaptError as exc:
        base.note = f"not adapted: {exc}"
        return base
    if dst is not None:
        dst.put(key, local.read_bytes())
    seconds = time.monotonic() - started
    rounds = f", {settings.adapt_rounds} rounds" if settings.adapt_rounds > 1 else ""
    note = f"adapted on {len(lines)} lines of {len(read.pages)} page(s){rounds} in {seconds:.0f} s"
    say(f"register {register or '.'}: {note}")
    return RegisterModel(register, str(local), result.version, True, note)


def _given(lines: list) -> Callable[[Path], list]:
    """Return a reader for ``ocr.adapt.adapt_register`` that returns lines already read, whatever the model."""
    return lambda _model: lines


@dataclass
class AdaptRun:
    """What ``registre adapt`` did: the kept result (``ocr.adapt.AdaptResult``) and where its lines came from."""

    result: object
    corrected: RegisterLines
    read: RegisterLines
    rounds: int

    def to_dict(self) -> dict:
        """Return the JSON summary ``registre adapt`` prints."""
        out = self.result.to_dict()
        out["rounds"] = self.rounds
        out["corrected_pages"] = self.corrected.pages
        out["read_pages"] = self.read.pages
        skipped = self.corrected.skipped + self.read.skipped
        if skipped:
            out["skipped_pages"] = skipped
        return out


def run_adapt(
    out: Path,
    settings: Settings,
    cfg: object,
    gt_dir: Path | None = None,
    pages: str | None = None,
    max_pages: int = DEFAULT_MAX_PAGES,
    progress: Callable[[int, int, float], None] | None = None,
    say: Callable[[str], None] = log.info,
) -> AdaptRun:
    """Adapt ``settings.model`` to a register from corrected pages (``gt_dir``), its pages read (``pages``), or both.

    Raises ``EvalError`` (no corrected page), ``AdaptError`` (no line to train on), ``ModelFileError``,
    ``StorageError`` or ``ValueError`` (a bad ``pages`` URL).
    """
    from ocr.adapt import AdaptError, adapt_register

    corrected = corrected_lines(gt_dir) if gt_dir is not None else RegisterLines()
    if corrected.lines:
        say(f"{len(corrected.lines)} corrected lines on {len(corrected.pages)} page(s)")
    read = RegisterLines()

    def read_with(model: Path) -> list:
        nonlocal read
        reader = settings.model_copy(update={"model": model})
        read = register_readings(pages, reader, max_pages, set(corrected.pages), say)
        if not read.pages and not corrected.lines:
            raise AdaptError(f"{pages}: no readable page image ({len(read.skipped)} skipped)")
        return read.lines

    result, rounds = adapt_register(
        corrected.lines, out, Path(settings.model), cfg, read_with if pages else None, progress, say
    )
    return AdaptRun(result, corrected, read, rounds)
