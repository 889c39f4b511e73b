"""The one typed settings object of registre, read from flags and ``REGISTRE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from ocr.inference import Recognizer
    from segmentation.lines import SegmentationParams

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Run settings; every field can be set as ``REGISTRE_<FIELD>`` or by the matching CLI flag."""

    model_config = SettingsConfigDict(env_prefix="REGISTRE_", extra="ignore")

    model: Path = Field(REPO_ROOT / "models" / "registre-crnn.pt", description="recognizer weights file")
    lm: Path | None = Field(REPO_ROOT / "models" / "names.binary", description="KenLM names model (binary or ARPA)")
    use_lm: bool = Field(True, description="beam search with the names LM; False decodes greedily")
    beam_width: int | None = Field(
        None, ge=1, le=512, description="pyctcdecode beam width (default: the LM's tuned one)"
    )
    hotwords: Path | None = Field(None, description="file of words to boost, one per line (e.g. a parish's families)")
    lexicon_rescore: bool | None = Field(
        None, description="retry known spellings near unknown words after the beam search (default: the LM's JSON)"
    )
    device: str = Field("auto", description="auto, cpu or cuda")
    decode_workers: int = Field(2, ge=1, description="processes in the LM decoding pool")
    chunk_size: int = Field(
        20, ge=1, le=1000, description="pages per Prefect task on average (chunks balance bytes of source objects)"
    )
    formats: list[str] = Field(default_factory=lambda: ["json"], description="json, alto, page")
    max_pixels: int = Field(120_000_000, description="refuse images with more pixels than this")
    segmenter: str = Field(
        "learned", pattern="^(learned|rules)$", description="line finder: learned (U-Net) or rules (smear and ridges)"
    )
    line_model: Path = Field(
        REPO_ROOT / "models" / "registre-lines.onnx", description="the learned line finder's network (ONNX)"
    )
    batch_pixels: int = Field(48 * 48 * 1200, description="recognizer batch budget in pixels")
    cpu_bf16: bool = Field(
        False, description="recognize in bfloat16 on CPU: ~1.5x faster on CPUs with AMX, slower on others"
    )
    cpu_int8: bool = Field(
        True, description="int8 BiLSTM weights on CPU (ONNX Runtime dynamic quantization): ~1.4x faster, same CER"
    )
    reread: bool = Field(
        False,
        description="read unsure lines again squeezed and stretched, keep the likeliest text: "
        "~0.6 points lower CER, ~2.4x the recognition time",
    )
    adapt: bool = Field(
        False,
        description="before reading a register (a folder of scans), fine-tune the recognizer on its own readings "
        "of up to adapt_pages of its pages, and read the register with those weights: ~3-4 points lower CER on "
        "hands the model never saw, ~2 minutes per register on 2 cores",
    )
    adapt_pages: int = Field(10, ge=1, description="pages of a register read to adapt to it (spread over it)")
    adapt_steps: int = Field(300, ge=1, description="training steps of a register's adaptation (batches of 8 lines)")
    adapt_rounds: int = Field(
        1,
        ge=1,
        le=5,
        description="rounds of a register's adaptation: each round after the first retrains the base model on the "
        "readings of the round before's",
    )

    # Digitization flow (issue 6).
    task_workers: int = Field(2, ge=1, description="chunk tasks run at once by the default thread task runner")
    task_retries: int = Field(3, ge=0, description="Prefect retries of a chunk after a transient storage error")
    retry_backoff_s: float = Field(2.0, gt=0, description="first task retry delay in s; doubles, with jitter")
    storage_attempts: int = Field(5, ge=1, description="attempts per S3 request (botocore standard retry mode)")
    s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint (MinIO, SeaweedFS...); default: AWS_ENDPOINT_URL or the AWS config"
    )
    s3_addressing_style: str = Field("auto", pattern="^(auto|path|virtual)$", description="S3 bucket addressing")
    dask_address: str | None = Field(None, description="run chunk tasks on this Dask scheduler (tcp://host:8786)")
    dask_workers: int = Field(0, ge=0, description="run chunk tasks on a local Dask cluster of this many processes")
    table_rows: int = Field(2000, ge=0, description="most pages listed in the Prefect table artifact (failures first)")
    manifest_flush_s: float = Field(
        300.0, gt=0, description="seconds between merges of manifest parts into DST/manifest.jsonl during a run"
    )
    lease_heartbeat_s: float = Field(
        60.0, gt=0, description="seconds between refreshes of the run's lease on DST (DST/.registre-lease.json)"
    )
    lease_stale_s: float = Field(
        600.0, gt=0, description="a lease whose heartbeat is older than this may be taken over by another run"
    )

    @model_validator(mode="after")
    def _adapt_runs_here(self) -> Settings:
        if self.adapt and self.dask_address:
            raise ValueError(
                "adapt keeps each register's adapted weights on the flow's machine: not with dask_address "
                "(a local cluster, dask_workers, works)"
            )
        return self


def decoder_label(settings: Settings) -> str:
    """Return how the settings read lines, for summaries: ``lm`` or ``greedy``, ``+reread`` when rereading."""
    return ("lm" if settings.use_lm else "greedy") + ("+reread" if settings.reread else "")


def segmentation_params(settings: Settings) -> SegmentationParams:
    """Return the segmentation settings the run asks for: the learned line finder's network, or the rules.

    The network is loaded (once per process) here, so a missing or unreadable
    file is a :class:`segmentation.learned.LineModelError` before any page is read.
    """
    from segmentation.learned import line_network
    from segmentation.lines import SegmentationParams

    if settings.segmenter == "rules":
        return SegmentationParams()
    line_network(settings.line_model)
    return SegmentationParams(line_model=str(settings.line_model))


def segmenter_version(params: SegmentationParams) -> str:
    """Return what found a page's lines, for its record: ``rules`` or the line finder's version."""
    from segmentation.learned import line_network

    return "rules" if params.line_model is None else f"learned:{line_network(params.line_model).version}"


def load_recognizer(settings: Settings) -> Recognizer:
    """Return the recognizer the settings name: model file, device (``auto``: CUDA when present), bf16, batch budget."""
    from ocr.inference import REREAD_SCALES, Recognizer

    return Recognizer.load(
        str(settings.model),
        None if settings.device == "auto" else settings.device,
        cpu_bf16=settings.cpu_bf16,
        max_batch_pixels=settings.batch_pixels,
        int8=settings.cpu_int8,
        reread_scales=REREAD_SCALES if settings.reread else (),
    )
