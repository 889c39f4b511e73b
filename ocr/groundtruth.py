"""Ground-truth readers: ALTO v4 and PAGE-XML pages into typed objects.

Parsing goes through defusedxml with DTDs forbidden: an entity bomb or an
external entity is refused with :class:`GroundTruthError`, never expanded or
fetched.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from segmentation.types import Point

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")

# Some LECTAUREP CONTENT attributes are escaped twice (``&amp;amp;``): after one
# XML unescape a literal ``&amp;`` remains. Undo exactly the five XML escapes
# once more; a general HTML unescape would turn ``&copy`` or ``&c`` abbreviations
# into symbols.
_XML_ESCAPES = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&apos;": "'"}
_XML_ESCAPE_RE = re.compile("|".join(map(re.escape, _XML_ESCAPES)))


class GroundTruthError(ValueError):
    """A ground-truth file that cannot be read safely or is malformed."""


@dataclass
class GroundTruthLine:
    """One transcribed line: id, polygon and baseline in pixels, NFC text and line type."""

    id: str
    polygon: list[Point]
    baseline: list[Point]
    text: str
    type: str = "default"
    block: str = ""


@dataclass
class GroundTruthPage:
    """A transcribed page: image path, size in pixels and its lines in document order."""

    xml_path: Path
    image_path: Path | None
    width: int
    height: int
    lines: list[GroundTruthLine] = field(default_factory=list)

    @property
    def id(self) -> str:
        """Return the page id: the XML file's stem, without the ``.alto`` / ``.page`` of registre's own records."""
        stem = Path(self.xml_path.stem)
        return stem.stem if stem.suffix in _XML_KINDS else stem.name


def normalize_text(text: str) -> str:
    """Return ``text`` in NFC with the double XML escapes undone and outer spaces stripped."""
    text = _XML_ESCAPE_RE.sub(lambda m: _XML_ESCAPES[m.group(0)], text)
    return unicodedata.normalize("NFC", text).strip()


def _parse(path: Path) -> Element:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GroundTruthError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        return SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise GroundTruthError(
            f"{path}: refused unsafe XML ({type(exc).__name__}: DTDs and entities are not allowed)"
        ) from exc
    except SafeET.ParseError as exc:
        raise GroundTruthError(f"{path}: not well-formed XML ({exc})") from exc


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(el: Element, name: str) -> list[Element]:
    return [c for c in el if _local(c.tag) == name]


def _iter(el: Element, name: str) -> list[Element]:
    return [c for c in el.iter() if _local(c.tag) == name]


def _number(value: str | None, where: str, default: int = 0) -> int:
    """Return an attribute as a whole number of pixels; raises GroundTruthError for non-finite or junk values."""
    if value is None or not value.strip():
        return default
    try:
        return round(float(value))
    except (ValueError, OverflowError) as exc:  # "x", "nan", "inf"
        raise GroundTruthError(f"{where}: bad number {value[:30]!r}") from exc


def _points(text: str | None, where: str) -> list[Point]:
    """Parse ``"x y x y"`` (ALTO) or ``"x,y x,y"`` (PAGE, ALTO 4.2) into integer points."""
    if not text or not text.strip():
        return []
    nums = re.split(r"[\s,]+", text.strip())
    try:
        vals = [round(float(n)) for n in nums]
    except (ValueError, OverflowError) as exc:
        raise GroundTruthError(f"{where}: bad coordinates {text[:60]!r}") from exc
    if len(vals) % 2:
        raise GroundTruthError(f"{where}: odd number of coordinates")
    return list(zip(vals[::2], vals[1::2], strict=True))


#: Double suffixes of XML files named after their page image: registre's own records (``page.alto.xml``).
_XML_KINDS = (".alto", ".page")


def _beside(xml_path: Path) -> list[Path]:
    """Return the image paths an XML file may sit beside: ``p.xml`` and ``p.alto.xml`` go with ``p.jpg`` etc."""
    stem = xml_path.with_suffix("")
    stems = [stem] + [stem.with_suffix("") for kind in _XML_KINDS if stem.suffix == kind]
    return [s.with_suffix(suffix) for s in stems for suffix in IMAGE_SUFFIXES]


def _find_image(xml_path: Path, declared: str | None) -> Path | None:
    if declared:
        cand = xml_path.parent / Path(declared).name
        if cand.exists():
            return cand
    return next((cand for cand in _beside(xml_path) if cand.exists()), None)


def read_alto(path: str | Path) -> GroundTruthPage:
    """Return the page of an ALTO (v2–v4) file; raises GroundTruthError on unsafe or malformed XML."""
    path = Path(path)
    root = _parse(path)
    if _local(root.tag) != "alto":
        raise GroundTruthError(f"{path}: not an ALTO document (root <{_local(root.tag)}>)")
    tags = {t.get("ID"): (t.get("LABEL") or "") for t in _iter(root, "OtherTag")}
    pages = _iter(root, "Page")
    if not pages:
        raise GroundTruthError(f"{path}: no <Page> element")
    page = pages[0]
    width, height = (
        _number(page.get("WIDTH"), f"{path}: page WIDTH"),
        _number(page.get("HEIGHT"), f"{path}: page HEIGHT"),
    )
    file_names = [f.text for f in _iter(root, "fileName") if f.text]
    out = GroundTruthPage(path, _find_image(path, file_names[0] if file_names else None), width, height)
    for block in _iter(page, "TextBlock"):
        block_type = " ".join(tags.get(t, "") for t in (block.get("TAGREFS") or "").split()).strip()
        for line in _children(block, "TextLine"):
            lid = line.get("ID") or f"line_{len(out.lines)}"
            where = f"{path}:{lid}"
            shapes = [p for s in _children(line, "Shape") for p in _children(s, "Polygon")]
            polygon = _points(shapes[0].get("POINTS"), where) if shapes else []
            if not polygon:
                x, y = _number(line.get("HPOS"), where), _number(line.get("VPOS"), where)
                w, h = _number(line.get("WIDTH"), where), _number(line.get("HEIGHT"), where)
                polygon = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
            words = [s.get("CONTENT", "") for s in _children(line, "String")]
            line_type = " ".join(tags.get(t, "") for t in (line.get("TAGREFS") or "").split()).strip()
            out.lines.append(
                GroundTruthLine(
                    id=lid,
                    polygon=polygon,
                    baseline=_points(line.get("BASELINE"), where),
                    text=normalize_text(" ".join(words)),
                    type=line_type or "default",
                    block=block_type,
                )
            )
    return out


def _page_line_type(custom: str | None) -> str:
    m = re.search(r"structure\s*\{[^}]*type:\s*([^;}]+)", custom or "")
    return m.group(1).strip() if m else "default"


def read_page_xml(path: str | Path) -> GroundTruthPage:
    """Return the page of a PAGE-XML (2013/2019) file; raises GroundTruthError on unsafe or malformed XML."""
    path = Path(path)
    root = _parse(path)
    if _local(root.tag) != "PcGts":
        raise GroundTruthError(f"{path}: not a PAGE-XML document (root <{_local(root.tag)}>)")
    pages = _children(root, "Page")
    if not pages:
        raise GroundTruthError(f"{path}: no <Page> element")
    page = pages[0]
    width = _number(page.get("imageWidth"), f"{path}: imageWidth")
    height = _number(page.get("imageHeight"), f"{path}: imageHeight")
    out = GroundTruthPage(path, _find_image(path, page.get("imageFilename")), width, height)
    for region in _iter(page, "TextRegion"):
        block_type = region.get("type") or _page_line_type(region.get("custom"))
        for line in _children(region, "TextLine"):
            lid = line.get("id") or f"line_{len(out.lines)}"
            where = f"{path}:{lid}"
            coords = _children(line, "Coords")
            base = _children(line, "Baseline")
            # The line's own TextEquiv (not those of its Words/Glyphs).
            equivs = _children(line, "TextEquiv")
            text = ""
            if equivs:
                uni = _children(equivs[0], "Unicode")
                text = (uni[0].text or "") if uni else ""
            out.lines.append(
                GroundTruthLine(
                    id=lid,
                    polygon=_points(coords[0].get("points"), where) if coords else [],
                    baseline=_points(base[0].get("points"), where) if base else [],
                    text=normalize_text(text),
                    type=_page_line_type(line.get("custom")),
                    block=block_type,
                )
            )
    return out


def read_ground_truth(path: str | Path) -> GroundTruthPage:
    """Return the page of an ALTO or PAGE-XML file, whichever it is."""
    path = Path(path)
    root = _parse(path)
    kind = _local(root.tag)
    if kind == "alto":
        return read_alto(path)
    if kind == "PcGts":
        return read_page_xml(path)
    raise GroundTruthError(f"{path}: neither ALTO nor PAGE-XML (root <{kind}>)")


def find_ground_truth(gt_dir: str | Path) -> list[Path]:
    """Return the XML files under ``gt_dir`` (recursively) that sit beside a page image, sorted."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"{gt_dir}: not a directory")
    return sorted(p for p in gt_dir.rglob("*.xml") if any(cand.exists() for cand in _beside(p)))
