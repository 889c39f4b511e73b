"""Saving and loading recognizer weights with their charset, architecture and version."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ocr.charset import Charset
from ocr.model import CRNN, CRNNConfig

#: The weights `registre` uses when no --model is given.
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "registre-crnn.pt"


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write ``obj`` with torch.save to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(path: Path, model: CRNN, charset: Charset, version: str, extra: dict | None = None) -> None:
    """Write a model file: weights, config, charset and version string (plus ``extra`` metadata)."""
    atomic_torch_save(
        {
            "format": "registre-crnn/1",
            "version": version,
            "config": model.config.to_dict(),
            "charset": charset.chars,
            # On the CPU, so a model trained on a GPU loads anywhere.
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            **(extra or {}),
        },
        path,
    )


class ModelFileError(ValueError):
    """A model file that is missing or not a registre recognizer."""


def read_model_file(path: Path, device: str = "cpu", missing_hint: str = "") -> dict:
    """Return the stored dict of a model or training-checkpoint file; :class:`ModelFileError` when it is not one."""
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file{missing_hint}")
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise ModelFileError(f"{path}: not a readable model file ({exc})") from exc
    if not isinstance(data, dict) or "state_dict" not in data or "charset" not in data:
        raise ModelFileError(f"{path}: not a registre model file")
    return data


def load_model(path: Path | str | None = None, device: str = "cpu") -> tuple[CRNN, Charset, str]:
    """Return ``(model in eval mode, charset, version)`` from a model or training-checkpoint file."""
    path = Path(path) if path else DEFAULT_MODEL
    data = read_model_file(path, device, " (run `registre train` or pass --model)")
    model = CRNN(CRNNConfig.from_dict(data["config"]))
    model.load_state_dict(data["state_dict"])
    model.to(device).eval()
    return model, Charset(list(data["charset"])), str(data.get("version", file_digest(path)))


def file_digest(path: Path) -> str:
    """Return the first 12 hex digits of the file's SHA-256."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def average_models(paths: list[Path]) -> tuple[CRNN, Charset, list[str]]:
    """Return the weight average of model files of one architecture and charset, and their versions.

    Fine-tunes of one model that saw different data orders and mixes land in one
    basin of the loss; their average (a "model soup", Wortsman et al. 2022)
    usually reads unseen hands better than either. Integer buffers (BatchNorm's
    step counts) are taken from the first file.
    """
    if len(paths) < 2:
        raise ModelFileError("averaging needs at least two model files")
    loaded = [read_model_file(Path(path)) for path in paths]
    first = loaded[0]
    for path, data in zip(paths[1:], loaded[1:], strict=True):
        if data["config"] != first["config"] or list(data["charset"]) != list(first["charset"]):
            raise ModelFileError(f"{path}: another architecture or charset than {paths[0]}: cannot average them")
    state = {}
    for key, value in first["state_dict"].items():
        if value.is_floating_point():
            state[key] = torch.stack([d["state_dict"][key].float() for d in loaded]).mean(0).to(value.dtype)
        else:
            state[key] = value
    model = CRNN(CRNNConfig.from_dict(first["config"]))
    model.load_state_dict(state)
    model.eval()
    versions = [str(d.get("version", file_digest(p))) for p, d in zip(paths, loaded, strict=True)]
    return model, Charset(list(first["charset"])), versions
