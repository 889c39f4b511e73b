"""Fuzzing the page loader: mutated bytes of real PNG, JPEG and TIFF files give a page or an ImageError, fast.

Seeds are small real images in every layout the loader accepts (8- and
16-bit, RGB, palette, 1-bit, EXIF-tagged, LZW and G4 TIFF, progressive JPEG)
plus multi-page TIFF; hypothesis overwrites, inserts and cuts bytes, with a
bias towards header fields (sizes, offsets, counts) set to extreme values.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from segmentation.loading import MIN_SIDE, ImageError, load_page
from segmentation.types import PageImage

#: A small pixel limit keeps each example fast; the checks are the same as at the production limit.
MAX_PIXELS = 2_000_000
#: Most seconds one example may take (decoding a few hundred kilobytes at most).
SECONDS_PER_EXAMPLE = 3.0


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    gray = Image.fromarray(rng.integers(120, 255, (80, 96), dtype=np.uint8))
    rgb = Image.merge("RGB", [gray, gray.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gray])
    exif = Image.Exif()
    exif[0x0112] = 6

    def save(im: Image.Image, fmt: str, **kw: object) -> bytes:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        return buf.getvalue()

    multi = io.BytesIO()
    gray.save(multi, "TIFF", save_all=True, append_images=[gray.rotate(90, expand=True)])
    return [
        save(gray, "PNG"),
        save(rgb, "PNG"),
        save(Image.fromarray((np.asarray(gray, np.uint16) * 257).astype(np.uint16)), "PNG"),
        save(gray.convert("P"), "PNG"),
        save(gray.convert("1"), "PNG"),
        save(gray, "JPEG", quality=80),
        save(rgb, "JPEG", quality=80, progressive=True),
        save(gray, "JPEG", quality=80, exif=exif.tobytes()),
        save(rgb.convert("CMYK"), "JPEG"),
        save(gray, "TIFF"),
        save(rgb, "TIFF", compression="tiff_lzw"),
        save(gray.convert("1"), "TIFF", compression="group4"),
        multi.getvalue(),
    ]


SEEDS = _seeds()
EXTREMES = [b"\x00", b"\xff", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00", b"\x00\x01"]

edits = st.lists(
    st.tuples(
        # Half the edits fall in the first 64 bytes, where the headers are.
        st.one_of(st.integers(0, 64), st.integers(0, 1 << 16)),
        st.integers(0, 8),
        st.one_of(st.sampled_from(EXTREMES), st.binary(max_size=8)),
    ),
    min_size=1,
    max_size=6,
)


def mutate(seed: bytes, changes: list[tuple[int, int, bytes]], cut: int | None) -> bytes:
    data = bytearray(seed)
    for pos, width, insert in changes:
        pos %= len(data) + 1
        data[pos : pos + width] = insert
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    return bytes(data)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's "Corrupt EXIF data" and "Tag data larger..."
@settings(max_examples=1000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(SEEDS), changes=edits, cut=st.none() | st.integers(0, 1 << 16))
def test_load_page_gives_a_page_or_an_image_error(seed: bytes, changes: list, cut: int | None) -> None:
    data = mutate(seed, changes, cut)
    started = time.perf_counter()
    try:
        page = load_page(data, "fuzz.img", max_pixels=MAX_PIXELS)
    except ImageError as exc:
        assert str(exc).startswith("fuzz.img: "), str(exc)  # names the file, then says what is wrong
    else:
        assert isinstance(page, PageImage)
        assert page.pixels.dtype == np.uint8 and page.pixels.ndim == 2
        assert min(page.pixels.shape) >= MIN_SIDE and page.pixels.size <= MAX_PIXELS
    assert time.perf_counter() - started < SECONDS_PER_EXAMPLE


def test_a_damaged_later_tiff_directory_is_an_image_error() -> None:
    from badinputs import damaged_second_directory

    page = Image.fromarray(np.full((80, 96), 200, np.uint8))
    with pytest.raises(ImageError, match="damaged"):
        load_page(damaged_second_directory(page), "two-pages.tif")


@pytest.mark.parametrize("index", range(len(SEEDS)))
def test_every_seed_is_a_valid_input(index: int) -> None:
    """The seeds themselves load (all but the multi-page TIFF): mutations start from real files."""
    if index == len(SEEDS) - 1:
        with pytest.raises(ImageError, match="multi-page TIFF"):
            load_page(SEEDS[index], "seed")
        return
    assert load_page(SEEDS[index], "seed").pixels.shape in ((80, 96), (96, 80))
