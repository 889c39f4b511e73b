"""The work of one chunk of pages, without Prefect: load, segment, crop, recognize, decode, write.

:func:`run_chunk` is what a Prefect task calls. It reads each page from the
source storage, keeps only its line crops (the page pixels are dropped once
cropped), recognizes the crops of all pages of the chunk in one batched call
(width-sorted buckets, so the CPU or GPU sees dense batches), decodes them,
writes each page's records, then the chunk's manifest part. A page that
cannot be read, validated or segmented becomes a ``failed`` entry with the
reason and never stops the others. Transient storage errors are raised, so
that Prefect retries the chunk with backoff.

The recognizer and the decoder (with its process pool) are loaded once per
process and kept (:func:`get_engine`), not once per task.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from flows.manifest import DONE, FAILED, ManifestEntry, write_part
from flows.names import add_entries
from flows.records import Alternative, Box, LineRecord, PageRecord, WordRecord
from flows.serializers import SERIALIZERS
from flows.settings import Settings, load_recognizer, segmentation_params, segmenter_version
from flows.storage import Storage, StorageError, is_transient

log = logging.getLogger(__name__)

#: Stages timed per page, in order, plus "total".
STAGES = ("load", "segment", "recognize", "decode", "write")
#: Padding crop_line adds around the polygon, in pixels (segmentation.crop.crop_line's default).
CROP_PAD = 4
#: Crops per recognizer call and lines per decoder call: a stop request is honoured between
#: slices, so a chunk ends within a slice's time (about a page's lines) instead of a chunk's.
RECOGNIZE_SLICE = 256
DECODE_SLICE = 64

# Set when the run was asked to stop (SIGTERM, SIGINT, a lost lease): chunk tasks running in
# this process finish the page they are on and leave the others to do.
_STOP = threading.Event()
_STOP_REASON: list[str] = []


def request_stop(reason: str = "a stop request") -> None:
    """Ask the chunk tasks of this process to stop at the next page or slice boundary; ``reason`` names why."""
    if not _STOP.is_set():
        _STOP_REASON[:] = [reason]
    _STOP.set()


def stop_reason() -> str | None:
    """Return why the stop was requested ("SIGTERM", "SIGINT", "lost lease"), or None."""
    return _STOP_REASON[0] if _STOP.is_set() and _STOP_REASON else None


def stop_requested() -> bool:
    """Return True once a stop was requested."""
    return _STOP.is_set()


def clear_stop() -> None:
    """Forget a stop request (at the end of a run, so the next run in this process starts afresh)."""
    _STOP.clear()
    _STOP_REASON.clear()


def software_version() -> str:
    """Return "registre <version>" from the installed package metadata."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"registre {version('registre')}"
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "registre"


# --- decoding --------------------------------------------------------------------------------


class Decoder(Protocol):
    """What the flow needs of a CTC decoder (``lm.decoder``'s objects satisfy it)."""

    def decode_batch(self, logprobs: list[np.ndarray]) -> list[Any]:
        """Return one decoded line (text, confidence, words, nbest) per (frames, classes) array."""
        ...


#: One recognizer forward at a time per process, whatever the engine: concurrent chunks (of two
#: registers read by their own adapted models, say) would oversubscribe the cores or the GPU memory.
_FORWARD_LOCK = threading.Lock()


@dataclass
class Engine:
    """A loaded recognizer and decoder, shared by every task of a process."""

    recognizer: Any  # ocr.inference.Recognizer
    decoder: Decoder
    decoder_name: str
    lm_version: str | None
    stride: int
    lock: threading.Lock = _FORWARD_LOCK

    @property
    def model_version(self) -> str:
        """Return the recognizer's version string."""
        return str(self.recognizer.version)


#: Engines kept per process, least recently used dropped first: a run that reads each register
#: with its own adapted model (``--adapt``) loads one recognizer per register. A dropped engine
#: lives on while a chunk still holds it; the decoders (with their process pools) are shared
#: by every engine of the same decoding settings and closed only by :func:`close_engines`.
MAX_ENGINES = 4
_ENGINES: OrderedDict[tuple, Engine] = OrderedDict()
_DECODERS: dict[tuple, tuple[Decoder, str, str | None]] = {}
_ENGINES_LOCK = threading.Lock()


def _decoder_key(settings: Settings) -> tuple:
    return (
        settings.use_lm,
        str(settings.lm) if settings.use_lm else None,
        settings.beam_width if settings.use_lm else None,
        str(settings.hotwords) if settings.use_lm else None,
        settings.lexicon_rescore if settings.use_lm else None,
        settings.decode_workers,
    )


def _engine_key(settings: Settings) -> tuple:
    return (
        str(settings.model),
        settings.device,
        settings.batch_pixels,
        settings.cpu_bf16,
        settings.cpu_int8,
        settings.reread,
        *_decoder_key(settings),
    )


def _open_decoder(recognizer: Any, settings: Settings) -> tuple[Decoder, str, str | None]:
    """Return (decoder, its description for records, LM version or None): ``lm.decoder``'s beam search or greedy."""
    from lm.decoder import open_decoder

    # A daemonic process (a Dask worker) may not start a pool: there, Dask's workers are the parallelism.
    processes = 1 if multiprocessing.current_process().daemon else settings.decode_workers
    decoder = open_decoder(recognizer.charset.labels, settings.model_copy(update={"decode_workers": processes}))
    lm_version = getattr(decoder, "lm_version", None)
    return decoder, str(decoder.version), None if lm_version is None else str(lm_version)


def decode_lines(decoder: Any, logprobs: list[np.ndarray]) -> list[Any]:
    """Return the decoded lines with word confidences and n-best lists where the decoder offers them."""
    detailed = getattr(decoder, "decode_beams", None)
    return detailed(logprobs) if detailed is not None else decoder.decode_batch(logprobs)


def get_engine(settings: Settings) -> Engine:
    """Return this process's engine for the settings, loading the model and decoder on first use."""
    key = _engine_key(settings)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is not None:
            _ENGINES.move_to_end(key)
            return engine
        recognizer = load_recognizer(settings)
        # The charset is part of the decoder: models of other charsets get their own.
        decoder_key = (*_decoder_key(settings), tuple(recognizer.charset.labels))
        if decoder_key not in _DECODERS:
            _DECODERS[decoder_key] = _open_decoder(recognizer, settings)
        decoder, name, lm_version = _DECODERS[decoder_key]
        name += "+reread" if settings.reread else ""
        stride = int(getattr(recognizer.model.config, "width_stride", 2))
        engine = _ENGINES[key] = Engine(recognizer, decoder, name, lm_version, stride)
        while len(_ENGINES) > MAX_ENGINES:
            _ENGINES.popitem(last=False)
        return engine


def warm_up(settings: Settings) -> Engine:
    """Return this process's engine with its decoder pool already started, from outside any flow run.

    The model is loaded and the pool forked once, before Prefect starts its
    threads and services, so the workers are small and the first chunk waits
    for neither.
    """
    engine = get_engine(settings)
    classes = len(engine.recognizer.charset.labels)
    dummy = np.full((2, classes), -np.log(classes), np.float32)
    decode_lines(engine.decoder, [dummy, dummy])
    return engine


def close_engines() -> None:
    """Close every cached engine's decoder (its process pool) and forget them."""
    with _ENGINES_LOCK:
        for decoder, _, _ in _DECODERS.values():
            close = getattr(decoder, "close", None) or getattr(decoder, "__exit__", None)
            if close is None:
                continue
            try:
                close() if close.__name__ == "close" else close(None, None, None)
            except Exception:  # noqa: BLE001 - closing a pool at exit must not raise
                log.debug("closing decoder failed", exc_info=True)
        _ENGINES.clear()
        _DECODERS.clear()


# --- one chunk ------------------------------------------------------------------------------


@dataclass
class PageJob:
    """A page to process: its source key and the id its outputs are named after."""

    key: str
    page_id: str


@dataclass
class ChunkJob:
    """A chunk task's input: where to read and write, which pages, and how (small and picklable)."""

    src: Storage
    dst: Storage
    pages: list[PageJob]
    settings: Settings
    formats: list[str]
    run_id: str
    index: int


@dataclass
class ChunkResult:
    """A chunk task's output: the manifest entries, the seconds spent per stage, and when its pages ran.

    ``first_started`` and ``last_finished`` are wall-clock times (Unix seconds)
    of the chunk's first page read and its manifest part written; ``left`` is
    the pages a stop request left to do.
    """

    entries: list[ManifestEntry]
    body_seconds: float
    stage_seconds: dict[str, float]
    first_started: float = 0.0
    last_finished: float = 0.0
    left: int = 0


@dataclass
class _Prepared:
    """A page between segmentation and recognition: its lines and crops (never leaves the task)."""

    job: PageJob
    sha256: str
    size: int
    width: int
    height: int
    lines: list[Any]  # segmentation.types.Line
    crops: list[np.ndarray | None]  # None where a line could not be cropped
    regions: list[tuple[int, int]]  # x range of the page each crop covers, for word boxes
    timings: dict[str, float]
    segmenter: str = ""  # "rules" or the learned line finder's version
    segmentation_confidence: float | None = None  # segmentation.types.PageSegmentation.confidence
    low_segmentation_confidence: bool = False


def failure_reason(stage: str, exc: BaseException) -> str:
    """Return a one-line failure reason: "<stage>: <ExceptionType>: message"."""
    msg = " ".join(str(exc).split()) or exc.__class__.__name__
    return f"{stage}: {exc.__class__.__name__}: {msg}"[:500]


def _crop_region(polygon: list[tuple[int, int]], width: int) -> tuple[int, int]:
    xs = [p[0] for p in polygon]
    return max(min(xs) - CROP_PAD, 0), min(max(xs) + CROP_PAD + 1, width)


def prepare_page(data: bytes, job: PageJob, settings: Settings) -> _Prepared:
    """Return the page's lines and crops; raises ImageError (or any segmentation error) for a bad page."""
    from segmentation.crop import crop_line
    from segmentation.lines import segment_page
    from segmentation.loading import load_page

    t0 = time.perf_counter()
    page = load_page(data, job.key, settings.max_pixels)
    t1 = time.perf_counter()
    params = segmentation_params(settings)
    seg = segment_page(page, params)
    crops: list[np.ndarray | None] = []
    regions = []
    for line in seg.lines:
        try:
            crops.append(crop_line(page.pixels, line.polygon, line.baseline))
        except ValueError:
            # A degenerate polygon: the line keeps its geometry in the record, with no text.
            crops.append(None)
        regions.append(_crop_region(line.polygon, page.width))
    t2 = time.perf_counter()
    return _Prepared(
        job,
        hashlib.sha256(data).hexdigest(),
        len(data),
        page.width,
        page.height,
        list(seg.lines),
        crops,
        regions,
        {"segment": t2 - t1, "load": t1 - t0},
        segmenter_version(params),
        None if seg.confidence is None else round(seg.confidence, 4),
        seg.low_confidence,
    )


def word_box(line_box: Box, region: tuple[int, int], crop_width: int, start: int, end: int, stride: int) -> Box:
    """Return a word's box in page pixels from its output frames [start, end) on the line's crop.

    A frame covers ``stride`` crop pixels; crop x maps linearly onto the page x
    range the crop was cut from (exact for level lines, close for sloped ones).
    """
    x_lo, x_hi = region
    scale = (x_hi - x_lo) / max(crop_width, 1)
    x0 = x_lo + start * stride * scale
    x1 = x_lo + max(end, start + 1) * stride * scale
    lx0, ly0, lx1, ly1 = line_box
    bx0 = int(round(min(max(x0, lx0), lx1)))
    bx1 = int(round(min(max(x1, bx0 + 1), lx1)))
    return bx0, ly0, max(bx1, bx0), ly1


def _unit(value: float) -> float:
    """Return a confidence clipped to 0–1 and rounded to 4 decimals (finer digits are noise)."""
    return round(min(max(float(value), 0.0), 1.0), 4)


def _words(decoded: Any, line_box: Box, region: tuple[int, int], crop_width: int, stride: int) -> list[WordRecord]:
    out = []
    for w in getattr(decoded, "words", None) or []:
        conf = getattr(w, "confidence", None)
        out.append(
            WordRecord(
                w.text,
                word_box(line_box, region, crop_width, int(w.start_frame), int(w.end_frame), stride),
                _unit(decoded.confidence if conf is None else conf),
            )
        )
    return out


def _nbest(decoded: Any) -> list[Alternative]:
    """Return the decoder's n-best readings with confidences 0–1 relative to each other (softmax of scores).

    A single reading (greedy decoding) is no alternative and gives an empty list.
    """
    items = [(it[0], it[1]) if isinstance(it, (tuple, list)) else (it.text, it.score) for it in decoded.nbest or []]
    if len(items) < 2:
        return []
    scores = np.array([float(score) for _, score in items], np.float64)
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    return [Alternative(str(text), _unit(p)) for (text, _), p in zip(items, probs, strict=True)]


def build_record(
    prep: _Prepared, decoded: list[Any | None], engine: Engine, created: str, read_widths: list[int | None]
) -> PageRecord:
    """Return the page record from its segmentation and decoded lines (None for uncropped lines).

    ``read_widths`` are the widths the recognizer read the crops at (word boxes map its frames back).
    """
    lines = []
    for line, crop, region, dec, width in zip(prep.lines, prep.crops, prep.regions, decoded, read_widths, strict=True):
        polygon = [(int(x), int(y)) for x, y in line.polygon]
        baseline = [(int(x), int(y)) for x, y in line.baseline]
        record_line = LineRecord(
            id=line.id,
            polygon=polygon,
            baseline=baseline,
            order=int(line.order),
            text="",
            confidence=0.0,
            column=line.column,
            cell=line.cell,
        )
        if dec is not None and crop is not None:
            record_line.text = dec.text
            record_line.confidence = _unit(dec.confidence)
            record_line.words = _words(dec, record_line.bbox, region, width or crop.shape[1], engine.stride)
            record_line.nbest = _nbest(dec) if getattr(dec, "nbest", None) else []
        lines.append(record_line)
    record = PageRecord(
        page_id=prep.job.page_id,
        source_key=prep.job.key,
        sha256=prep.sha256,
        size_bytes=prep.size,
        width=prep.width,
        height=prep.height,
        lines=lines,
        model_version=engine.model_version,
        decoder=engine.decoder_name,
        lm_version=engine.lm_version,
        segmenter=prep.segmenter,
        segmentation_confidence=prep.segmentation_confidence,
        low_segmentation_confidence=prep.low_segmentation_confidence,
        software=software_version(),
        created=created,
    )
    # The register's rows, their dates, natures and persons (issue 23): pure text work on the lines read.
    return add_entries(record)


def write_record(dst: Storage, record: PageRecord, formats: list[str]) -> list[str]:
    """Write the record in every format; on any failure remove what was written, then re-raise.

    Each object is written atomically; removing the others on failure means a
    page is either fully written or has no record at all.
    """
    written: list[str] = []
    try:
        for fmt in formats:
            suffix, serialize, mime = SERIALIZERS[fmt]
            key = record.page_id + suffix
            dst.put(key, serialize(record), mime)
            written.append(key)
    except BaseException:
        for key in written:
            try:
                dst.delete(key)
            except StorageError:
                log.warning("could not remove %s after a failed write", dst.describe(key))
        raise
    return written


def run_chunk(job: ChunkJob, engine: Engine | None = None) -> ChunkResult:
    """Process one chunk of pages end to end and write its manifest part; return entries and timings.

    Raises only for errors that a retry of the whole chunk may cure (transient
    storage errors); everything page-specific becomes a ``failed`` entry.
    """
    engine = engine or get_engine(job.settings)
    started = time.perf_counter()
    first_started = time.time()
    stages = dict.fromkeys(STAGES, 0.0)
    entries: list[ManifestEntry] = []
    prepared: list[_Prepared] = []

    def failed(page: PageJob, reason: str, timings: dict[str, float]) -> None:
        timings = {**timings, "total": sum(timings.values())}
        entries.append(
            ManifestEntry(
                page.page_id,
                page.key,
                FAILED,
                reason,
                engine.model_version,
                engine.lm_version,
                engine.decoder_name,
                timings=timings,
                run_id=job.run_id,
            )
        )
        log.debug("page %s failed: %s", page.key, reason)  # the task logs it through Prefect

    from segmentation.loading import ImageError

    for page in job.pages:
        if stop_requested():
            break
        t0 = time.perf_counter()
        try:
            data = job.src.get(page.key)
        except Exception as exc:  # noqa: BLE001 - a page that cannot be read fails alone
            if is_transient(exc):
                raise
            failed(page, failure_reason("read", exc), {"load": time.perf_counter() - t0})
            continue
        t_get = time.perf_counter() - t0
        try:
            prep = prepare_page(data, page, job.settings)
        except ImageError as exc:
            failed(page, failure_reason("image", exc), {"load": time.perf_counter() - t0})
            continue
        except Exception as exc:  # noqa: BLE001 - one bad page must not stop the chunk
            failed(page, failure_reason("segment", exc), {"load": t_get, "segment": time.perf_counter() - t0 - t_get})
            continue
        del data
        prep.timings["load"] += t_get
        stages["load"] += prep.timings["load"]
        stages["segment"] += prep.timings["segment"]
        prepared.append(prep)

    # One batched recognition and one batched decode over every line of the chunk, in slices
    # (widest-first order, so each slice's batches stay dense) between which a stop is honoured.
    crops = [c for p in prepared for c in p.crops if c is not None]
    t0 = time.perf_counter()
    try:
        read = _recognize_sliced(engine, crops)
        logprobs, read_widths = read if read is not None else (None, [])
        t1 = time.perf_counter()
        decoded_flat = _decode_sliced(engine, logprobs) if logprobs is not None else None
        t2 = time.perf_counter()
    except Exception as exc:  # noqa: BLE001 - a recognizer failure fails these pages, not the run
        for p in prepared:
            failed(p.job, failure_reason("recognize", exc), p.timings)
        prepared = []
        crops, logprobs, decoded_flat, read_widths = [], [], [], []
        t1 = t2 = time.perf_counter()
    if logprobs is None or decoded_flat is None:
        # Stopped mid-recognition: the prepared pages are left to do, with the ones not started.
        prepared, crops, logprobs, decoded_flat, read_widths = [], [], [], [], []
    stages["recognize"] += t1 - t0
    stages["decode"] += t2 - t1
    total_px = sum(c.shape[1] for c in crops) or 1
    total_frames = sum(lp.shape[0] for lp in logprobs) or 1
    it = iter(zip(logprobs, decoded_flat, read_widths, strict=True))
    created = datetime.now(UTC).isoformat(timespec="seconds")

    for prep in prepared:
        decoded: list[Any | None] = []
        widths: list[int | None] = []
        px = frames = 0
        for crop in prep.crops:
            if crop is None:
                decoded.append(None)
                widths.append(None)
                continue
            lp, dec, width = next(it)
            decoded.append(dec)
            widths.append(width)
            px += crop.shape[1]
            frames += lp.shape[0]
        # Batched stages are shared out by each page's share of crop width / frames.
        prep.timings["recognize"] = (t1 - t0) * px / total_px
        prep.timings["decode"] = (t2 - t1) * frames / total_frames
        record = build_record(prep, decoded, engine, created, widths)
        t_w = time.perf_counter()
        try:
            outputs = write_record(job.dst, record, job.formats)
        except StorageError as exc:
            if exc.transient:
                raise
            failed(prep.job, failure_reason("write", exc), {**prep.timings, "write": time.perf_counter() - t_w})
            continue
        except Exception as exc:  # noqa: BLE001 - e.g. a serializer error on this page only
            if is_transient(exc):
                raise
            failed(prep.job, failure_reason("write", exc), {**prep.timings, "write": time.perf_counter() - t_w})
            continue
        prep.timings["write"] = time.perf_counter() - t_w
        stages["write"] += prep.timings["write"]
        prep.timings["total"] = sum(prep.timings[s] for s in STAGES)
        entries.append(
            ManifestEntry(
                record.page_id,
                record.source_key,
                DONE,
                None,
                record.model_version,
                record.lm_version,
                record.decoder,
                lines=len(record.lines),
                mean_confidence=round(record.mean_confidence, 4),
                timings={k: round(v, 4) for k, v in prep.timings.items()},
                outputs=outputs,
                run_id=job.run_id,
            )
        )
        prep.crops = []  # free the crops as soon as the page is written

    # Manifest entries last: after every record of the chunk is in place.
    order = {p.key: i for i, p in enumerate(job.pages)}
    entries.sort(key=lambda e: order.get(e.source_key, 0))
    if entries:
        write_part(job.dst, job.run_id, job.index, entries)
    return ChunkResult(
        entries,
        time.perf_counter() - started,
        stages,
        first_started=first_started,
        last_finished=time.time(),
        left=len(job.pages) - len(entries),
    )


def _recognize_sliced(engine: Engine, crops: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]] | None:
    """Return the crops' CTC log-probabilities and read widths in input order, or None if a stop came between slices.

    A crop's read width is its own unless the recognizer read it again wider or narrower (``reread``).
    """
    out: list[np.ndarray | None] = [None] * len(crops)
    widths = [c.shape[1] for c in crops]
    order = sorted(range(len(crops)), key=lambda i: -crops[i].shape[1])
    for start in range(0, len(order), RECOGNIZE_SLICE):
        if stop_requested():
            return None
        idx = order[start : start + RECOGNIZE_SLICE]
        # One forward at a time per process: concurrent chunks would oversubscribe the CPU
        # cores (torch already uses them all) or the GPU memory; the other chunk meanwhile segments.
        with engine.lock:
            lps, read_widths = engine.recognizer.read([crops[i] for i in idx])
        for i, lp, w in zip(idx, lps, read_widths, strict=True):
            out[i] = lp
            widths[i] = w
    return out, widths  # type: ignore[return-value]


def _decode_sliced(engine: Engine, logprobs: list[np.ndarray]) -> list[Any] | None:
    """Return the decoded lines in order, or None if a stop came between slices."""
    decoded: list[Any] = []
    for start in range(0, len(logprobs), DECODE_SLICE):
        if stop_requested():
            return None
        decoded += decode_lines(engine.decoder, logprobs[start : start + DECODE_SLICE])
    return decoded
