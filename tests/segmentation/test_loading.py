import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from segmentation.loading import (
    CorruptImage,
    EmptyFile,
    ImageError,
    NotAnImage,
    TooLarge,
    TooSmall,
    TruncatedImage,
    UnreadableFile,
    UnsupportedImage,
    load_page,
    load_page_file,
)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def page_array(h: int = 120, w: int = 90) -> np.ndarray:
    """A gray page: white paper with a dark bar in the top-left quarter (shows orientation)."""
    a = np.full((h, w), 230, np.uint8)
    a[10:30, 10:40] = 20
    return a


def png_with_size(width: int, height: int) -> bytes:
    """A valid-looking PNG header declaring width x height, with almost no pixel data (a bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF"])
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_common_formats_decode_to_uint8_gray(fmt, mode):
    a = page_array()
    im = Image.fromarray(a).convert(mode)
    page = load_page(encode(im, fmt), f"p.{fmt.lower()}")
    assert page.pixels.dtype == np.uint8 and page.pixels.shape == a.shape
    assert abs(int(page.pixels[20, 20]) - 20) < 12 and abs(int(page.pixels[100, 80]) - 230) < 12
    assert page.source == f"p.{fmt.lower()}"


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_gray_is_scaled_not_clipped(fmt):
    a = np.full((100, 80), 40000, np.uint16)
    a[:50] = 65535
    a[:10, :10] = 0
    im = Image.fromarray(a)
    assert im.mode.startswith("I")
    page = load_page(encode(im, fmt), "deep")
    assert page.pixels[80, 40] == round(40000 / 257)
    assert page.pixels[30, 40] == 255 and page.pixels[0, 0] == 0


def test_cmyk_jpeg():
    im = Image.new("CMYK", (90, 120), (0, 0, 0, 0))  # no ink: white paper
    im.paste((0, 0, 0, 255), (10, 10, 40, 30))  # full black
    page = load_page(encode(im, "JPEG"), "cmyk.jpg")
    assert page.pixels[100, 80] > 240 and page.pixels[20, 20] < 30


def test_rgba_transparency_becomes_paper():
    im = Image.new("RGBA", (90, 120), (0, 0, 0, 0))  # fully transparent black
    im.paste((10, 10, 10, 255), (10, 10, 40, 30))
    page = load_page(encode(im, "PNG"), "alpha.png")
    assert page.pixels[100, 80] == 255 and page.pixels[20, 20] < 20


def test_a_transparent_margin_takes_the_paper_tone_of_the_page():
    """A scan with a transparent margin: the margin is shown as the page's own (gray) paper, not as white."""
    rng = np.random.default_rng(0)
    gray = rng.integers(176, 196, (120, 90), dtype=np.uint8)  # old paper, ~186
    gray[30:40, 30:80] = 40  # a stroke of ink
    rgba = Image.fromarray(gray).convert("RGBA")
    alpha = np.full(gray.shape, 255, np.uint8)
    alpha[:, :20] = 0
    alpha[:, 20] = 128  # a soft edge
    rgba.putalpha(Image.fromarray(alpha))
    page = load_page(encode(rgba, "PNG"), "margin.png")
    paper = np.percentile(gray[:, 20:], 90)  # of the pixels at least half opaque
    assert np.all(page.pixels[:, :20] == round(paper))
    assert abs(int(page.pixels[0, 20]) - (int(gray[0, 20]) + paper) / 2) <= 1
    assert np.array_equal(page.pixels[:, 21:], gray[:, 21:])
    # What the line segmenter takes as the paper tone stays that of the opaque page.
    assert np.percentile(page.pixels, 90) == pytest.approx(paper, abs=1)


def test_palette_and_one_bit():
    a = page_array()
    pal = Image.fromarray(a).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    assert load_page(encode(pal, "PNG"), "pal.png").pixels[20, 20] < 40
    pal.info["transparency"] = 0
    assert load_page(encode(pal, "PNG", transparency=0), "pal-t.png").pixels.shape == a.shape
    bw = Image.fromarray(a).convert("1")
    for fmt, kw in (("PNG", {}), ("TIFF", {"compression": "group4"})):
        page = load_page(encode(bw, fmt, **kw), "bw")
        assert set(np.unique(page.pixels)) <= {0, 255}
        assert page.pixels[20, 20] == 0 and page.pixels[100, 80] == 255


def test_exif_orientation_is_applied():
    a = page_array(120, 90)
    im = Image.fromarray(a).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: display rotated 90° clockwise
    page = load_page(encode(im, "JPEG", exif=exif.tobytes()), "turned.jpg")
    assert page.pixels.shape == (90, 120)
    # The dark bar at the stored top-left ends at the displayed top-right.
    assert page.pixels[20, 95] < 60 and page.pixels[20, 20] > 200


def test_multi_page_tiff_is_refused_clearly():
    frames = [Image.fromarray(page_array()) for _ in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:])
    with pytest.raises(UnsupportedImage, match="multi-page TIFF: 3 frames; split it into one file per page"):
        load_page(buf.getvalue(), "volume.tif")


def test_decompression_bomb_refused_before_decoding():
    # Declares 100 000 x 100 000 pixels in ~100 bytes: Pillow's own guard fires.
    with pytest.raises(TooLarge, match="bomb.png"):
        load_page(png_with_size(100_000, 100_000), "bomb.png")
    # Over our limit but under Pillow's: our header check fires, before any decoding.
    with pytest.raises(TooLarge, match=r"11000x11000 = 121,000,000 pixels exceeds the limit of 120,000,000"):
        load_page(png_with_size(11_000, 11_000), "big.png")
    with pytest.raises(TooLarge):
        load_page(encode(Image.fromarray(page_array()), "PNG"), "small-limit.png", max_pixels=5_000)


@pytest.mark.parametrize("fmt,kw", [("JPEG", {}), ("PNG", {}), ("TIFF", {}), ("TIFF", {"compression": "tiff_lzw"})])
def test_truncated_files_are_errors(fmt, kw):
    rng = np.random.default_rng(0)
    noisy = Image.fromarray((rng.random((200, 160)) * 255).astype(np.uint8))
    data = encode(noisy, fmt, **kw)
    for cut in (0.5, 0.95):
        with pytest.raises(CorruptImage) as info:
            load_page(data[: int(len(data) * cut)], f"cut.{fmt.lower()}")
        assert "truncated" in str(info.value)
    # The uncompressed formats keep their header up front: the error names the truncation exactly.
    if fmt != "TIFF" or not kw:
        with pytest.raises(TruncatedImage):
            load_page(data[: int(len(data) * 0.9)], "cut")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_not_images():
    with pytest.raises(EmptyFile, match="empty"):
        load_page(b"", "zero.jpg")
    with pytest.raises(NotAnImage, match="not an image.*starts with 'Dear archivist"):
        load_page(b"Dear archivist, here is the scan you asked for.", "letter.jpg")
    with pytest.raises(NotAnImage):
        load_page(b"%PDF-1.7\n" + b"\x00" * 200, "scan.pdf")
    gif = encode(Image.fromarray(page_array()), "GIF")
    with pytest.raises(UnsupportedImage, match="GIF"):
        load_page(gif, "anim.gif")


@pytest.mark.parametrize("size", [(1, 1), (100_000, 10), (5_000, 70), (40, 4_000)])
def test_degenerate_sizes(size):
    im = Image.new("L", size, 255)
    with pytest.raises(TooSmall, match=f"{size[0]}x{size[1]}"):
        load_page(encode(im, "PNG"), "odd.png")


def test_load_page_file(tmp_path):
    path = tmp_path / "page.png"
    path.write_bytes(encode(Image.fromarray(page_array()), "PNG"))
    assert load_page_file(path).pixels.shape == (120, 90)
    with pytest.raises(UnreadableFile, match="missing.png"):
        load_page_file(tmp_path / "missing.png")


def test_every_error_is_an_image_error_and_a_value_error():
    for cls in (EmptyFile, NotAnImage, UnsupportedImage, TooLarge, TooSmall, TruncatedImage, CorruptImage):
        assert issubclass(cls, ImageError) and issubclass(cls, ValueError)


def test_real_scan(example_page):
    page = load_page_file(example_page)
    assert page.pixels.dtype == np.uint8 and page.pixels.ndim == 2
    assert page.width > 1000 and page.height > 1000
