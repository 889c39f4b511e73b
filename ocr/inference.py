"""Batched recognition: crops sorted by width, padded per bucket, one forward per batch."""

from __future__ import annotations

import functools
import io
import logging
import tempfile
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from ocr.charset import Charset
from ocr.model import CRNN

log = logging.getLogger(__name__)

#: Widths, relative to a crop's own, at which ``Recognizer(reread_scales=...)`` reads an uncertain line again.
#: Hands differ in how wide they write: on the validation lines some read best squeezed to 0.85, others
#: stretched to 1.15 (bench/results/recognizer.md), and no label-free estimate of the right width per page
#: picked it reliably; reading all three and keeping the text they agree on best gains more.
REREAD_SCALES = (0.85, 1.15)
#: Lines whose greedy confidence (:func:`greedy_decode`) is under this are read again: about half of the
#: validation lines, and nearly all of what rereading every line gains.
REREAD_BELOW = 0.9
#: Subtracted from the blank's log-probability in every frame before decoding (a blank penalty, as ASR
#: decoders have): the CTC models drop characters about four times as often as they add one on hands they
#: never saw (2,168 deletions against 489 insertions on the held-out LECTAUREP lines). 0.5 measured best
#: greedy on both halves of the validation lines and with the names LM (bench/results/recognizer.md).
BLANK_PENALTY = 0.5


@dataclass
class Recognition:
    """One line read by the recognizer: greedy text, confidences 0–1, and its CTC log-probabilities."""

    text: str
    confidence: float
    char_confidences: list[float] = field(default_factory=list)
    #: Output frame index of each character (for word boxes); frame f covers x in [f*stride, (f+1)*stride).
    char_frames: list[int] = field(default_factory=list)
    logprobs: np.ndarray | None = None  # (frames, classes), float32


def to_tensor_batch(crops: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (N, 1, H, Wmax) float tensors with ink bright on zero padding, and the widths."""
    height = crops[0].shape[0]
    widths = [c.shape[1] for c in crops]
    batch = np.zeros((len(crops), 1, height, max(widths)), np.float32)
    for i, c in enumerate(crops):
        batch[i, 0, :, : c.shape[1]] = (255 - c.astype(np.float32)) / 255.0
    return torch.from_numpy(batch), torch.tensor(widths, dtype=torch.long)


def greedy_decode(logprobs: np.ndarray, charset: Charset) -> Recognition:
    """Return the best-path reading of (frames, classes) log-probabilities.

    The line confidence is the geometric mean of the best-path probabilities of
    the emitted characters (1.0 for an empty line that is confidently blank).
    """
    best = logprobs.argmax(-1)
    best_p = np.exp(logprobs.max(-1))
    chars, confs, frames = [], [], []
    prev = 0
    for t, k in enumerate(best):
        if k != 0 and k != prev:
            chars.append(charset.chars[k - 1])
            confs.append(float(best_p[t]))
            frames.append(t)
        elif k != 0 and k == prev and confs:
            confs[-1] = max(confs[-1], float(best_p[t]))
        prev = k
    if confs:
        conf = float(np.exp(np.mean(np.log(np.maximum(confs, 1e-9)))))
    else:
        conf = float(np.exp(np.mean(np.log(np.maximum(best_p, 1e-9))))) if len(best_p) else 0.0
    return Recognition("".join(chars), conf, confs, frames, logprobs)


def scaled_width(width: int, scale: float) -> int:
    """Return the width of a crop ``width`` pixels wide stretched by ``scale`` (at least 8 pixels)."""
    return width if scale == 1.0 else max(8, round(width * scale))


def stretch_width(crop: np.ndarray, scale: float) -> np.ndarray:
    """Return ``crop`` resized to ``scale`` times its width (height kept; at least 8 pixels wide)."""
    if scale == 1.0:
        return crop
    width = scaled_width(crop.shape[1], scale)
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    return cv2.resize(crop, (width, crop.shape[0]), interpolation=interpolation)


def ctc_scores(logprobs: Sequence[np.ndarray], targets: Sequence[Sequence[int]], batch: int = 256) -> np.ndarray:
    """Return ``ln P(target | logprobs)`` under CTC for each pair: torch's batched forward algorithm.

    ``-inf`` where the target cannot be aligned to the frames (too long for them).
    """
    out = np.empty(len(logprobs), np.float64)
    order = sorted(range(len(logprobs)), key=lambda i: logprobs[i].shape[0])
    with torch.inference_mode():
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            frames = max(logprobs[i].shape[0] for i in idx)
            x = torch.zeros((frames, len(idx), logprobs[idx[0]].shape[1]))
            for j, i in enumerate(idx):
                x[: logprobs[i].shape[0], j] = torch.from_numpy(logprobs[i])
            longest = max(1, max(len(targets[i]) for i in idx))
            y = torch.zeros((len(idx), longest), dtype=torch.long)
            for j, i in enumerate(idx):
                y[j, : len(targets[i])] = torch.tensor(list(targets[i]), dtype=torch.long)
            loss = torch.nn.functional.ctc_loss(
                x,
                y,
                torch.tensor([logprobs[i].shape[0] for i in idx]),
                torch.tensor([len(targets[i]) for i in idx]),
                blank=0,
                reduction="none",
                zero_infinity=False,
            )
            out[idx] = -loss.double().numpy()
    return out


@functools.cache
def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """Return whether the CPU computes in bfloat16 natively (AMX or AVX-512 BF16), or None when unknown."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags |= set(line.partition(":")[2].split())
    if not flags:
        return None
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def warn_if_slow_bf16(device: str, bf16: bool, what: str) -> bool:
    """Log a warning and return True when bfloat16 is asked for on a CPU without bf16 units.

    There oneDNN emulates it: an AMD EPYC with AVX2 only trained the recognizer
    under 2 lines/s in bfloat16 against 13 in float32.
    """
    if not bf16 or device.startswith("cuda") or cpu_has_bf16() is not False:
        return False
    log.warning(
        "%s: bfloat16 was asked for, but this CPU has no bf16 units (AMX, AVX-512 BF16): it will be "
        "several times slower than float32; leave it off here",
        what,
    )
    return True


def mixed_precision(device: str, cpu_bf16: bool = False) -> torch.autocast:
    """Return the autocast context of ``device``: float16 on CUDA; bfloat16 on CPU when ``cpu_bf16``, else none.

    bfloat16 on CPU is fast only where oneDNN has AMX (Intel Sapphire Rapids and
    later) and slower on CPUs without bf16 units, hence opt-in.
    """
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_bf16)


def onnx_runtime_available() -> bool:
    """Return whether ONNX Runtime can be imported (a dependency; absent only in stripped installs)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_onnx(model: CRNN) -> bytes:
    """Return ``model`` (in eval mode) as an ONNX graph taking (N, 1, H, W) batches of any N and W."""
    buf = io.BytesIO()
    example = torch.zeros(2, 1, model.config.height, 64)
    with warnings.catch_warnings(), torch.inference_mode():
        # The TorchScript exporter: it writes the BiLSTM as one ONNX LSTM node (the dynamo exporter does not
        # yet for these shapes), and warns about it at length.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buf,
            input_names=["image"],
            output_names=["logprobs"],
            dynamic_axes={"image": {0: "batch", 3: "width"}, "logprobs": {0: "frames", 1: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return buf.getvalue()


class _DropMessage(logging.Filter):
    """Drop log records whose message starts with a prefix."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        """Return False for the records to drop."""
        return not str(record.msg).startswith(self.prefix)


def quantize_int8(graph: bytes) -> bytes:
    """Return the ONNX ``graph`` with int8 weights in its LSTM and matrix products (dynamic quantization).

    Activations are quantized per batch at run time. The convolutions stay float32: ONNX Runtime's
    ConvInteger ran 2x slower than its float convolutions on an AMD EPYC (AVX2).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="registre-int8-") as tmp:
        out = Path(tmp) / "int8.onnx"
        # It logs to the root logger that no pre-processing (shape inference) ran: none is needed here.
        hush = _DropMessage("Please consider to run pre-processing")
        root = logging.getLogger()
        root.addFilter(hush)
        try:
            quantize_dynamic(
                onnx.load_from_string(graph),
                out,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["LSTM", "MatMul", "Gemm"],
            )
        finally:
            root.removeFilter(hush)
        return out.read_bytes()


class Recognizer:
    """A CRNN in inference mode that reads many crops in width-sorted batches.

    On CPU it runs the model in ONNX Runtime (``backend="onnx"``, the default there): 1.7x the lines/s of
    PyTorch's eager CPU kernels for the same float32 arithmetic (16.0 vs 9.6 lines/s on one Zen 3 thread,
    outputs equal to 1e-5), and with ``int8`` (the default) its BiLSTM and output layer use int8 weights,
    another 1.4x. The graph is exported from the loaded weights on first use (about 2 s), and a session is
    made per thread count, so ``torch.set_num_threads`` still sets how many cores it uses.
    """

    def __init__(
        self,
        model: CRNN,
        charset: Charset,
        version: str = "",
        device: str = "cpu",
        max_batch_pixels: int = 48 * 48 * 1200,
        cpu_bf16: bool = False,
        backend: str = "auto",
        int8: bool = False,
        reread_scales: Sequence[float] = (),
        reread_below: float = REREAD_BELOW,
        blank_penalty: float = BLANK_PENALTY,
    ) -> None:
        """Wrap ``model``; ``backend`` is ``torch``, ``onnx`` (CPU only) or ``auto`` (ONNX Runtime on CPU).

        ``int8`` quantizes the BiLSTM and output layer's weights where the backend is ``onnx``. With
        ``reread_scales`` (like :data:`REREAD_SCALES`), a line read with a confidence under ``reread_below`` is
        read again at those multiples of its width, and keeps the reading that all of them together find most
        likely (:meth:`read`). ``blank_penalty`` is taken off the blank's log-probability in every frame, which
        is then renormalized (:data:`BLANK_PENALTY`; 0 returns the network's own).
        """
        if backend not in ("auto", "torch", "onnx"):
            raise ValueError(f"backend must be auto, torch or onnx, not {backend!r}")
        if backend == "onnx" and (device != "cpu" or cpu_bf16):
            raise ValueError("the onnx backend runs float32 on CPU only (no CUDA, no bf16)")
        if backend == "auto":
            backend = "onnx" if device == "cpu" and not cpu_bf16 and onnx_runtime_available() else "torch"
        self.backend = backend
        self.int8 = int8 and backend == "onnx"
        self._onnx: bytes | None = None
        self._sessions: dict[int, object] = {}
        # Flow tasks share one recognizer across threads: one of them exports, the others wait for it.
        self._export_lock = threading.Lock()
        self.model = model.to(device).eval()
        #: bfloat16 autocast on CPU: 1.5x faster with AMX (76.7 vs 50.3 lines/s on one thread of an Intel Xeon
        #: with AMX), greedy CER 0.2593 vs 0.2590 on the validation lines; slower on CPUs without bf16 units.
        self.cpu_bf16 = cpu_bf16
        warn_if_slow_bf16(device, cpu_bf16, "recognizer")
        self.charset = charset
        self.version = version
        self.device = device
        self.max_batch_pixels = max_batch_pixels
        self.height = model.config.height
        if any(not 0.25 <= f <= 4.0 for f in reread_scales):
            raise ValueError(f"reread scales must be between 0.25 and 4 times a line's width, got {reread_scales}")
        self.reread_scales = tuple(float(f) for f in reread_scales if f != 1.0)
        self.reread_below = reread_below
        self.blank_penalty = float(blank_penalty)

    @classmethod
    def load(
        cls,
        path: str | None = None,
        device: str | None = None,
        cpu_bf16: bool = False,
        max_batch_pixels: int = 48 * 48 * 1200,
        backend: str = "auto",
        int8: bool = True,
        reread_scales: Sequence[float] = (),
        reread_below: float = REREAD_BELOW,
        blank_penalty: float = BLANK_PENALTY,
    ) -> Recognizer:
        """Return a recognizer from a model file (the shipped one by default), on CUDA when present.

        On CPU it reads with ONNX Runtime and, unless ``int8`` is False, int8 BiLSTM weights.
        """
        from ocr.checkpoint import load_model

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, charset, version = load_model(path, device)
        return cls(
            model.fuse_for_inference(),
            charset,
            version,
            device,
            max_batch_pixels,
            cpu_bf16=cpu_bf16,
            backend=backend,
            int8=int8,
            reread_scales=reread_scales,
            reread_below=reread_below,
            blank_penalty=blank_penalty,
        )

    def weights_changed(self) -> None:
        """Drop the exported graph: the model's weights moved (training), so the next batch exports them anew."""
        with self._export_lock:
            self._onnx = None
            self._sessions.clear()

    def _session(self):  # noqa: ANN202 (onnxruntime is imported lazily)
        """Return the ONNX Runtime session for the current torch thread count, exporting the model once."""
        import onnxruntime as ort

        threads = torch.get_num_threads()
        with self._export_lock:
            if threads not in self._sessions:
                if self._onnx is None:
                    graph = export_onnx(self.model)
                    self._onnx = quantize_int8(graph) if self.int8 else graph
                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.log_severity_level = 3
                providers = ["CPUExecutionProvider"]
                self._sessions[threads] = ort.InferenceSession(self._onnx, options, providers=providers)
            # InferenceSession.run may be called from several threads at once.
            return self._sessions[threads]

    @staticmethod
    @functools.cache
    def _run_options():  # noqa: ANN205 (onnxruntime is imported lazily)
        """Return ONNX Runtime run options that hand the CPU arena's growth back after each batch.

        Without them the arena keeps the largest batch's buffers for good, once per thread that ran one at the
        same time: 1.8 GB resident after 1,200 validation lines read in one thread, 2.35 GB in two (as the
        flow's chunk threads do); with them 1.3 and 1.9 GB, in the same time (bench/results/flow.md).
        """
        import onnxruntime as ort

        options = ort.RunOptions()
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        return options

    def _forward(self, x: torch.Tensor) -> np.ndarray:
        """Return the (frames, batch, classes) log-probabilities of a padded batch as float32, blank penalized."""
        if self.backend == "onnx":
            lp = self._session().run(None, {"image": x.numpy()}, self._run_options())[0]
        else:
            with mixed_precision(self.device, self.cpu_bf16):
                lp = self.model(x.to(self.device)).float().cpu().numpy()
        if self.blank_penalty:
            # Lower the blank, then renormalize each frame: decoding picks the same characters as with the
            # bare offset, and line and word confidences stay probabilities (without the renormalization a
            # line's CTC probability would lose the penalty once per blank frame: 0.89 -> 0.11 on a sample line).
            # The network's frames sum to 1, so the new total is 1 - p(blank) * (1 - e^-penalty): one pass.
            mass = np.log1p(np.exp(lp[:, :, 0]) * np.float32(np.expm1(-self.blank_penalty)))
            lp[:, :, 0] -= self.blank_penalty
            lp -= mass[:, :, None]
        return lp

    def batches(self, crops: Sequence[np.ndarray]) -> list[list[int]]:
        """Return crop indices grouped into width-sorted batches under the pixel budget."""
        order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1])
        out: list[list[int]] = []
        cur: list[int] = []
        for i in order:
            w = crops[i].shape[1]
            # Padded cost of the batch if this (widest so far) crop joins it.
            if cur and (len(cur) + 1) * w * self.height > self.max_batch_pixels:
                out.append(cur)
                cur = []
            cur.append(i)
        if cur:
            out.append(cur)
        return out

    def logprobs(self, crops: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Return per-crop (frames, classes) CTC log-probabilities, in input order (see :meth:`read`)."""
        return self.read(crops)[0]

    def read(self, crops: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
        """Return per-crop CTC log-probabilities and the width in pixels each was read at, in input order.

        Without reread scales every crop is read once at its own width. With them, each line whose greedy
        reading is unsure is read again at every scale; the greedy texts of all the readings are the
        candidates, each scored by the sum over the readings of its CTC log-likelihood (an ensemble over
        widths: their frames do not line up, so the texts are compared, not the frames), and the line keeps
        the log-probabilities of a reading whose greedy text won. Frame f of a line covers columns
        ``[f * stride, (f + 1) * stride)`` of the crop stretched to the returned width.
        """
        result = self._logprobs(crops)
        widths = [c.shape[1] for c in crops]
        if not self.reread_scales or not crops:
            return result, widths
        first = [greedy_decode(lp, self.charset) for lp in result]
        unsure = [i for i, rec in enumerate(first) if rec.confidence < self.reread_below]
        if not unsure:
            return result, widths
        readings = [[result[i] for i in unsure]]
        readings += [self._logprobs([stretch_width(crops[i], f) for i in unsure]) for f in self.reread_scales]
        scales = (1.0, *self.reread_scales)
        pairs: list[tuple[int, str, int]] = []  # (line among the unsure, candidate text, reading it came from)
        for j, i in enumerate(unsure):
            seen = {first[i].text: 0}
            for r, lps in enumerate(readings[1:], start=1):
                seen.setdefault(greedy_decode(lps[j], self.charset).text, r)
            if len(seen) > 1:
                pairs += [(j, text, r) for text, r in seen.items()]
        if not pairs:
            return result, widths
        targets = [self.charset.encode(text) for _, text, _ in pairs]
        total = sum(ctc_scores([lps[j] for j, _, _ in pairs], targets) for lps in readings)
        best: dict[int, tuple[float, int]] = {}
        for (j, _, r), score in zip(pairs, total, strict=True):
            if j not in best or score > best[j][0]:
                best[j] = (float(score), r)
        for j, (_, r) in best.items():
            i = unsure[j]
            result[i] = readings[r][j]
            widths[i] = scaled_width(widths[i], scales[r])
        return result, widths

    def _logprobs(self, crops: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Return per-crop (frames, classes) CTC log-probabilities of one reading, in input order."""
        result: list[np.ndarray | None] = [None] * len(crops)
        for c in crops:
            if c.ndim != 2 or c.shape[0] != self.height:
                raise ValueError(f"crops must be 2-D with height {self.height}, got {c.shape}")
        with torch.inference_mode():
            for idx in self.batches(crops):
                x, widths = to_tensor_batch([crops[i] for i in idx])
                lp = self._forward(x)
                lengths = self.model.output_lengths(widths).clamp(max=lp.shape[0])
                for j, i in enumerate(idx):
                    result[i] = lp[: int(lengths[j]), j, :]
        return result  # type: ignore[return-value]

    def recognize(self, crops: Sequence[np.ndarray]) -> list[Recognition]:
        """Return the greedy reading of each crop, in input order."""
        if not crops:
            return []
        return [greedy_decode(lp, self.charset) for lp in self.logprobs(crops)]
