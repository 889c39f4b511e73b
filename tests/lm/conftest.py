"""Fixtures of the LM tests: the recognizer's labels, hand-drawn CTC log-probabilities and a tiny real KenLM model.

The tiny model is built by the real ``lmplz`` and ``build_binary`` from a data
folder the fixture writes: two ALTO pages (one training page, one validation
page whose words must never reach the model) and two short name lists.
"""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import pytest

from lm.build import KenLMToolsMissing, LMInfo, build_lm, find_tool
from ocr.charset import Charset

#: A validation page of dufour-1 (ocr/splits.toml): its text must stay out of the LM.
VALIDATION_PAGE = "DAFANCH96_048MIC07695_L-0"
TRAINING_PAGE = "DAFANCH96_048MIC07000_L-0"

TRAINING_TEXT = [
    "Dupont (Jean Pierre) marchand de vin demt à Paris, rue de Lille, 12",
    "Martin (Louis Charles) rentier demt à Paris, rue du Bac, 4",
    "Bernard (Marie) veuve de Mr Charles Lefort, demt à Paris,",
    "Vente par Mr Dupont à Mr Martin",
    "Procuration par Made Marie Bernard à Mr Louis Durand",
    "Notoriété après le décès de Mr Jean Moreau",
    "Garnier (Pierre Louis) propriétaire demt à Paris, rue de Rivoli, 80",
    "Obligation par Mr Charles Rousseau au profit de Mr Jean Dupont",
    "Petit (Marie Louise) veuve de Mr Pierre Lambert, demt à Paris,",
    "Testament de Mr Louis Martin, rentier",
    "Dépôt de pièces par Mr Pierre Garnier",
    "Quittance par Mr Jean Bernard à Made Marie Petit",
]
VALIDATION_TEXT = ["Zyxwvut (Qqqq) secretvalidationword"]
SURNAMES = [
    "DUPONT",
    "MARTIN",
    "BERNARD",
    "GARNIER",
    "GIMONET",
    "PETIT",
    "MOREAU",
    "LAMBERT",
    "ROUSSEAU",
    "DURAND",
    "LEFORT",
    "BARRIERE",
    "LE GOFF",
    "MANTEL",
    "MARTEL",
    "MARTEK",
]
FIRSTNAMES = ["JEAN", "PIERRE", "LOUIS", "CHARLES", "MARIE", "LOUISE", "HÉLÈNE", "ALO\x9fS"]


def tools_available() -> bool:
    try:
        find_tool("lmplz")
        find_tool("build_binary")
    except KenLMToolsMissing:
        return False
    return True


def require_kenlm_tools() -> None:
    """Skip when lmplz/build_binary are missing, except in CI where the set-up must have built them."""
    if not tools_available():
        if os.environ.get("CI"):
            pytest.fail("lmplz/build_binary missing in CI: the set-up (scripts/build_kenlm.sh) must build them")
        pytest.skip("lmplz/build_binary not built (run bash scripts/build_kenlm.sh .venv)")


def write_alto(path: Path, lines: list[str]) -> None:
    """Write a minimal ALTO v4 page whose text lines are ``lines`` (one String per word), with a JPEG beside it."""
    body = []
    for i, text in enumerate(lines):
        y = 100 + 60 * i
        words = "".join(f"<String CONTENT={quoteattr(w)}/>" for w in text.split())
        body.append(
            f'<TextLine ID="l{i}" BASELINE="10 {y + 40} 900 {y + 40}" HPOS="10" VPOS="{y}" WIDTH="890" HEIGHT="50">'
            f'<Shape><Polygon POINTS="10 {y} 900 {y} 900 {y + 50} 10 {y + 50}"/></Shape>{words}</TextLine>'
        )
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#"><Description><sourceImageInformation>'
        f"<fileName>{path.stem}.jpg</fileName></sourceImageInformation></Description>"
        '<Layout><Page WIDTH="1000" HEIGHT="2000" ID="p"><PrintSpace><TextBlock ID="b">'
        + "".join(body)
        + "</TextBlock></PrintSpace></Page></Layout></alto>",
        encoding="utf-8",
    )
    # find_ground_truth lists XML files that sit beside an image; the corpus never reads its pixels.
    path.with_suffix(".jpg").write_bytes(b"\xff\xd8\xff\xd9")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder shaped like ../shared/data with one training page, one validation page and two name lists."""
    root = tmp_path_factory.mktemp("data")
    volume = root / "lectaurep" / "train" / "dufour-1"  # the validation page is a dufour-1 page
    volume.mkdir(parents=True)
    write_alto(volume / f"{TRAINING_PAGE}.xml", TRAINING_TEXT)
    write_alto(volume / f"{VALIDATION_PAGE}.xml", VALIDATION_TEXT)
    names = root / "names"
    names.mkdir()
    (names / "surnames.txt").write_text("\n".join(SURNAMES) + "\n", encoding="utf-8")
    (names / "firstnames.txt").write_text("\n".join(FIRSTNAMES) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def tiny_lm(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> LMInfo:
    """A names LM built by the real KenLM tools from ``tiny_data`` (skipped only outside CI when they are missing)."""
    require_kenlm_tools()
    out = tmp_path_factory.mktemp("lm") / "names"
    return build_lm(tiny_data, out, order=3, prune=(0,))


@pytest.fixture(scope="session")
def labels() -> list[str]:
    """The CTC labels of a recognizer with the default French charset (blank first)."""
    return Charset.build([]).labels


def peaked(labels: list[str], frames: list[dict[str, float]], floor: float = 1e-4) -> np.ndarray:
    """Return (frames, classes) float32 log-probabilities; each frame puts the given mass on its characters.

    The rest goes to the blank: ``{}`` is a blank frame; characters may be ``""`` for the blank itself.
    """
    index = {c: i for i, c in enumerate(labels)}
    index[""] = 0
    out = np.full((len(frames), len(labels)), floor, np.float64)
    for t, mass in enumerate(frames):
        for char, p in mass.items():
            out[t, index[char]] = p
        if "" not in mass:
            out[t, 0] = max(floor, 1.0 - sum(mass.values()))
    out /= out.sum(axis=1, keepdims=True)
    return np.log(out).astype(np.float32)


def spell(text: str, p: float = 0.95, confusions: dict[int, dict[str, float]] | None = None) -> list[dict[str, float]]:
    """Return frames reading ``text``: a peaked frame per character, each followed by a blank frame.

    ``confusions[i]`` replaces the frame of character ``i``.
    """
    frames: list[dict[str, float]] = [{}]
    for i, char in enumerate(text):
        frames.append((confusions or {}).get(i, {char: p}))
        frames.append({})
    return frames
