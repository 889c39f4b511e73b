"""Page loading and validation: bytes of a JPEG, PNG or TIFF scan into an upright 8-bit grayscale page.

Every problem raises a subclass of :class:`ImageError` whose message names the
file and says what is wrong in words an archivist understands. The pixel limit
is checked from the header, before any pixel is decoded, so a small file that
declares a huge image (a decompression bomb) costs nothing. Truncated files are
errors: Pillow's ``LOAD_TRUNCATED_IMAGES`` must stay False and every image is
fully decoded with ``.load()`` before it is used.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from segmentation.types import PageImage

#: Default pixel limit: a 600 dpi A2 scan is ~70 Mpx; 120 Mpx leaves room, refuses bombs.
MAX_PIXELS = 120_000_000
#: Smallest side of a page worth segmenting, in pixels.
MIN_SIDE = 64
#: Largest long-side / short-side ratio of a page (a double-page spread is ~1.5).
MAX_ASPECT = 10.0
#: Container formats accepted (as Pillow names them); MPO is the JPEG variant cameras write.
ACCEPTED_FORMATS = ("JPEG", "MPO", "PNG", "TIFF")


class ImageError(ValueError):
    """A page image that cannot be used; the message says which file and why."""


class EmptyFile(ImageError):
    """The file has zero bytes."""


class UnreadableFile(ImageError):
    """The file cannot be read from disk."""


class NotAnImage(ImageError):
    """The bytes are not an image Pillow recognises (text, PDF, HTML error page...)."""


class UnsupportedImage(ImageError):
    """An image in a format or layout the pipeline does not handle (GIF, multi-page TIFF...)."""


class TooLarge(ImageError):
    """The image declares more pixels than the limit (possibly a decompression bomb)."""


class TooSmall(ImageError):
    """The image is too small, or too elongated, to be a page."""


class CorruptImage(ImageError):
    """The image data is damaged (bad header, bad compressed data)."""


class TruncatedImage(CorruptImage):
    """The file ends before all of its pixels: a partial upload or copy."""


def _label(name: str) -> str:
    return name or "image"


_SIGNATURES = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"II+\x00": "TIFF",
    b"MM\x00+": "TIFF",
}


def _signature(data: bytes) -> str | None:
    """Return the format whose magic bytes start ``data``, or None."""
    return next((fmt for magic, fmt in _SIGNATURES.items() if data.startswith(magic)), None)


def _head(data: bytes) -> str:
    """Return the first bytes as a short printable hint of what the file really is."""
    head = data[:16]
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in head)
    return text


def _open(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Return the opened (header-only) image after the format, frame and size checks."""
    label = _label(name)
    if not data:
        raise EmptyFile(f"{label}: the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own limit is checked below; Pillow's warning band (89–179 Mpx) is noise here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data": handled at transpose
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise TooLarge(
            f"{label}: the image declares more pixels than allowed ({exc}); "
            "it may be a decompression bomb, or a scan that should be split"
        ) from exc
    except UnidentifiedImageError as exc:
        fmt = _signature(data)
        if fmt:
            # A TIFF keeps its directory at the end more often than not: cut the file
            # and Pillow no longer recognises it at all.
            raise CorruptImage(
                f"{label}: looks like a {fmt} file but its header or directory cannot be read "
                "(damaged or truncated file?)"
            ) from exc
        raise NotAnImage(
            f"{label}: not an image Pillow recognises (file starts with {_head(data)!r}); "
            "expected a JPEG, PNG or TIFF scan"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptImage(f"{label}: the image header is damaged ({exc})") from exc
    if im.format not in ACCEPTED_FORMATS:
        raise UnsupportedImage(f"{label}: {im.format} images are not supported; convert the scan to JPEG, PNG or TIFF")
    width, height = im.size
    if width * height > max_pixels:
        raise TooLarge(
            f"{label}: {width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,}; "
            "it may be a decompression bomb, or a scan that should be downsampled"
        )
    try:
        # Counting frames makes Pillow parse every later TIFF directory, so a damaged one
        # raises here, not in Image.open, and with whatever its parser tripped on
        # (TypeError "Missing dimensions", SyntaxError, struct.error...).
        frames = getattr(im, "n_frames", 1)
    except Exception as exc:  # noqa: BLE001 - any failure there is a damaged file
        raise CorruptImage(
            f"{label}: a later page directory of this {im.format} file is damaged ({type(exc).__name__}: {exc})"
        ) from exc
    if im.format == "TIFF" and frames > 1:
        raise UnsupportedImage(f"{label}: multi-page TIFF: {frames} frames; split it into one file per page")
    if min(width, height) < MIN_SIDE:
        raise TooSmall(f"{label}: {width}x{height} pixels is too small for a page (each side needs ≥ {MIN_SIDE})")
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise TooSmall(
            f"{label}: {width}x{height} pixels is too elongated for a page "
            f"(long side more than {MAX_ASPECT:g} times the short side)"
        )
    return im


def _decode(im: Image.Image, label: str) -> None:
    """Decode every pixel now, turning Pillow's truncation and corruption errors into ours."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone flipped Pillow's global switch: half-read pages would pass silently.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True; refusing to decode pages that way")
    try:
        im.load()
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg.lower() or "premature end" in msg.lower():
            raise TruncatedImage(f"{label}: the file is truncated (incomplete copy or upload?): {msg}") from exc
        raise CorruptImage(f"{label}: the image data is damaged: {msg}") from exc
    except (SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        msg = str(exc)
        if "truncated" in msg.lower() or isinstance(exc, EOFError):
            raise TruncatedImage(f"{label}: the file is truncated (incomplete copy or upload?): {msg}") from exc
        raise CorruptImage(f"{label}: the image data is damaged: {msg}") from exc


def _upright(im: Image.Image, label: str) -> Image.Image:
    """Return the image turned as its EXIF orientation tag says (unchanged when there is none)."""
    try:
        return ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError) as exc:
        raise CorruptImage(f"{label}: unreadable EXIF orientation ({exc})") from exc


#: Share of a page that must be opaque for its own paper tone to fill the transparent rest.
MIN_OPAQUE_SHARE = 0.5
#: Percentile of the opaque gray levels taken as the paper tone (the one the line segmenter uses).
PAPER_PERCENTILE = 90


def _flatten_alpha(im: Image.Image) -> Image.Image:
    """Return an 8-bit grayscale image with transparent areas filled with the page's own paper tone.

    A scan exported with a transparent margin or padding is mostly opaque paper:
    filling the margin with pure white would make it the brightest band of the
    page, and the segmenter, which takes the page's 90th-percentile gray as the
    paper, would then see the real paper as shadow. So the fill is the
    90th-percentile gray of the opaque pixels, which leaves that estimate where
    the opaque page puts it. An image that is mostly transparent (ink on a
    transparent background) is shown on white paper.
    """
    rgba = im.convert("RGBA")
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64) / 255.0
    gray = np.asarray(rgba.convert("RGB").convert("L"), dtype=np.float64)
    opaque = alpha >= 0.5
    paper = 255.0
    if opaque.mean() >= MIN_OPAQUE_SHARE:
        paper = float(np.percentile(gray[opaque], PAPER_PERCENTILE))
    flat = gray * alpha + paper * (1.0 - alpha)
    return Image.fromarray(np.clip(np.rint(flat), 0, 255).astype(np.uint8), "L")


def to_gray(im: Image.Image) -> np.ndarray:
    """Return any decoded Pillow image as an H x W uint8 grayscale array (0 black, 255 white)."""
    mode = im.mode
    if mode == "L":
        return np.asarray(im, dtype=np.uint8).copy()
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # Pillow's convert("L") clips 16-bit values to 255 instead of scaling them.
        arr = np.asarray(im)
        if arr.dtype.kind in "ui" and arr.size and int(arr.max()) > 65535:
            scale = float(arr.max()) / 255.0
        else:
            scale = 257.0
        return np.clip(np.rint(arr.astype(np.float64) / scale), 0, 255).astype(np.uint8)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        if arr.size and np.nanmax(arr) <= 1.0:
            arr = arr * 255.0
        return np.clip(np.nan_to_num(np.rint(arr)), 0, 255).astype(np.uint8)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        im = _flatten_alpha(im)
    elif mode not in ("RGB", "1"):
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, palette...
    return np.asarray(im.convert("L"), dtype=np.uint8).copy()


def load_page(
    data: bytes,
    name: str = "",
    max_pixels: int = MAX_PIXELS,
) -> PageImage:
    """Return the page decoded from ``data`` (JPEG/PNG/TIFF bytes) as upright uint8 grayscale pixels.

    Raises a subclass of :class:`ImageError` for empty, non-image, unsupported,
    oversized (checked before decoding), too small, truncated or damaged files.
    """
    label = _label(name)
    im = _open(data, name, max_pixels)
    _decode(im, label)
    im = _upright(im, label)
    try:
        gray = to_gray(im)
    except (OSError, ValueError) as exc:
        raise UnsupportedImage(f"{label}: cannot convert {im.mode} pixels to grayscale ({exc})") from exc
    return PageImage(gray, name)


def load_page_file(path: str | Path, max_pixels: int = MAX_PIXELS) -> PageImage:
    """Return the page stored at ``path``; raises :class:`ImageError` when it cannot be read or used."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableFile(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    return load_page(data, str(path), max_pixels)
