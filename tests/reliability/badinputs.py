"""A corpus of bad page inputs drawn in memory, each with the outcome ``registre digitize`` must give it.

Nothing is downloaded: every file is made from a small grayscale page (a crop
of an example scan) with Pillow or by hand (truncations, forged headers).
:func:`bad_inputs` returns the kinds the README's reliability table lists;
:func:`good_pages` returns distinct small real pages for scale runs (the
killed-run test and the benchmark).
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pages"

DONE, FAILED = "done", "failed"


@dataclass(frozen=True)
class BadInput:
    """One kind of bad input: its source key and bytes, and what the run must make of it.

    ``expect`` is ``done`` or ``failed``; for ``failed``, ``reason`` is a phrase
    the manifest reason must contain (case-insensitive); for ``done``, ``size``
    is the (width, height) in pixels the record must report, and ``like`` the
    key of a page whose lines the record should resemble (same page, other
    encoding), if any, and ``max_lines`` a most lines it may have (0: a page
    with nothing written on it).
    """

    kind: str
    key: str
    data: bytes
    expect: str
    reason: str = ""
    size: tuple[int, int] | None = None
    like: str | None = None
    max_lines: int | None = None


def example_gray(index: int = 0) -> Image.Image:
    """Return example page ``index`` (0–2) as a Pillow grayscale image, full size."""
    paths = sorted(EXAMPLES.glob("*.jpg"))
    with Image.open(paths[index % len(paths)]) as im:
        return im.convert("L")


def reference_page(width: int = 480, height: int = 300) -> Image.Image:
    """Return a small real register fragment (a crop of the first example page, downscaled by 2)."""
    gray = example_gray(0)
    w, h = gray.size
    crop = gray.crop((w // 4, h // 3, w // 4 + 2 * width, h // 3 + 2 * height))
    return crop.resize((width, height), Image.Resampling.LANCZOS)


def encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    """Return ``im`` saved in ``fmt`` as bytes."""
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """Return a valid-looking PNG of a few hundred bytes whose header declares width x height pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    # A few rows of zeros compressed: the header is all a bomb needs; the data never gets decoded.
    idat = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def jpeg_bomb(width: int = 65_000, height: int = 65_000) -> bytes:
    """Return a small JPEG whose frame header (SOF0) is rewritten to declare width x height pixels."""
    data = bytearray(encode(Image.new("L", (16, 16), 255), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def damaged_second_directory(im: Image.Image) -> bytes:
    """Return a two-page TIFF of ``im`` whose second directory lost its ImageWidth tag (tag id overwritten)."""
    buf = io.BytesIO()
    im.save(buf, "TIFF", save_all=True, append_images=[im])
    data = bytearray(buf.getvalue())
    assert data[:2] == b"II"
    first = struct.unpack_from("<I", data, 4)[0]
    count = struct.unpack_from("<H", data, first)[0]
    second = struct.unpack_from("<I", data, first + 2 + 12 * count)[0]
    for i in range(struct.unpack_from("<H", data, second)[0]):
        entry = second + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == 256:  # ImageWidth
            struct.pack_into("<H", data, entry, 0xFFF0)
    return bytes(data)


def exif_rotated(im: Image.Image) -> bytes:
    """Return ``im`` stored turned 90° clockwise, with EXIF orientation 8 saying how to turn it back."""
    stored = im.transpose(Image.Transpose.ROTATE_270)  # 90° clockwise
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90° counter-clockwise to view"
    return encode(stored, "JPEG", quality=85, exif=exif.tobytes())


def bad_inputs(page: Image.Image | None = None) -> list[BadInput]:
    """Return the bad-input corpus (≥ 20 kinds) built from ``page`` (default :func:`reference_page`)."""
    page = page or reference_page()
    w, h = page.size
    jpeg = encode(page, "JPEG", quality=85)
    png = encode(page, "PNG")
    tiff = encode(page, "TIFF", compression="tiff_lzw")
    rng = np.random.default_rng(7)
    ref = "ref/page.jpg"

    arr16 = (np.asarray(page, np.uint16) * 257).astype(np.uint16)
    cmyk = page.convert("RGB").convert("CMYK")
    rgba = page.convert("RGBA")
    alpha = np.full((h, w), 255, np.uint8)
    alpha[:, : w // 5] = 0  # a transparent left margin: shown as white paper
    rgba.putalpha(Image.fromarray(alpha))
    frames = [page, page.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    multi = io.BytesIO()
    frames[0].save(multi, "TIFF", save_all=True, append_images=frames[1:])
    noise = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8))
    gif = encode(page, "GIF")
    webp = encode(page, "WEBP")
    corrupt_jpeg = bytearray(jpeg)
    # Garbage across the middle of the entropy-coded data: the header stays valid.
    mid = len(corrupt_jpeg) // 2
    corrupt_jpeg[mid : mid + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    bad_crc = bytearray(png)
    bad_crc[29:33] = b"\x00\x00\x00\x00"  # IHDR's CRC

    cases = [
        BadInput("good page (JPEG)", ref, jpeg, DONE, size=(w, h)),
        BadInput("zero-byte file", "bad/empty.jpg", b"", FAILED, "empty (0 bytes)"),
        BadInput("truncated JPEG", "bad/truncated.jpg", jpeg[: len(jpeg) // 2], FAILED, "truncated"),
        BadInput("truncated PNG", "bad/truncated.png", png[: len(png) // 2], FAILED, "truncated"),
        BadInput("truncated TIFF", "bad/truncated.tif", tiff[: len(tiff) // 2], FAILED, "truncated"),
        BadInput("text file named .jpg", "bad/notes.jpg", b"Registre paroissial, 1788.\n" * 20, FAILED, "not an image"),
        BadInput(
            "HTML error page named .png",
            "bad/error.png",
            b"<html><body><h1>403 Forbidden</h1></body></html>",
            FAILED,
            "not an image",
        ),
        BadInput("PDF named .tif", "bad/scan.tif", b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n", FAILED, "not an image"),
        BadInput("GIF named .jpg", "bad/anim.jpg", gif, FAILED, "GIF images are not supported"),
        BadInput("WebP named .png", "bad/photo.png", webp, FAILED, "WEBP images are not supported"),
        BadInput(
            "PNG decompression bomb (100000x100000 declared)", "bad/bomb.png", png_bomb(), FAILED, "decompression bomb"
        ),
        BadInput(
            "JPEG decompression bomb (65000x65000 declared)", "bad/bomb.jpg", jpeg_bomb(), FAILED, "decompression bomb"
        ),
        BadInput("1x1 image", "bad/dot.png", encode(Image.new("L", (1, 1), 0), "PNG"), FAILED, "too small for a page"),
        BadInput(
            "100000x10 image",
            "bad/strip.png",
            encode(Image.new("L", (100_000, 10), 255), "PNG"),
            FAILED,
            "too small for a page",
        ),
        BadInput(
            "2000x100 strip (too elongated)",
            "bad/ribbon.png",
            encode(page.resize((2000, 100)), "PNG"),
            FAILED,
            "too elongated",
        ),
        BadInput("multi-page TIFF", "bad/two-pages.tif", multi.getvalue(), FAILED, "multi-page TIFF"),
        BadInput(
            "multi-page TIFF, second directory damaged",
            "bad/two-pages-damaged.tif",
            damaged_second_directory(page),
            FAILED,
            "damaged",
        ),
        BadInput("PNG with a bad header checksum", "bad/crc.png", bytes(bad_crc), FAILED, "damaged"),
        BadInput(
            "16-bit grayscale PNG", "fmt/gray16.png", encode(Image.fromarray(arr16), "PNG"), DONE, size=(w, h), like=ref
        ),
        BadInput("CMYK JPEG", "fmt/cmyk.jpg", encode(cmyk, "JPEG", quality=90), DONE, size=(w, h), like=ref),
        BadInput("CMYK TIFF", "fmt/cmyk.tif", encode(cmyk, "TIFF"), DONE, size=(w, h), like=ref),
        BadInput("RGBA PNG (transparent margin)", "fmt/rgba.png", encode(rgba, "PNG"), DONE, size=(w, h), like=ref),
        BadInput("palette PNG", "fmt/palette.png", encode(page.convert("P"), "PNG"), DONE, size=(w, h), like=ref),
        BadInput(
            "1-bit TIFF (CCITT G4)",
            "fmt/bilevel.tif",
            encode(page.point(lambda v: 255 if v > 150 else 0).convert("1"), "TIFF", compression="group4"),
            DONE,
            size=(w, h),
            like=ref,
        ),
        BadInput(
            "EXIF-rotated JPEG (orientation 8)", "fmt/exif-rotated.jpg", exif_rotated(page), DONE, size=(w, h), like=ref
        ),
        BadInput("upper-case extension .TIFF", "fmt/UPPER.TIFF", tiff, DONE, size=(w, h), like=ref),
        BadInput("JPEG with damaged entropy data", "odd/corrupt-middle.jpg", bytes(corrupt_jpeg), DONE, size=(w, h)),
        BadInput(
            "upside-down page", "odd/upside-down.jpg", encode(page.rotate(180), "JPEG", quality=85), DONE, size=(w, h)
        ),
        BadInput(
            "blank white page",
            "odd/white.png",
            encode(Image.new("L", (w, h), 255), "PNG"),
            DONE,
            size=(w, h),
            max_lines=0,
        ),
        BadInput(
            "blank black page",
            "odd/black.png",
            encode(Image.new("L", (w, h), 0), "PNG"),
            DONE,
            size=(w, h),
            max_lines=0,
        ),
        BadInput("pure noise", "odd/noise.png", encode(noise, "PNG"), DONE, size=(w, h)),
        BadInput(
            "key with spaces, accents and ..",
            "Registre 1788/Baptêmes .. Été/acte n°3 ..copie.jpg",
            jpeg,
            DONE,
            size=(w, h),
            like=ref,
        ),
    ]
    return cases


def good_pages(n: int, width: int = 360, height: int = 200) -> dict[str, bytes]:
    """Return ``n`` distinct small real pages {key: JPEG bytes}: crops of the example scans, halved."""
    grays = [example_gray(i) for i in range(3)]
    out: dict[str, bytes] = {}
    i = 0
    while len(out) < n:
        gray = grays[i % 3]
        gw, gh = gray.size
        # Walk a grid of crops over the written area of each scan.
        cols = max((gw - 2 * width) // (2 * width), 1)
        k = i // 3
        x = (k % cols) * 2 * width
        y = gh // 6 + ((k // cols) * 2 * height) % max(gh * 2 // 3 - 2 * height, 1)
        crop = gray.crop((x, y, x + 2 * width, y + 2 * height)).resize((width, height), Image.Resampling.LANCZOS)
        out[f"reg{i % 3}/page-{i:04d}.jpg"] = encode(crop, "JPEG", quality=80)
        i += 1
    return out


# --- unsafe ground-truth XML (for `registre eval`) -------------------------------------------------

_ALTO_HEAD = '<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#">'
_PAGE_HEAD = '<PcGts xmlns="http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15">'


def _alto(doctype: str, text: str) -> bytes:
    return (
        f'<?xml version="1.0"?>\n{doctype}\n{_ALTO_HEAD}<Layout><Page WIDTH="480" HEIGHT="300"><PrintSpace>'
        '<TextBlock ID="b"><TextLine ID="l1" BASELINE="10 40 400 40"><Shape>'
        '<Polygon POINTS="10 10 400 10 400 45 10 45"/>'
        f'</Shape><String CONTENT="{text}"/></TextLine></TextBlock></PrintSpace></Page></Layout></alto>'
    ).encode()


def _page(doctype: str, text: str) -> bytes:
    return (
        f'<?xml version="1.0"?>\n{doctype}\n{_PAGE_HEAD}<Page imageWidth="480" imageHeight="300">'
        '<TextRegion id="r"><TextLine id="l1"><Coords points="10,10 400,10 400,45 10,45"/>'
        f'<Baseline points="10,40 400,40"/><TextEquiv><Unicode>{text}</Unicode></TextEquiv></TextLine>'
        "</TextRegion></Page></PcGts>"
    ).encode()


def billion_laughs(root: str) -> str:
    """Return a DOCTYPE declaring ``&lol9;``: 10^9 "lol"s (3 GB) once expanded, a few hundred bytes here."""
    ents = ['<!ENTITY lol "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)
    ]
    return f"<!DOCTYPE {root} [{''.join(ents)}]>"


def unsafe_ground_truth(secret_file: Path, listener: str) -> dict[str, tuple[str, bytes]]:
    """Return {file stem: (kind, XML bytes)}: entity bombs and external entities in ALTO and PAGE-XML.

    ``secret_file`` is a local file and ``listener`` an ``http://`` URL: a
    parser that resolved the entities would read the one or connect to the other.
    """
    file_url = secret_file.resolve().as_uri()
    return {
        "alto-bomb": ("ALTO with an entity bomb (billion laughs)", _alto(billion_laughs("alto"), "&lol9;")),
        "page-bomb": ("PAGE-XML with an entity bomb (billion laughs)", _page(billion_laughs("PcGts"), "&lol9;")),
        "alto-xxe-file": (
            "ALTO with an external entity (local file)",
            _alto(f'<!DOCTYPE alto [<!ENTITY xxe SYSTEM "{file_url}">]>', "&xxe;"),
        ),
        "page-xxe-http": (
            "PAGE-XML with an external entity (URL)",
            _page(f'<!DOCTYPE PcGts [<!ENTITY xxe SYSTEM "{listener}/entity">]>', "&xxe;"),
        ),
        "alto-parameter-entity": (
            "ALTO with an external parameter entity (URL)",
            _alto(f'<!DOCTYPE alto [<!ENTITY % remote SYSTEM "{listener}/dtd"> %remote;]>', "x"),
        ),
        "page-external-dtd": (
            "PAGE-XML with an external DTD (URL)",
            _page(f'<!DOCTYPE PcGts SYSTEM "{listener}/page.dtd">', "x"),
        ),
    }
