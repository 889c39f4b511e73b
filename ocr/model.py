"""CRNN: a CNN over a fixed-height line, a BiLSTM over its columns, a linear layer to CTC labels."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


@dataclass
class CRNNConfig:
    """Architecture of the recognizer; stored with its weights."""

    num_classes: int
    height: int = 48
    channels: tuple[int, ...] = (32, 64, 96, 128)
    lstm_hidden: int = 256
    lstm_layers: int = 2
    dropout: float = 0.25
    #: A CTC head straight on the CNN's features (a 1-D convolution over frames), trained beside the BiLSTM's
    #: as an auxiliary loss (Retsinas et al. 2022, "Best practices for a handwritten text recognition
    #: system"): it makes the CNN learn characters on its own. Inference reads only the BiLSTM's head.
    shortcut: bool = False

    #: Each output frame covers this many input columns (the CNN pools width once).
    @property
    def width_stride(self) -> int:
        """Return the input pixels per output frame along the width."""
        return 2

    def to_dict(self) -> dict:
        """Return the config as plain JSON-able data."""
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CRNNConfig:
        """Return the config stored by :meth:`to_dict`."""
        d = dict(d)
        d["channels"] = tuple(d["channels"])
        return cls(**d)


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class CRNN(nn.Module):
    """Line image (N, 1, H, W) with ink bright on 0 paper -> log-probabilities (T, N, C), T = W // 2."""

    def __init__(self, config: CRNNConfig) -> None:
        super().__init__()
        self.config = config
        c1, c2, c3, c4 = config.channels
        # Height 48 -> 24 -> 12 -> 6 -> 3; width halved once, so short cells keep
        # at least two frames per character (LECTAUREP has lines at 4.4 px/char).
        # Height is pooled early: the wide layers run on few rows, which is what
        # keeps training near 50 lines/s on two CPU cores.
        self.cnn = nn.Sequential(
            *_conv(1, c1),
            nn.MaxPool2d((2, 2)),
            *_conv(c1, c2),
            nn.MaxPool2d((2, 1)),
            *_conv(c2, c3),
            nn.MaxPool2d((2, 1)),
            *_conv(c3, c3),
            *_conv(c3, c4),
            nn.MaxPool2d((2, 1)),
        )
        feat_h = config.height // 16
        self.dropout = nn.Dropout(config.dropout)
        self.rnn = nn.LSTM(
            c4 * feat_h,
            config.lstm_hidden,
            num_layers=config.lstm_layers,
            bidirectional=True,
            dropout=config.dropout if config.lstm_layers > 1 else 0.0,
        )
        self.head = nn.Linear(2 * config.lstm_hidden, config.num_classes)
        self.shortcut = nn.Conv1d(c4 * feat_h, config.num_classes, 3, padding=1) if config.shortcut else None

    def output_lengths(self, widths: torch.Tensor) -> torch.Tensor:
        """Return the number of output frames for input widths in pixels."""
        return torch.div(widths, self.config.width_stride, rounding_mode="floor").clamp(min=1)

    def fuse_for_inference(self) -> CRNN:
        """Fold each BatchNorm into the convolution before it, in place; return the model in eval mode.

        Inference only (the folded model can no longer train its BatchNorm
        statistics): it halves the CNN's CPU time, which is most of a line's.
        """
        self.eval()
        layers, fused = list(self.cnn), []
        i = 0
        while i < len(layers):
            if i + 1 < len(layers) and isinstance(layers[i], nn.Conv2d) and isinstance(layers[i + 1], nn.BatchNorm2d):
                fused.append(fuse_conv_bn_eval(layers[i], layers[i + 1]))
                i += 2
            else:
                fused.append(layers[i])
                i += 1
        self.cnn = nn.Sequential(*fused)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return CTC log-probabilities of shape (frames, batch, classes).

        Batches are padded on the right with zeros (blank paper) and not packed:
        packed LSTMs run 2.5x slower on CPU, and width-bucketed batches keep the
        padding short, so the model simply learns that paper reads as blank.
        """
        return self.forward_train(x)[0]

    def forward_train(self, x: torch.Tensor, shortcut: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return the BiLSTM head's log-probabilities and the shortcut head's, both (T, N, C).

        The shortcut head's are None without one, in eval mode, or when ``shortcut`` is False (its loss is
        not weighted: no need to compute it).
        """
        f = self.cnn(x)  # N, C, h, T
        n, c, h, t = f.shape
        f = f.reshape(n, c * h, t)
        out, _ = self.rnn(self.dropout(f.permute(2, 0, 1)))
        main = self.head(self.dropout(out)).log_softmax(-1)
        if self.shortcut is None or not self.training or not shortcut:
            return main, None
        return main, self.shortcut(f).permute(2, 0, 1).log_softmax(-1)


def widen_state_dict(
    state_dict: dict[str, torch.Tensor], old: CRNNConfig, channels: tuple[int, ...], noise: float = 0.01, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Return ``state_dict`` (of a model shaped ``old``) for a CNN of wider ``channels``, computing the same function.

    Net2Net's WiderNet (Chen, Goodfellow & Shlens, ICLR 2016): each new filter of a convolution copies a
    random old one (its weights and BatchNorm), and the next layer divides the weights it gives a filter
    among the filter's copies, so the wider model starts where the trained one stands instead of from
    random weights. The copies get ``noise`` (relative) on their incoming weights: identical copies would
    stay identical under every gradient step. A small change of output, not none; the BiLSTM and heads keep
    their widths.
    """
    widths = tuple(channels)
    if len(widths) != len(old.channels) or any(n < o for n, o in zip(widths, old.channels, strict=True)):
        raise ValueError(f"can only widen the CNN's {tuple(old.channels)} channels, not to {widths}")
    gen = torch.Generator().manual_seed(seed)
    sd = {k: v.clone() for k, v in state_dict.items()}
    conv_keys = [k[: -len(".weight")] for k, v in state_dict.items() if k.startswith("cnn.") and v.dim() == 4]
    bn_of = {c: f"cnn.{int(c.split('.')[1]) + 1}" for c in conv_keys}
    c1, c2, c3, c4 = widths
    outs = (c1, c2, c3, c3, c4)  # the CNN's five convolutions (see CRNN.__init__)
    mapping: torch.Tensor | None = None  # new input channel -> old one, for the next layer
    for conv, width in zip(conv_keys, outs, strict=True):
        w = sd[f"{conv}.weight"]
        if mapping is not None:  # divide what this layer reads from each old channel among its copies
            counts = torch.bincount(mapping, minlength=w.shape[1]).to(w.dtype)
            w = w[:, mapping] / counts[mapping].view(1, -1, 1, 1)
        n_old = w.shape[0]
        extra = torch.randint(0, n_old, (width - n_old,), generator=gen)
        mapping = torch.cat([torch.arange(n_old), extra])
        w = w[mapping].clone()
        scale = w[n_old:].std() if width > n_old else 0.0
        w[n_old:] += noise * scale * torch.randn(w[n_old:].shape, generator=gen)
        sd[f"{conv}.weight"] = w
        bn = bn_of[conv]
        for part in ("weight", "bias", "running_mean", "running_var"):
            sd[f"{bn}.{part}"] = sd[f"{bn}.{part}"][mapping].clone()
    # The BiLSTM (and a shortcut head) reads feature c * feat_h + row of the last convolution's map.
    assert mapping is not None
    feat_h = old.height // 16
    counts = torch.bincount(mapping, minlength=old.channels[-1]).to(torch.float32)
    cols = (mapping.view(-1, 1) * feat_h + torch.arange(feat_h).view(1, -1)).reshape(-1)
    div = counts[mapping].repeat_interleave(feat_h)
    readers = [k for k in sd if k.startswith("rnn.weight_ih_l0")] + [k for k in sd if k == "shortcut.weight"]
    for key in readers:
        w = sd[key]
        sd[key] = (w[:, cols] / div.view(1, -1) if w.dim() == 2 else w[:, cols] / div.view(1, -1, 1)).clone()
    return sd
