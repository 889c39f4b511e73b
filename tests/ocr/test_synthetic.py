"""Synthetic register lines: shape and text contract, glyph coverage, determinism, vocabulary sources."""

from __future__ import annotations

import os
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen

from ocr.charset import FRENCH_BASE, Charset
from ocr.fonts import FontFace, discover_fonts, drawable_chars, load_faces
from ocr.synthetic import (
    SyntheticLines,
    TextSampler,
    load_vocabulary,
    read_training_texts,
    split_superscripts,
    superscript_convention,
)
from segmentation.crop import LINE_HEIGHT

SURNAMES = ["LEFEVRE", "DUPONT", "MARTIN", "BOEUF", "DE LA FONTAINE", "LEGER", "RIANT", "TALABOT", "NICOLLE"]
FIRSTNAMES = ["MARIE", "LOUIS", "JEAN", "HÉLÈNE", "ADÈLE", "FRANÇOIS", "JOSEPH", "NOËL", "ANTOINE"]

INSTALLED = discover_fonts()


def _require_fonts() -> None:
    if not INSTALLED:
        if os.environ.get("CI"):
            pytest.fail("no TrueType/OpenType font installed: run the project set-up (scripts/apt-packages.txt)")
        pytest.skip("no font installed here (install the fonts-* packages of scripts/apt-packages.txt)")


@pytest.fixture(scope="module")
def names_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A names folder like shared/data/names, with no lectaurep/ beside it (built-in vocabulary only)."""
    d = tmp_path_factory.mktemp("data") / "names"
    d.mkdir()
    (d / "surnames.txt").write_text("\n".join(SURNAMES) + "\n", encoding="utf-8")
    (d / "firstnames.txt").write_text("\n".join(FIRSTNAMES) + "\n", encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def generator(names_dir: Path) -> SyntheticLines:
    _require_fonts()
    return SyntheticLines(names_dir)


def test_lines_are_48px_uint8_crops_with_encodable_nfc_text(generator: SyntheticLines) -> None:
    charset = Charset.build([])
    lines = generator(np.random.default_rng(0), 60)
    assert len(lines) == 60
    for img, text in lines:
        assert isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 2
        assert img.shape[0] == LINE_HEIGHT and img.shape[1] >= 8
        assert text and text == text.strip() and unicodedata.normalize("NFC", text) == text
        assert charset.encode(text) and not charset.unknown(text), text
        # Room for the CTC label at the trainer's 0.8x width augmentation and stride 2.
        assert int(img.shape[1] * 0.8) // 2 >= len(text), (img.shape, text)


def test_lines_are_dark_ink_on_light_paper(generator: SyntheticLines) -> None:
    for img, text in generator(np.random.default_rng(1), 40):
        paper = np.percentile(img, 75)
        ink = np.percentile(img, 1)
        assert paper > 120, text
        assert paper - ink > 40, (text, paper, ink)


def test_same_seed_same_lines_other_seed_other_lines(generator: SyntheticLines) -> None:
    a = generator(np.random.default_rng(7), 12)
    b = generator(np.random.default_rng(7), 12)
    c = generator(np.random.default_rng(8), 12)
    assert [t for _, t in a] == [t for _, t in b]
    assert all(np.array_equal(x, y) for (x, _), (y, _) in zip(a, b, strict=True))
    assert [t for _, t in a] != [t for _, t in c]


def test_text_follows_register_lines(names_dir: Path) -> None:
    sampler = TextSampler(load_vocabulary(names_dir))
    rng = np.random.default_rng(3)
    texts = [superscript_convention(sampler(rng), rng)[0] for _ in range(3000)]
    lengths = np.array([len(t) for t in texts])
    # Real LECTAUREP lines: median 11 characters, 90 % under 48, tables of short cells.
    assert 6 <= np.median(lengths) <= 18
    assert (lengths <= 3).mean() > 0.1
    assert lengths.max() <= 70 and np.percentile(lengths, 90) >= 35
    joined = " ".join(texts)
    assert any(c.isdigit() for c in joined) and "rue" in joined
    # Names come from the name files, in register case.
    assert any(name in joined for name in ("Dupont", "DUPONT", "Martin", "MARTIN", "Talabot", "TALABOT"))
    assert any(first in joined for first in ("Marie", "Louis", "Hélène", "François", "Noël"))
    alphabet = set(FRENCH_BASE)
    assert {c for t in texts for c in t} <= alphabet


def test_surnames_get_register_forms(names_dir: Path) -> None:
    sampler = TextSampler(load_vocabulary(names_dir))
    rng = np.random.default_rng(4)
    forms = {sampler.surname(rng) for _ in range(2000)}
    assert "Lefevre" in forms and "LEFEVRE" in forms
    # Accents INSEE stripped are sometimes put back.
    assert forms & {"Lefèvre", "LEFÈVRE", "Léger", "LÉGER", "Bœuf", "BŒUF"}


def test_superscripts_are_drawn_raised_and_labelled_by_convention() -> None:
    assert split_superscripts("dem^t à Paris") == [("dem", False), ("t", True), (" à Paris", False)]
    assert split_superscripts("8.400^f") == [("8.400", False), ("f", True)]
    rng = np.random.default_rng(0)
    pairs = [superscript_convention("Mr Dupont dem^t à Paris", rng) for _ in range(300)]
    labels = {label for label, _ in pairs}
    # random-set-1 keeps the caret, dufour-1 and riant-4 transcribe the raised ending flat.
    assert labels == {"Mr Dupont dem^t à Paris", "Mr Dupont demt à Paris"}
    assert ("Mr Dupont demt à Paris", "M^r Dupont dem^t à Paris") in pairs


def _tiny_font(path: Path) -> Path:
    """Write a TrueType font mapping 'a' to a box and 'b' to an EMPTY glyph (a cmap entry that draws nothing)."""
    fb = FontBuilder(1000, isTTF=True)
    fb.setupGlyphOrder([".notdef", "space", "a", "b"])
    fb.setupCharacterMap({32: "space", ord("a"): "a", ord("b"): "b"})
    pen = TTGlyphPen(None)
    pen.moveTo((100, 0))
    pen.lineTo((100, 500))
    pen.lineTo((400, 500))
    pen.lineTo((400, 0))
    pen.closePath()
    box = pen.glyph()
    empty = TTGlyphPen(None).glyph()
    fb.setupGlyf({".notdef": empty, "space": empty, "a": box, "b": empty})
    fb.setupHorizontalMetrics({".notdef": (500, 0), "space": (250, 0), "a": (500, 100), "b": (500, 0)})
    fb.setupHorizontalHeader(ascent=800, descent=-200)
    fb.setupNameTable({"familyName": "Tiny", "styleName": "Regular"})
    fb.setupOS2()
    fb.setupPost()
    fb.save(str(path))
    return path


def test_coverage_refuses_empty_glyphs(tmp_path: Path) -> None:
    font = _tiny_font(tmp_path / "Tiny.ttf")
    assert drawable_chars(font, "ab z") == frozenset("a")


def test_coverage_excludes_a_font_lacking_a_glyph(names_dir: Path) -> None:
    _require_fonts()
    wanted = "".join(sorted(set(FRENCH_BASE)))
    faces = load_faces(INSTALLED, wanted)
    lacking = [f for f in faces if "œ" not in f.chars and not f.caps_only]
    having = [f for f in faces if "œ" in f.chars and not f.caps_only]
    if not lacking or not having:
        pytest.skip("needs one installed font with œ and one without")
    assert not lacking[0].covers("Sœur Noël") and having[0].covers("Sœur Noël")
    gen = SyntheticLines(names_dir, fonts=[lacking[0].path, having[0].path])
    rng = np.random.default_rng(0)
    picked = {gen.pick_face(rng, "Sœur Noël") for _ in range(50)}
    assert picked == {next(f for f in gen.faces if f.path == having[0].path)}
    only_lacking = SyntheticLines(names_dir, fonts=[lacking[0].path])
    assert only_lacking.pick_face(rng, "Sœur Noël") is None
    # Every line it does make is drawable in its one font.
    for _ in range(20):
        _img, text, face = only_lacking.sample(rng)
        assert face.covers(text) and "œ" not in text


def test_caps_only_faces_get_no_lower_case() -> None:
    face = FontFace(Path("x.otf"), "X", "script", frozenset("ABCabc12"), caps_only=True)
    assert face.covers("ABC 12") and not face.covers("Abc")


def test_missing_fonts_are_reported(names_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no usable font"):
        SyntheticLines(names_dir, fonts=[tmp_path / "nothing.ttf"])


def test_vocabulary_reads_training_pages_only(tmp_path: Path, repo_root: Path) -> None:
    example = repo_root / "examples" / "pages" / "DAFANCH96_048MIC06492_L-0.xml"
    vol = tmp_path / "lectaurep" / "train" / "riant-4"
    vol.mkdir(parents=True)
    shutil.copy(example, vol / example.name)  # a validation page: must stay out
    shutil.copy(example, vol / "DAFANCH96_048MIC06400_L-0.xml")  # same text under a training page id
    lines, printed = read_training_texts(tmp_path / "lectaurep" / "train")
    from ocr.groundtruth import read_alto

    page = read_alto(example)
    expected = [ln.text for ln in page.lines if ln.text]
    assert len(lines) + len(printed) == len(expected) > 0
    names = tmp_path / "names"
    names.mkdir()
    (names / "surnames.txt").write_text("DUPONT\n", encoding="utf-8")
    (names / "firstnames.txt").write_text("MARIE\n", encoding="utf-8")
    vocab = load_vocabulary(names)
    assert vocab.lines and set(vocab.alphabet) >= {c for t in expected for c in t}
