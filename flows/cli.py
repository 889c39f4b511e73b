"""The ``registre`` command: digitize archives, evaluate on ground truth, train, build the LM, show a page."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from flows.settings import Settings
from lm.words import DEFAULT_SIZE as DEFAULT_WORDS

app = typer.Typer(
    name="registre",
    help="Batch OCR for historical French register archives (civil, parish and notarial registers).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"registre: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


ModelOpt = Annotated[
    Path | None, typer.Option("--model", help="Recognizer weights (default: models/registre-crnn.pt).")
]
LmOpt = Annotated[Path | None, typer.Option("--lm", help="KenLM names model (default: models/names.binary).")]
NoLmOpt = Annotated[bool, typer.Option("--no-lm", help="Greedy CTC decoding, no language model.")]
BeamOpt = Annotated[int | None, typer.Option("--beam-width", min=1, help="Beam width of the LM decoder.")]
HotwordsOpt = Annotated[Path | None, typer.Option("--hotwords", help="File of words to boost, one per line.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda.")]
RereadOpt = Annotated[
    bool | None,
    typer.Option(
        "--reread",
        help="Read unsure lines again squeezed and stretched and keep the likeliest text: "
        "~0.6 points lower CER, ~2.4x the recognition time.",
    ),
]
AdaptOpt = Annotated[
    bool | None,
    typer.Option(
        "--adapt",
        help="Before reading a register (a folder of scans), fine-tune the recognizer on its own readings of up "
        "to 10 of its pages (REGISTRE_ADAPT_PAGES) and read the register with those weights: ~3-4 points lower "
        "CER on hands the model never saw, ~2 minutes per register on 2 cores.",
    ),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log progress to stderr.")]
DataOpt = Annotated[Path | None, typer.Option("--data", help="The shared data folder (default ../shared/data).")]
SegmenterOpt = Annotated[
    str | None,
    typer.Option("--segmenter", help="Line finder: learned (the U-Net of models/, default) or rules."),
]


def _check_segmenter(settings: Settings) -> None:
    """Exit with a clear message when the line finder the settings name cannot be used."""
    from flows.settings import segmentation_params
    from segmentation.learned import LineModelError

    try:
        segmentation_params(settings)
    except LineModelError as exc:
        _fail(str(exc))


def _settings(**flags: object) -> Settings:
    """Return settings from the environment, overridden by the flags that were given."""
    from pydantic import ValidationError

    given = {k: v for k, v in flags.items() if v is not None}
    if given.pop("no_lm", False):
        given["use_lm"] = False
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            (f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "") + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
        _fail(f"bad setting: {problems}")
        raise  # unreachable: _fail exits


@app.command()
def digitize(
    src: Annotated[str, typer.Argument(help="Folder or s3://bucket/prefix of page scans.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Folder or s3://bucket/prefix for records and manifest.")],
    formats: Annotated[str, typer.Option("--formats", help="Comma-separated: json, alto, page.")] = "json",
    only_failed: Annotated[
        bool, typer.Option("--only-failed", help="Retry only pages whose last attempt failed.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Redo every page, even those already done.")] = False,
    chunk_size: Annotated[
        int | None,
        typer.Option(
            "--chunk-size", min=1, help="Pages per Prefect task, on average: chunks balance the bytes of the scans."
        ),
    ] = None,
    model: ModelOpt = None,
    lm: LmOpt = None,
    no_lm: NoLmOpt = False,
    beam_width: BeamOpt = None,
    hotwords: HotwordsOpt = None,
    device: DeviceOpt = None,
    reread: RereadOpt = None,
    adapt: AdaptOpt = None,
    segmenter: SegmenterOpt = None,
    dask_address: Annotated[
        str | None, typer.Option("--dask-address", help="Run chunk tasks on this Dask scheduler (tcp://host:8786).")
    ] = None,
    dask_workers: Annotated[
        int | None, typer.Option("--dask-workers", min=1, help="Run chunk tasks on a local Dask cluster of N.")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Read every page under SRC and write DST/<page-id>.json (+ ALTO/PAGE-XML) and DST/manifest.jsonl.

    Pages already done with the same model are skipped; exit code 0 only when every page is done.
    """
    _logging(verbose)
    from flows.terminal import digitize_in_terminal

    settings = _settings(
        model=model,
        lm=lm,
        no_lm=no_lm,
        beam_width=beam_width,
        hotwords=hotwords,
        device=device,
        reread=reread,
        adapt=adapt,
        chunk_size=chunk_size,
        formats=formats.split(","),
        dask_address=dask_address,
        dask_workers=dask_workers,
        segmenter=segmenter,
    )
    _check_segmenter(settings)
    raise typer.Exit(digitize_in_terminal(src, out, settings, only_failed=only_failed, force=force, verbose=verbose))


@app.command("eval")
def evaluate(
    gt_dir: Annotated[Path, typer.Argument(help="Folder of page images with ALTO or PAGE-XML beside them.")],
    segmentation: Annotated[
        str, typer.Option("--segmentation", help="gt: crop ground-truth lines; auto: the pipeline's own segmentation.")
    ] = "gt",
    predictions: Annotated[Path | None, typer.Option("--predictions", help="Write one JSON line per GT line.")] = None,
    model: ModelOpt = None,
    lm: LmOpt = None,
    no_lm: NoLmOpt = False,
    beam_width: BeamOpt = None,
    hotwords: HotwordsOpt = None,
    device: DeviceOpt = None,
    reread: RereadOpt = None,
    adapt: AdaptOpt = None,
    segmenter: SegmenterOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Print CER, WER, line counts and speed on GT_DIR as one JSON object."""
    _logging(verbose)
    from flows.evaluation import EvalError, run_eval

    if segmentation not in ("gt", "auto"):
        _fail("--segmentation must be gt or auto")
    settings = _settings(
        model=model,
        lm=lm,
        no_lm=no_lm,
        beam_width=beam_width,
        hotwords=hotwords,
        device=device,
        reread=reread,
        adapt=adapt,
        segmenter=segmenter,
    )
    if segmentation == "auto" or settings.adapt:
        _check_segmenter(settings)
    try:
        result = run_eval(gt_dir, settings, segmentation=segmentation, predictions=predictions)
    except EvalError as exc:
        _fail(str(exc))
    typer.echo(json.dumps(result))


@app.command()
def adapt(
    out: Annotated[Path, typer.Option("--out", help="Where the adapted recognizer is written.")],
    gt_dir: Annotated[
        Path | None,
        typer.Argument(help="Folder of page images of one register with corrected ALTO or PAGE-XML beside them."),
    ] = None,
    pages: Annotated[
        str | None,
        typer.Option(
            "--pages",
            help="Folder or s3://bucket/prefix of the register's scans: the model's own readings of them train too.",
        ),
    ] = None,
    max_pages: Annotated[
        int, typer.Option(min=1, help="Pages of --pages read for training, spread over the register.")
    ] = 10,
    model: ModelOpt = None,
    lm: LmOpt = None,
    no_lm: NoLmOpt = False,
    steps: Annotated[int, typer.Option(min=1, help="Training steps of 8 lines (~2-3 min per 300 on 2 cores).")] = 300,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak AdamW learning rate.")] = 3e-4,
    holdout_every: Annotated[
        int,
        typer.Option(
            min=0,
            help="Hold every n-th corrected line out to choose the weights (0: train on all, keep the last weights).",
        ),
    ] = 10,
    threads: Annotated[int, typer.Option(min=0, help="CPU threads (0: PyTorch's default).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the line order and augmentation.")] = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Fine-tune the recognizer to one register; print a JSON summary.

    From corrected pages (GT_DIR: correct a page or two of a register the model reads badly in
    eScriptorium, or any tool that writes ALTO or PAGE-XML), from the register's scans as the model reads
    them (--pages, no correction needed), or both (two rounds). Then read the whole register with
    `registre digitize --model OUT`. Exit code 1 when the adapted weights read the held-out corrected lines
    no better than the model they started from (nothing is written then).
    """
    _logging(verbose)
    import os

    from flows.adaptation import run_adapt
    from flows.evaluation import EvalError
    from flows.storage import StorageError
    from ocr.adapt import AdaptConfig, AdaptError
    from ocr.checkpoint import ModelFileError

    if gt_dir is None and pages is None:
        _fail("give a folder of corrected pages (GT_DIR), the register's scans (--pages), or both")
    settings = _settings(model=model, lm=lm, no_lm=no_lm)
    if out.is_dir():
        _fail(f"--out {out}: a folder; give the adapted model's file name")
    if out.exists() and settings.model.exists() and out.resolve() == settings.model.resolve():
        _fail(f"--out {out}: the model it starts from; write the adapted one beside it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(f"--out {out}: cannot create its folder ({exc.strerror})")
    if not os.access(out.parent, os.W_OK):
        _fail(f"--out {out}: its folder is not writable")
    if pages is not None:
        _check_segmenter(settings)

    live = sys.stderr.isatty()

    def progress(step: int, total: int, rate: float) -> None:
        # One line rewritten in a terminal; a line every 50 steps in a log file.
        if live:
            typer.echo(f"\rstep {step}/{total} ({rate:.0f} lines/s)", err=True, nl=step == total)
        elif step % 50 == 0 or step == total:
            typer.echo(f"step {step}/{total} ({rate:.0f} lines/s)", err=True)

    cfg = AdaptConfig(steps=steps, lr=lr, holdout_every=holdout_every, threads=threads, seed=seed)
    try:
        run = run_adapt(
            out, settings, cfg, gt_dir, pages, max_pages, progress=progress, say=lambda m: typer.echo(m, err=True)
        )
    except (AdaptError, EvalError, ModelFileError, StorageError, ValueError) as exc:
        _fail(str(exc))
    result = run.result
    typer.echo(json.dumps(run.to_dict(), ensure_ascii=False))
    if result.written is None:
        _fail(
            f"the adapted weights read the {result.held_out_lines} held-out lines no better than the base model "
            f"(CER {result.cer_before:.3f}); nothing written. Correct more lines or change --steps / --lr.",
            code=1,
        )


@app.command()
def train(
    run_dir: Annotated[
        Path, typer.Option("--run-dir", help="Checkpoints and history; resumes from its last.pt.")
    ] = Path("runs/crnn"),
    data_dir: DataOpt = None,
    export: Annotated[Path, typer.Option("--export", help="Where the best model is written.")] = Path(
        "models/registre-crnn.pt"
    ),
    epochs: Annotated[int, typer.Option(help="Stop after this many epochs in all.")] = 80,
    batch_size: Annotated[int, typer.Option(help="Lines per batch (small batches train best on CPU).")] = 8,
    lr: Annotated[float, typer.Option(help="AdamW learning rate of a new run.")] = 1e-3,
    set_lr: Annotated[
        float | None, typer.Option(help="On resume, set the learning rate to this (a decay step by hand).")
    ] = None,
    init_from: Annotated[
        Path | None,
        typer.Option("--init-from", help="A new run starts from these model weights (fine-tuning) instead of random."),
    ] = None,
    cosine: Annotated[
        bool, typer.Option("--cosine", help="Cosine learning-rate decay over --epochs instead of plateau halving.")
    ] = False,
    synthetic_ratio: Annotated[
        float, typer.Option(help="Synthetic lines per real line each epoch (0 disables them).")
    ] = 0.25,
    max_minutes: Annotated[
        float | None, typer.Option(help="Stop after the epoch that passes this many minutes.")
    ] = None,
    budget_minutes: Annotated[
        float | None,
        typer.Option(
            help="A fixed training time: --cosine decays over it (or --epochs if sooner); stops when it is spent."
        ),
    ] = None,
    cache: Annotated[
        Path, typer.Option("--cache", help="Line-crop cache, plain or packed by `registre pack-lines`.")
    ] = Path(".cache/lines-all-h48.pkl"),
    synthetic_from_cache: Annotated[
        bool,
        typer.Option(
            "--synthetic-from-cache", help="Draw synthetic lines from the packed cache instead of rendering them."
        ),
    ] = False,
    workers: Annotated[int, typer.Option(min=0, help="Processes that augment and batch lines (0: none).")] = 0,
    volume_weights: Annotated[
        str,
        typer.Option(help="Lines per epoch of a volume as a multiple of its own, like random-set-1=2,dufour-1=0.5."),
    ] = "",
    segmented_share: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of the lines read from the learned segmenter's crop of them instead of the ground-truth "
            "crop (the segmenter runs over the training pages once, into --segmented-cache).",
        ),
    ] = 0.0,
    segmented_cache: Annotated[
        Path, typer.Option(help="The segmenter's crops of the training lines (built when missing).")
    ] = Path(".cache/lines-seg-all-h48.pkl"),
    channels: Annotated[
        str | None,
        typer.Option(
            help="A new model's CNN widths, four comma-separated numbers (default 32,64,96,128); with --init-from, "
            "wider ones widen the weights' CNN without changing what it reads (Net2Net), then train on.",
        ),
    ] = None,
    lstm_hidden: Annotated[int, typer.Option(help="A new model's BiLSTM width per direction.")] = 256,
    lstm_layers: Annotated[int, typer.Option(help="A new model's BiLSTM layers.")] = 2,
    shortcut_weight: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Weight of an auxiliary CTC head on the CNN's features (Retsinas et al. 2022: 0.1); 0: none.",
        ),
    ] = 0.0,
    augmentation: Annotated[
        str,
        typer.Option(
            help="How the real lines are distorted: standard, writer (wider letter-width range, wavy "
            "baselines, more elastic and stroke changes) or writer-strong (all of these further, and more slant: "
            "read worse in the model card's run 9)."
        ),
    ] = "standard",
    seed: Annotated[
        int,
        typer.Option(
            help="Seeds the line order, the augmentation and a new model's weights: arms of one recipe "
            "with other seeds can be averaged (`registre average-models`)."
        ),
    ] = 0,
    device: DeviceOpt = None,
    threads: Annotated[int, typer.Option(help="CPU threads (0: torch's default).")] = 0,
    bf16: Annotated[
        bool,
        typer.Option(
            "--bf16",
            help="bfloat16 autocast on CPU: faster on CPUs with AMX (Intel Sapphire Rapids+), slower elsewhere.",
        ),
    ] = False,
    limit_lines: Annotated[int, typer.Option(help="Train on at most this many lines (smoke tests).")] = 0,
) -> None:
    """Train the CRNN recognizer on ../shared/data (resumable); export the best model to models/."""
    _logging(True)
    from ocr.train import TrainConfig
    from ocr.train import train as run_training

    try:
        widths = tuple(int(c) for c in channels.split(",")) if channels else None
    except ValueError:
        widths = ()
    if widths is not None and (len(widths) != 4 or min(widths) < 1):
        _fail(f"--channels: four positive numbers, like 32,64,96,128 (got {channels!r})")
    weights: dict[str, float] = {}
    for part in filter(None, volume_weights.split(",")):
        name, _, value = part.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            _fail(f"--volume-weights: VOLUME=NUMBER pairs separated by commas (got {part!r})")
        if weights[name.strip()] < 0:
            _fail(f"--volume-weights: {name} must not be negative")
    cfg = TrainConfig(
        run_dir=run_dir,
        export=export,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        set_lr=set_lr,
        init_from=init_from,
        cosine=cosine,
        synthetic_ratio=synthetic_ratio,
        max_minutes=max_minutes,
        budget_minutes=budget_minutes,
        cache=cache,
        synthetic_from_cache=synthetic_from_cache,
        workers=workers,
        volume_weights=weights,
        segmented_share=segmented_share,
        segmented_cache=segmented_cache,
        channels=widths,
        lstm_hidden=lstm_hidden,
        lstm_layers=lstm_layers,
        shortcut_weight=shortcut_weight,
        augmentation=augmentation,
        device=device or "auto",
        threads=threads,
        bf16=bf16,
        limit_lines=limit_lines,
        seed=seed,
    )
    if data_dir:
        cfg.data_dir = data_dir
    from ocr.augment import AUGMENTATIONS

    if augmentation not in AUGMENTATIONS:
        _fail(f"--augmentation: one of {', '.join(AUGMENTATIONS)} (got {augmentation!r})")
    _require_lines(cfg.data_dir, cfg.cache)
    if cfg.segmented_share > 0:
        _require_lines(cfg.data_dir, cfg.segmented_cache)
    synthetic = None
    if synthetic_ratio > 0 and not synthetic_from_cache:
        from ocr.synthetic import SyntheticLines

        synthetic = SyntheticLines(cfg.data_dir / "names")
    state = run_training(cfg, synthetic)
    typer.echo(json.dumps({"epochs": state.epoch, "best_epoch": state.best_epoch, "best_cer": state.best_cer}))


def _training_data(data_dir: Path | None) -> Path:
    """Return the shared data folder (default ``../shared/data``); exit with a clear message without training pages."""
    from ocr.corpus import DEFAULT_DATA

    data = data_dir or DEFAULT_DATA
    if not (data / "lectaurep" / "train").is_dir():
        _fail(f"{data}: no lectaurep/train folder (pass --data)")
    return data


def _require_lines(data_dir: Path, cache: Path) -> None:
    """Exit with a clear message when there is neither a line cache nor the training pages to build one."""
    if not cache.exists():
        _training_data(data_dir)


@app.command("pack-lines")
def pack_lines(
    out: Annotated[Path, typer.Argument(help="The packed cache to write (for `registre train --cache`).")],
    data_dir: DataOpt = None,
    cache: Annotated[Path, typer.Option("--cache", help="The plain line cache to pack.")] = Path(
        ".cache/lines-all-h48.pkl"
    ),
    synthetic: Annotated[int, typer.Option(min=0, help="Pre-render this many synthetic lines into it.")] = 0,
    splits: Annotated[str, typer.Option(help="Comma-separated splits to keep.")] = "train,val-seen,val-unseen",
    quality: Annotated[int, typer.Option(min=1, max=100, help="WebP quality of the crops.")] = 85,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic lines.")] = 0,
) -> None:
    """Write the training lines (and pre-rendered synthetic ones) WebP-compressed, to carry to a GPU machine."""
    _logging(True)
    import numpy as np

    from ocr.corpus import DEFAULT_DATA, SYNTHETIC, LineSample, load_line_cache
    from ocr.corpus import pack_lines as write_packed

    data = data_dir or DEFAULT_DATA
    _require_lines(data, cache)
    keep = set(splits.split(","))
    samples = [s for s in load_line_cache(data, cache) if s.split in keep]
    if synthetic:
        from ocr.synthetic import SyntheticLines

        rng = np.random.default_rng(seed)
        lines = SyntheticLines(data / "names")(rng, synthetic)
        samples += [
            LineSample(img, text, "synthetic", f"s{i}", SYNTHETIC, SYNTHETIC, "synthetic")
            for i, (img, text) in enumerate(lines)
        ]
    size = write_packed(samples, out, quality)
    typer.echo(json.dumps({"out": str(out), "lines": len(samples), "synthetic": synthetic, "mb": round(size / 1e6, 1)}))


@app.command("average-models")
def average_models_cmd(
    models: Annotated[list[Path], typer.Argument(help="Two or more recognizer files of one architecture.")],
    out: Annotated[Path, typer.Option("--out", help="The averaged model to write.")] = Path("models/registre-crnn.pt"),
    data_dir: DataOpt = None,
    cache: Annotated[Path, typer.Option("--cache", help="Line cache holding the validation lines.")] = Path(
        ".cache/lines-all-h48.pkl"
    ),
) -> None:
    """Average fine-tunes of one model (a model soup), check it on the validation lines, write it."""
    from ocr.checkpoint import ModelFileError
    from ocr.corpus import DEFAULT_DATA
    from ocr.train import export_average

    data = data_dir or DEFAULT_DATA
    _require_lines(data, cache)
    try:
        record = export_average(models, out, data, cache)
    except (ModelFileError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps(record))


@app.command("train-lines")
def train_lines(
    out: Annotated[Path, typer.Option("--out", help="The ONNX network to write (its JSON goes beside it).")] = Path(
        "models/registre-lines.onnx"
    ),
    data_dir: DataOpt = None,
    steps: Annotated[int, typer.Option(min=1, help="Optimizer steps.")] = 3000,
    batch_size: Annotated[int, typer.Option(min=1, help="Page crops per step.")] = 8,
    crop: Annotated[int, typer.Option(min=32, help="Side of the training crops, network pixels.")] = 320,
    scale: Annotated[
        float | None, typer.Option(min=0.05, max=1.0, help="Network pixels per scan pixel [default: 0.333].")
    ] = None,
    pages: Annotated[
        Path | None,
        typer.Option(help="Train on these packed pages (`registre pack-line-pages`) instead of ../shared/data."),
    ] = None,
    lr: Annotated[float, typer.Option(help="Peak learning rate (one-cycle schedule).")] = 2e-3,
    threads: Annotated[int, typer.Option(min=0, help="CPU threads (0: PyTorch's default).")] = 0,
    bf16: Annotated[bool, typer.Option("--bf16", help="bfloat16 autocast (CPUs with AMX, GPUs).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the crops and the initial weights.")] = 0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    init_from: Annotated[
        Path | None, typer.Option("--init-from", help="Continue from these weights (the .pt beside an ONNX file).")
    ] = None,
    workers: Annotated[int, typer.Option(min=0, help="Processes that cut and augment crops (0: none).")] = 0,
    zoom_out_share: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of crops drawn zoomed out 0.35-0.8x (for low-resolution scans)."),
    ] = 0.25,
) -> None:
    """Train the learned line finder on every corpus's training pages (never a validation page); export ONNX."""
    _logging(True)
    from ocr.linefinder import NET_SCALE, LineTrainConfig, load_packed_line_pages, train_line_finder

    packed = None
    if pages is not None:
        try:
            packed_scale, packed = load_packed_line_pages(pages)
        except ValueError as exc:
            _fail(str(exc))
        if scale is not None and abs(scale - packed_scale) > 1e-9:
            _fail(f"--scale {scale}: the pages in {pages} were packed at scale {packed_scale}")
        scale = packed_scale
        data = pages  # named by the error of an empty pack
    else:
        data = _training_data(data_dir)
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            _fail("--device cuda: no CUDA device here")
    elif device != "cpu":
        _fail(f"--device must be cpu or cuda (got {device!r})")
    if init_from is not None and not init_from.is_file():
        _fail(f"--init-from {init_from}: no such file")
    config = LineTrainConfig(
        steps=steps,
        batch_size=batch_size,
        crop=crop,
        scale=scale or NET_SCALE,
        lr=lr,
        threads=threads,
        bf16=bf16,
        seed=seed,
        device=device,
        init_from=str(init_from) if init_from else None,
        workers=workers,
        zoom_out_share=zoom_out_share,
    )
    try:
        summary = train_line_finder(out, config, data, pages=packed)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(json.dumps({"out": str(out), **{k: summary[k] for k in ("version", "training_pages", "loss")}}))


@app.command("pack-line-pages")
def pack_line_pages_command(
    out: Annotated[Path, typer.Argument(help="The file to write (for `registre train-lines --pages OUT`).")],
    data_dir: DataOpt = None,
    scale: Annotated[float, typer.Option(min=0.05, max=1.0, help="Network pixels per scan pixel.")] = 0.333,
) -> None:
    """Write the line finder's training pages (pixels at the network's scale, targets) compactly, for a GPU."""
    _logging(True)
    from ocr.linefinder import load_line_pages, pack_line_pages

    data = _training_data(data_dir)
    pages = load_line_pages(data, scale=scale)
    if not pages:
        _fail(f"{data}: no training pages with ground truth")
    size = pack_line_pages(pages, out, scale)
    typer.echo(json.dumps({"out": str(out), "pages": len(pages), "scale": scale, "bytes": size}))


@app.command("build-lm")
def build_lm(
    out: Annotated[
        Path, typer.Option("--out", help="Prefix of the LM files (PREFIX.arpa, .binary, .unigrams.txt, .json).")
    ] = Path("models/names"),
    data_dir: DataOpt = None,
    order: Annotated[int, typer.Option(min=2, max=6, help="n-gram order.")] = 3,
    names: Annotated[
        bool, typer.Option("--names/--no-names", help="Add the INSEE surname and first-name lists.")
    ] = True,
    words: Annotated[
        int,
        typer.Option(
            min=0,
            help="Common French words (wordfreq's list, most frequent first) the LM knows as one word class; 0: none.",
        ),
    ] = DEFAULT_WORDS,
) -> None:
    """Build the KenLM model of French names and register text with lmplz and build_binary."""
    _logging(True)
    from lm.build import KenLMToolsMissing
    from lm.build import build_lm as run_build

    data = _training_data(data_dir)
    try:
        info = run_build(data, out, order=order, names=names, words=words)
    except KenLMToolsMissing as exc:
        _fail(str(exc))
    typer.echo(json.dumps({"prefix": info.prefix, "version": info.version, "ngrams": info.ngrams, "sizes": info.sizes}))


@app.command()
def show(
    page: Annotated[Path, typer.Argument(help="A page image (JPEG, PNG or TIFF).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")] = Path("overlay.png"),
    text: Annotated[bool, typer.Option("--text/--no-text", help="Recognize the lines and draw their text.")] = True,
    model: ModelOpt = None,
    no_lm: NoLmOpt = False,
    device: DeviceOpt = None,
    segmenter: SegmenterOpt = None,
) -> None:
    """Draw the detected lines, baselines, words, rules and (with --text) the recognized text over PAGE."""
    import cv2

    from flows.evaluation import EvalError, read_lines
    from flows.settings import segmentation_params
    from segmentation.crop import crop_line
    from segmentation.lines import segment_page
    from segmentation.loading import ImageError, load_page_file
    from segmentation.overlay import draw_overlay

    if out.suffix.lower() != ".png":
        _fail(f"{out}: the overlay is written as PNG; give a .png path")
    try:
        image = load_page_file(page)
    except ImageError as exc:
        _fail(str(exc))
    settings = _settings(model=model, no_lm=no_lm, device=device, segmenter=segmenter)
    _check_segmenter(settings)
    seg = segment_page(image, segmentation_params(settings))
    texts = None
    if text and seg.lines:
        keep, crops = [], []
        for i, line in enumerate(seg.lines):
            try:
                crops.append(crop_line(image.pixels, line.polygon, line.baseline))
                keep.append(i)
            except ValueError:
                continue
        try:
            readings = read_lines(crops, settings)
        except EvalError as exc:
            _fail(str(exc))
        texts = [""] * len(seg.lines)
        for i, reading in zip(keep, readings, strict=True):
            texts[i] = reading.text
    canvas = draw_overlay(image.pixels, seg.lines, texts, rules=seg.rules)
    ok, png = cv2.imencode(".png", canvas)
    if not ok:
        _fail(f"{out}: PNG encoding failed")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(png.tobytes())
    tmp.replace(out)
    typer.echo(
        json.dumps(
            {
                "page": str(page),
                "lines": len(seg.lines),
                "words": sum(len(ln.words) for ln in seg.lines),
                "out": str(out),
            }
        )
    )


@app.command()
def search(
    dst: Annotated[str, typer.Argument(help="A digitize output: folder or s3://bucket/prefix.")],
    query: Annotated[str, typer.Argument(help="A surname, optionally with first names ('Jean Ardilouze').")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Matches to print.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per match.")] = False,
    show: Annotated[
        Path | None, typer.Option("--show", help="Write a PNG crop of each matched line into this folder.")
    ] = None,
) -> None:
    """Find persons (and, failing that, any word) in DST's names index: exact, fuzzy and phonetic, best first."""
    from flows.names import index_source, search_output, write_match_crops
    from flows.storage import StorageError, open_storage

    settings = Settings()
    kw = {
        "endpoint_url": settings.s3_endpoint_url,
        "addressing_style": settings.s3_addressing_style,
        "max_attempts": settings.storage_attempts,
    }
    try:
        store = open_storage(dst, **kw)
        matches = search_output(store, query, limit)
    except (StorageError, ValueError) as exc:
        _fail(str(exc))
    for m in matches:
        if as_json:
            typer.echo(json.dumps(m.to_dict(), ensure_ascii=False))
        else:
            who = " ".join(x for x in (m.title, m.first_names, m.surname) if x) if m.kind == "person" else ""
            extra = f"  [{who}; act {m.act_number or '?'}, {m.date or '?'}, {m.nature or '?'}]" if who else ""
            typer.echo(f"{m.score:.3f}  {m.page_id}  {m.line_id}  {m.text}{extra}")
    if show is not None and matches:
        source = index_source(store)
        if not source:
            _fail("the names index does not say where the scans are; --show needs them")
        try:
            written = write_match_crops(open_storage(source, **kw), matches, show)
        except (StorageError, ValueError) as exc:
            _fail(str(exc))
        typer.echo(f"{len(written)} crops written to {show}", err=True)
    if not matches:
        typer.echo(f"no match for {query!r}", err=True)
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
