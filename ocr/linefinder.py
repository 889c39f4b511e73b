"""A learned text-line finder: a small U-Net that marks each line's core band and region on a page.

The rule-based line finder (``segmentation.lines``) reaches ~86 % precision and
recall on the validation pages: ruled tables, flourished capitals, ditto marks
and two lines of a cell that touch defeat smearing and ridges. Like kraken's
``blla`` and dhSegment, this finder learns line positions from the annotated
pages instead. It is trained here, with PyTorch; the shipped network is an ONNX
file that ``segmentation.learned`` runs with OpenCV's DNN module, since the
segmentation stage must not import torch.

The network sees a page at :data:`NET_SCALE` of the scan's pixels (a 4,400-pixel
page becomes ~1,470 rows; a register line, ~80 pixels high, becomes ~27) and
predicts two maps of the same size:

* ``band``: the core of each line, a strip above its baseline of about half its
  x-height-and-ascender height: separate for neighbouring lines even where the
  ground-truth polygons overlap, and cut where a cell ends;
* ``region``: the union of the ground-truth line polygons (ink a line owns).

The segmenter seeds one line per band component and grows it over the region
(a watershed), then builds the polygon and baseline from the ink it holds.

``registre train-lines`` trains it on the training pages of every corpus in
``../shared/data`` (never the validation pages of ``ocr/splits.toml``) and
writes ``models/registre-lines.onnx``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import pickle
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from ocr.corpus import DEFAULT_DATA, corpus_pages, write_pickle
from ocr.groundtruth import GroundTruthPage, read_ground_truth
from ocr.inference import warn_if_slow_bf16
from segmentation.learned import DEFAULT_LINE_MODEL
from segmentation.learned_rows import page_zoom
from segmentation.lines import page_ink
from segmentation.params import LEARNED_SPACING

log = logging.getLogger(__name__)

#: The network's pixels per scan pixel (its input and output maps): a third (1/4 merged dense lines more often).
NET_SCALE = 0.333
#: Input and output sizes are multiples of this (four poolings).
NET_MULTIPLE = 16


class _Block(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class LineNet(nn.Module):
    """A U-Net (Ronneberger et al. 2015): (N, 1, H, W) page → (N, 2, H, W) logits, one pooling per level."""

    def __init__(self, channels: tuple[int, ...] = (8, 16, 32, 64, 96)) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.down = nn.ModuleList()
        cin = 1
        for c in channels:
            self.down.append(_Block(cin, c))
            cin = c
        self.up = nn.ModuleList()
        for c in reversed(channels[:-1]):
            self.up.append(_Block(cin + c, c))
            cin = c
        self.head = nn.Conv2d(cin, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the (band, region) logits of a batch of pages whose sides are multiples of 16."""
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.head(x)


def page_input(gray: np.ndarray) -> np.ndarray:
    """Return the network input of a page already at :data:`NET_SCALE`: float32 ink darkness in [0, 1]."""
    return (1.0 - gray.astype(np.float32) / 255.0)[None, None]


def line_targets(page: GroundTruthPage, shape: tuple[int, int], scale: float = NET_SCALE) -> np.ndarray:
    """Return the (2, H, W) uint8 target maps (band, region) of a page's ground-truth lines at ``scale``.

    The band of a line is its baseline moved up by 0.3 of the line's height
    above the baseline and drawn 0.45 of that height thick, inside the lines'
    polygons; lines without a baseline use a line at three quarters of their
    polygon's height.
    """
    band = np.zeros(shape, np.uint8)
    region = np.zeros(shape, np.uint8)
    for line in page.lines:
        poly = np.asarray(line.polygon, np.float64)
        if len(poly) < 3:
            continue
        cv2.fillPoly(region, [np.rint(poly * scale).astype(np.int32)], 1)
        base = np.asarray(line.baseline, np.float64) if len(line.baseline) >= 2 else None
        if base is None:
            y = poly[:, 1].min() + 0.75 * np.ptp(poly[:, 1])
            base = np.array([[poly[:, 0].min(), y], [poly[:, 0].max(), y]])
        above = float(np.clip(base[:, 1].mean() - poly[:, 1].min(), 16.0, 96.0))
        shifted = base - [0.0, 0.3 * above]
        thick = max(1, int(round(0.45 * above * scale)))
        cv2.polylines(band, [np.rint(shifted * scale).astype(np.int32)], False, 1, thickness=thick)
    # Round line caps and baselines drawn past their polygon stay inside the lines.
    return np.stack([band & region, region])


@dataclass
class LinePage:
    """A training page at the network's scale: gray pixels and target maps."""

    page_id: str
    gray: np.ndarray
    targets: np.ndarray


def load_line_pages(
    data_dir: Path = DEFAULT_DATA, splits: tuple[str, ...] = ("train",), scale: float = NET_SCALE
) -> list[LinePage]:
    """Return every corpus page of ``data_dir`` whose split is in ``splits``, sized as the segmenter sizes it.

    ALTO and PAGE-XML pages of every corpus (``ocr.corpus``), each at ``scale``
    times the zoom the segmenter would give it (:func:`page_zoom`: pages whose
    rows are closer or further apart than the network's trained spacing are
    enlarged or reduced), with their target maps.
    """
    pages = []
    for cp in corpus_pages(data_dir):
        if cp.split not in splits:
            continue
        gt = read_ground_truth(cp.xml)
        if gt.image_path is None or not gt.lines:
            continue
        gray = cv2.imread(str(gt.image_path), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise ValueError(f"{gt.image_path}: cannot read the image")
        ink = page_ink(gray)
        page_scale = scale * page_zoom(ink.spacing, ink.transform.scale, scale, LEARNED_SPACING)
        small = cv2.resize(gray, None, fx=page_scale, fy=page_scale, interpolation=cv2.INTER_AREA)
        pages.append(LinePage(cp.key, small, line_targets(gt, small.shape, page_scale)))
    return pages


PACKED_PAGES_FORMAT = "registre-line-pages/1"


def pack_line_pages(pages: list[LinePage], path: Path, scale: float, quality: int = 90) -> int:
    """Write ``pages`` (at ``scale``) compactly to ``path``; return the file's size in bytes.

    For a machine without ``../shared`` (a rented GPU): each page's pixels as
    WebP, its two target maps as one PNG (band in bit 0, region in bit 1). At a
    third of the scan's resolution the 133 training pages take ~15 MB.
    """
    rows = []
    for p in pages:
        ok_g, gray = cv2.imencode(".webp", p.gray, [cv2.IMWRITE_WEBP_QUALITY, quality])
        ok_t, tgt = cv2.imencode(".png", (p.targets[0] | (p.targets[1] << 1)).astype(np.uint8))
        if not (ok_g and ok_t):
            raise ValueError(f"{p.page_id}: encoding failed")
        rows.append((p.page_id, gray.tobytes(), tgt.tobytes()))
    path = Path(path)
    write_pickle({"format": PACKED_PAGES_FORMAT, "scale": scale, "pages": rows}, path)
    return path.stat().st_size


def load_packed_line_pages(path: Path) -> tuple[float, list[LinePage]]:
    """Return the scale and the pages :func:`pack_line_pages` wrote."""
    try:
        with Path(path).open("rb") as f:
            data = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{path}: cannot read packed line pages ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != PACKED_PAGES_FORMAT:
        raise ValueError(f"{path}: not packed line pages (write them with `registre pack-line-pages`)")
    pages = []
    for page_id, gray, tgt in data["pages"]:
        g = cv2.imdecode(np.frombuffer(gray, np.uint8), cv2.IMREAD_GRAYSCALE)
        t = cv2.imdecode(np.frombuffer(tgt, np.uint8), cv2.IMREAD_UNCHANGED)
        pages.append(LinePage(page_id, g, np.stack([t & 1, (t >> 1) & 1])))
    return float(data["scale"]), pages


#: Zoom range of the training crops: most at about the scale of the training scans ...
ZOOM = (0.8, 1.25)
#: ... and a share (``LineTrainConfig.zoom_out_share``) "zoomed out": pages scanned at a half or a third
#: of the usual resolution, whose lines the network must still find.
ZOOM_OUT = (0.35, 0.8)


def augment_crop(
    page: LinePage, size: int, rng: np.random.Generator, zoom_out_share: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Return a random ``size``² crop of a page (float input, uint8 targets) under rotation, scale and tone changes.

    A share ``zoom_out_share`` of the crops is drawn at a zoom in :data:`ZOOM_OUT` instead of :data:`ZOOM`.
    """
    h, w = page.gray.shape
    lo, hi = ZOOM_OUT if rng.random() < zoom_out_share else ZOOM
    scale = float(np.exp(rng.uniform(math.log(lo), math.log(hi))))
    angle = float(rng.uniform(-2.0, 2.0))
    cx = rng.uniform(0, w)
    cy = rng.uniform(0, h)
    m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    m[:, 2] += (size / 2 - cx, size / 2 - cy)
    gray = cv2.warpAffine(page.gray, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=int(rng.integers(180, 256)))
    tgt = np.stack([cv2.warpAffine(t, m, (size, size), flags=cv2.INTER_NEAREST, borderValue=0) for t in page.targets])
    x = gray.astype(np.float32) / 255.0
    # Paper and ink tone, contrast, gamma, blur and noise.
    x = np.clip((x - 0.5) * rng.uniform(0.6, 1.3) + 0.5 + rng.uniform(-0.15, 0.15), 0.0, 1.0)
    x = x ** float(np.exp(rng.uniform(-0.4, 0.4)))
    if rng.random() < 0.3:
        x = cv2.GaussianBlur(x, (0, 0), float(rng.uniform(0.4, 1.0)))
    x = x + rng.normal(0.0, rng.uniform(0.0, 0.04), x.shape).astype(np.float32)
    if rng.random() < 0.5:  # mirrored pages are still pages of lines
        x, tgt = x[:, ::-1], tgt[:, :, ::-1]
    return (1.0 - np.clip(x, 0.0, 1.0)).astype(np.float32), np.ascontiguousarray(tgt)


@dataclass
class LineTrainConfig:
    """Settings of ``registre train-lines``."""

    steps: int = 3000
    batch_size: int = 8
    crop: int = 320  # sides of the training crops (network pixels): ~1,000 scan pixels
    lr: float = 2e-3
    weight_decay: float = 1e-4
    channels: tuple[int, ...] = (8, 16, 32, 64, 96)
    seed: int = 0
    threads: int = 0  # 0: torch's default
    bf16: bool = False  # bfloat16 autocast on CPU (2x faster with AMX)
    scale: float = NET_SCALE  # network pixels per scan pixel
    device: str = "cpu"  # or "cuda" (crops are still cut on the CPU)
    init_from: str | None = None  # start from these weights (the .pt written beside an ONNX file)
    export_every: int = 500  # steps between exports of the network so far (0: only at the end)
    workers: int = 0  # processes that cut and augment the crops (a GPU outruns one CPU core); 0: in this one
    zoom_out_share: float = 0.25  # share of the crops drawn zoomed out (ZOOM_OUT), for low-resolution scans


class _CropBatches(torch.utils.data.IterableDataset):
    """An endless stream of augmented (input, target) crop batches, drawn with a seed per worker process."""

    def __init__(
        self, pages: list[LinePage], weights: np.ndarray, size: int, batch: int, seed: int, zoom_out_share: float
    ) -> None:
        self.pages, self.weights, self.size, self.batch, self.seed = pages, weights, size, batch, seed
        self.zoom_out_share = zoom_out_share

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        while True:
            yield _crop_batch(self.pages, self.weights, self.size, self.batch, rng, self.zoom_out_share)


def _crop_batch(
    pages: list[LinePage],
    weights: np.ndarray,
    size: int,
    batch: int,
    rng: np.random.Generator,
    zoom_out_share: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``batch`` augmented crops of pages drawn with probabilities ``weights``: (N,1,S,S) float, (N,2,S,S)."""
    crops = [augment_crop(pages[i], size, rng, zoom_out_share) for i in rng.choice(len(pages), batch, p=weights)]
    x = torch.from_numpy(np.stack([c[0] for c in crops])[:, None])
    y = torch.from_numpy(np.stack([c[1] for c in crops]))
    return x, y


def train_line_finder(
    out: Path = DEFAULT_LINE_MODEL,
    config: LineTrainConfig | None = None,
    data_dir: Path = DEFAULT_DATA,
    pages: list[LinePage] | None = None,
) -> dict:
    """Train :class:`LineNet` on the training pages, export it to ONNX at ``out`` and return its summary."""
    cfg = config or LineTrainConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    pages = pages if pages is not None else load_line_pages(data_dir, scale=cfg.scale)
    if not pages:
        raise ValueError(f"{data_dir}: no training pages with ground truth")
    log.info("line finder: %d training pages at scale %g", len(pages), cfg.scale)
    device = torch.device(cfg.device)
    warn_if_slow_bf16(device.type, cfg.bf16, "registre train-lines")
    net = LineNet(cfg.channels)
    base = {}  # the network continued from: its version and steps
    if cfg.init_from:
        net = load_line_weights(cfg.init_from)
        cfg = replace(cfg, channels=net.channels)
        base = _base_record(cfg.init_from)
        log.info("line finder: starting from %s (%s)", cfg.init_from, base.get("version", "no record beside it"))
    net.to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    # Pages are drawn in proportion to their area: a big page holds more lines.
    weights = np.array([p.gray.size for p in pages], np.float64)
    weights /= weights.sum()
    pos_weight = torch.tensor([2.0, 1.0], device=device).view(1, 2, 1, 1)
    stream = None
    if cfg.workers:
        cv2.setNumThreads(1)  # a forked worker must not inherit OpenCV's live thread pool (see ocr.train)
        loader = torch.utils.data.DataLoader(
            _CropBatches(pages, weights, cfg.crop, cfg.batch_size, cfg.seed, cfg.zoom_out_share),
            batch_size=None,
            num_workers=cfg.workers,
            prefetch_factor=4,
            pin_memory=device.type == "cuda",
        )
        stream = iter(loader)
    t0, running = time.perf_counter(), 0.0
    net.train()
    for step in range(cfg.steps):
        if stream is not None:
            x, y = next(stream)
        else:
            x, y = _crop_batch(pages, weights, cfg.crop, cfg.batch_size, rng, cfg.zoom_out_share)
        x, y = x.to(device, non_blocking=True), y.float().to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            logits = net(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y, pos_weight=pos_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_value = float(loss.detach())
        running = 0.98 * running + 0.02 * loss_value if step else loss_value
        if cfg.export_every and step and step % cfg.export_every == 0:
            export_onnx(net, out, _summary(cfg, len(pages), step, running, t0, base))
        if step % 50 == 0 or step == cfg.steps - 1:
            log.info(
                "line finder step %d/%d loss %.4f (%.2f s/step)",
                step,
                cfg.steps,
                running,
                (time.perf_counter() - t0) / (step + 1),
            )
    return export_onnx(net, out, _summary(cfg, len(pages), cfg.steps, running, t0, base))


def _base_record(weights: str | Path) -> dict:
    """Return the version and total steps of the network whose weights are ``weights`` (from the JSON beside them)."""
    try:
        meta = json.loads(Path(weights).with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    steps = meta.get("total_steps", meta.get("steps"))
    return {"version": meta.get("version"), "total_steps": int(steps)} if isinstance(steps, int) else {}


def _summary(cfg: LineTrainConfig, pages: int, step: int, loss: float, t0: float, base: dict | None = None) -> dict:
    """Return the JSON record of a network trained ``step`` steps so far (after ``base``'s, when continued)."""
    base = base or {}
    total = base.get("total_steps", 0) + step
    return {
        "format": "registre-lines/1",
        "version": f"lines-{time.strftime('%Y%m%d')}-s{total}",
        "continued_from": base.get("version"),
        "total_steps": total,
        "scale": cfg.scale,
        "multiple": NET_MULTIPLE,
        "outputs": ["band", "region"],
        "training_pages": pages,
        "steps": step,
        "config": {**asdict(cfg), "channels": list(cfg.channels)},
        "loss": round(loss, 5),
        "minutes": round((time.perf_counter() - t0) / 60, 2),
    }


def load_line_weights(path: str | Path) -> LineNet:
    """Return the network whose weights :func:`export_onnx` wrote (``.pt`` beside the ONNX file), on the CPU."""
    path = Path(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        net = LineNet(tuple(saved["channels"]))
        net.load_state_dict(saved["state"])
    except (OSError, EOFError, KeyError, RuntimeError, TypeError, ValueError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{path}: not line-finder weights ({str(exc).splitlines()[0]})") from exc
    return net


def export_onnx(net: LineNet, out: Path, summary: dict) -> dict:
    """Write ``net`` as ONNX (any input height and width), its summary as JSON and its weights as .pt beside it.

    Return the summary written: its version ends with the first 6 hex digits of
    the ONNX file's SHA-256, so two runs of as many steps from the same network
    on the same day still get distinct versions. Each file is written
    atomically. The ``.pt`` (torch weights) is what ``registre train-lines
    --init-from`` continues from; the segmenter reads only the ONNX file and
    its JSON.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    net = copy.deepcopy(net).cpu()
    weights = out.with_suffix(".pt")
    weights_tmp = weights.with_name(weights.name + ".tmp")
    torch.save({"channels": list(net.channels), "state": net.state_dict()}, weights_tmp)
    weights_tmp.replace(weights)
    net.eval()
    tmp = out.with_name(out.name + ".tmp")
    dummy = torch.zeros(1, 1, 64, 64)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: OpenCV reads its opset
        torch.onnx.export(
            net,
            (dummy,),
            str(tmp),
            dynamo=False,
            input_names=["page"],
            output_names=["maps"],
            dynamic_axes={"page": {2: "height", 3: "width"}, "maps": {2: "height", 3: "width"}},
            opset_version=13,
        )
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:6]
    summary = {**summary, "version": f"{summary['version']}-{digest}"}
    tmp.replace(out)
    meta = out.with_suffix(".json")
    meta_tmp = meta.with_name(meta.name + ".tmp")
    meta_tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    meta_tmp.replace(meta)
    return summary
