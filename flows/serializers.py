"""Serializers of one :class:`~flows.records.PageRecord`: JSON, ALTO v4 and PAGE-XML 2019.

Both XML formats are what eScriptorium and Transkribus import: pixel
coordinates of the original scan, one text block/region holding the lines in
reading order, a polygon and a baseline per line, one String/Word per word
with its box and confidence. They validate against the official schemas
shipped in ``flows/schemas/`` (ALTO 4.4, PAGE 2019-07-15; see
``flows/schemas/README.md``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from lxml import etree

from flows.records import Box, LineRecord, PageRecord, Point, record_to_json

ALTO_NS = "http://www.loc.gov/standards/alto/ns-v4#"
ALTO_SCHEMA_LOCATION = f"{ALTO_NS} http://www.loc.gov/standards/alto/v4/alto-4-4.xsd"
PAGE_NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
PAGE_SCHEMA_LOCATION = f"{PAGE_NS} {PAGE_NS}/pagecontent.xsd"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

# Characters XML 1.0 cannot carry at all (controls, lone surrogates, U+FFFE/U+FFFF).
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NOT_NCNAME = re.compile(r"[^A-Za-z0-9._-]")


def xml_text(text: str) -> str:
    """Return ``text`` without the characters XML 1.0 forbids."""
    return _XML_ILLEGAL.sub("", text)


def xml_id(raw: str, prefix: str, taken: set[str]) -> str:
    """Return a unique XML ID (an NCName) made from ``raw``, registering it in ``taken``."""
    base = _NOT_NCNAME.sub("_", raw) or prefix
    if not (base[0].isalpha() or base[0] == "_"):
        base = f"{prefix}_{base}"
    ident, n = base, 1
    while ident in taken:
        n += 1
        ident = f"{base}_{n}"
    taken.add(ident)
    return ident


def _now(record: PageRecord) -> str:
    return record.created or datetime.now(UTC).isoformat(timespec="seconds")


def _clamp_points(points: Sequence[Point], width: int, height: int) -> list[Point]:
    """Return points clipped to the page (PAGE-XML allows no negative or out-of-page coordinates)."""
    return [(min(max(int(x), 0), max(width - 1, 0)), min(max(int(y), 0), max(height - 1, 0))) for x, y in points]


def _baseline_points(line: LineRecord, width: int, height: int) -> list[Point]:
    """Return the baseline with at least two points (a level line under the box when absent)."""
    pts = _clamp_points(line.baseline, width, height)
    if len(pts) >= 2:
        return pts
    x0, _, x1, y1 = line.bbox
    if len(pts) == 1:
        return [pts[0], (max(pts[0][0], x1), pts[0][1])]
    return _clamp_points([(x0, y1), (x1, y1)], width, height)


def _box_polygon(box: Box) -> list[Point]:
    x0, y0, x1, y1 = box
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _points_space(points: Sequence[Point]) -> str:
    """Return ALTO points as ``x1 y1 x2 y2 ...`` (the form eScriptorium writes and reads)."""
    return " ".join(f"{x} {y}" for x, y in points)


def _points_comma(points: Sequence[Point]) -> str:
    """Return PAGE points as ``x1,y1 x2,y2 ...``."""
    return " ".join(f"{x},{y}" for x, y in points)


def _conf(value: float) -> str:
    return f"{min(max(float(value), 0.0), 1.0):.4f}"


def _ordered_lines(record: PageRecord) -> list[LineRecord]:
    return sorted(record.lines, key=lambda ln: ln.order)


def _lines_box(lines: Sequence[LineRecord], width: int, height: int) -> Box:
    if not lines:
        return (0, 0, max(width - 1, 0), max(height - 1, 0))
    boxes = [ln.bbox for ln in lines]
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    (x0, y0), (x1, y1) = _clamp_points([(x0, y0), (x1, y1)], width, height)
    return x0, y0, x1, y1


def _software_settings(record: PageRecord) -> str:
    parts = [f"model={record.model_version}", f"decoder={record.decoder}"]
    if record.lm_version:
        parts.append(f"lm={record.lm_version}")
    if record.segmenter:
        parts.append(f"segmenter={record.segmenter}")
    if record.segmentation_confidence is not None:
        # The line finder's certainty over the page; "low" flags a page whose lines may be missing.
        low = " (low)" if record.low_segmentation_confidence else ""
        parts.append(f"segmentation_confidence={record.segmentation_confidence:.3f}{low}")
    return "; ".join(parts)


def _source_name(record: PageRecord) -> str:
    """Return the scan's file name (the last part of its source key) without characters XML forbids."""
    return xml_text(record.source_key.rsplit("/", 1)[-1])


def to_alto(record: PageRecord) -> bytes:
    """Return the record as ALTO v4 XML (UTF-8), coordinates in pixels of the original scan."""

    def sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: object) -> etree._Element:
        el = etree.SubElement(parent, f"{{{ALTO_NS}}}{tag}", {k: xml_text(str(v)) for k, v in attrs.items()})
        if text is not None:
            el.text = xml_text(text)
        return el

    root = etree.Element(f"{{{ALTO_NS}}}alto", nsmap={None: ALTO_NS, "xsi": XSI_NS})
    root.set(f"{{{XSI_NS}}}schemaLocation", ALTO_SCHEMA_LOCATION)
    desc = sub(root, "Description")
    sub(desc, "MeasurementUnit", "pixel")
    sub(sub(desc, "sourceImageInformation"), "fileName", _source_name(record))
    proc = sub(desc, "Processing", ID="registre_processing")
    sub(proc, "processingDateTime", _now(record))
    sub(proc, "processingStepSettings", _software_settings(record))
    software = sub(proc, "processingSoftware")
    sub(software, "softwareName", "registre")
    sub(software, "softwareVersion", record.software.removeprefix("registre").strip() or "unknown")

    layout = sub(root, "Layout")
    w, h = record.width, record.height
    page = sub(layout, "Page", ID=xml_id(record.page_id, "page", set()), WIDTH=w, HEIGHT=h, PHYSICAL_IMG_NR=1)
    space = sub(page, "PrintSpace", HPOS=0, VPOS=0, WIDTH=w, HEIGHT=h)
    lines = _ordered_lines(record)
    if not lines:
        return _xml_bytes(root)
    taken: set[str] = set()
    bx0, by0, bx1, by1 = _lines_box(lines, w, h)
    block = sub(
        space, "TextBlock", ID=xml_id("block_1", "block", taken), HPOS=bx0, VPOS=by0, WIDTH=bx1 - bx0, HEIGHT=by1 - by0
    )
    sub(sub(block, "Shape"), "Polygon", POINTS=_points_space(_box_polygon((bx0, by0, bx1, by1))))
    for line in lines:
        polygon = _clamp_points(line.polygon, w, h)
        x0, y0, x1, y1 = line.bbox
        tl = sub(
            block,
            "TextLine",
            ID=xml_id(line.id, "line", taken),
            BASELINE=_points_space(_baseline_points(line, w, h)),
            HPOS=x0,
            VPOS=y0,
            WIDTH=x1 - x0,
            HEIGHT=y1 - y0,
        )
        sub(sub(tl, "Shape"), "Polygon", POINTS=_points_space(polygon))
        words = [wd for wd in line.words if wd.text]
        if not words:
            # ALTO needs at least one String per line; an unread line keeps an empty one.
            sub(
                tl,
                "String",
                CONTENT=xml_text(line.text),
                HPOS=x0,
                VPOS=y0,
                WIDTH=x1 - x0,
                HEIGHT=y1 - y0,
                WC=_conf(line.confidence),
            )
            continue
        for i, word in enumerate(words):
            if i:
                prev = words[i - 1].box
                sub(tl, "SP", HPOS=prev[2], VPOS=y0, WIDTH=max(word.box[0] - prev[2], 0))
            wx0, wy0, wx1, wy1 = word.box
            sub(
                tl,
                "String",
                CONTENT=xml_text(word.text),
                HPOS=wx0,
                VPOS=wy0,
                WIDTH=wx1 - wx0,
                HEIGHT=wy1 - wy0,
                WC=_conf(word.confidence),
            )
    return _xml_bytes(root)


def to_page_xml(record: PageRecord) -> bytes:
    """Return the record as PAGE-XML 2019-07-15 (UTF-8); line n-best readings as indexed TextEquivs."""

    def sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: object) -> etree._Element:
        el = etree.SubElement(parent, f"{{{PAGE_NS}}}{tag}", {k: xml_text(str(v)) for k, v in attrs.items()})
        if text is not None:
            el.text = xml_text(text)
        return el

    def text_equiv(parent: etree._Element, text: str, conf: float, index: int | None = None) -> None:
        attrs = {"conf": _conf(conf)}
        if index is not None:
            attrs["index"] = str(index)
        sub(sub(parent, "TextEquiv", **attrs), "Unicode", text)

    root = etree.Element(f"{{{PAGE_NS}}}PcGts", nsmap={None: PAGE_NS, "xsi": XSI_NS})
    root.set(f"{{{XSI_NS}}}schemaLocation", PAGE_SCHEMA_LOCATION)
    meta = sub(root, "Metadata")
    sub(meta, "Creator", f"{record.software} ({_software_settings(record)})")
    sub(meta, "Created", _now(record))
    sub(meta, "LastChange", _now(record))
    w, h = record.width, record.height
    page = sub(root, "Page", imageFilename=_source_name(record), imageWidth=w, imageHeight=h)
    lines = _ordered_lines(record)
    if not lines:
        return _xml_bytes(root)
    taken: set[str] = set()
    region_id = xml_id("region_1", "region", taken)
    sub(
        sub(sub(page, "ReadingOrder"), "OrderedGroup", id="reading_order"),
        "RegionRefIndexed",
        index=0,
        regionRef=region_id,
    )
    region = sub(page, "TextRegion", id=region_id, type="paragraph")
    sub(region, "Coords", points=_points_comma(_box_polygon(_lines_box(lines, w, h))))
    for index, line in enumerate(lines):
        custom = f"readingOrder {{index:{index};}}"
        if line.column is not None or line.cell is not None:
            custom += (
                " table {"
                + "".join(f"{k}:{v};" for k, v in (("column", line.column), ("cell", line.cell)) if v is not None)
                + "}"
            )
        tl = sub(region, "TextLine", id=xml_id(line.id, "line", taken), custom=custom)
        polygon = _clamp_points(line.polygon, w, h)
        if len(polygon) < 2:
            polygon = _clamp_points(_box_polygon(line.bbox), w, h)
        sub(tl, "Coords", points=_points_comma(polygon))
        sub(tl, "Baseline", points=_points_comma(_baseline_points(line, w, h)))
        for k, word in enumerate(wd for wd in line.words if wd.text):
            wd = sub(tl, "Word", id=xml_id(f"{line.id}_w{k}", "word", taken))
            sub(wd, "Coords", points=_points_comma(_clamp_points(_box_polygon(word.box), w, h)))
            text_equiv(wd, word.text, word.confidence)
        # Index 1 is the reading chosen; the other n-best readings follow in rank order.
        text_equiv(tl, line.text, line.confidence, index=1)
        others = [alt for alt in line.nbest if alt.text != line.text]
        for rank, alt in enumerate(others, start=2):
            text_equiv(tl, alt.text, alt.confidence, index=rank)
    sub(sub(region, "TextEquiv"), "Unicode", "\n".join(ln.text for ln in lines))
    if record.entries:
        _page_table(page, record, taken, sub)
    return _xml_bytes(root)


def _custom_value(value: object) -> str:
    """Return a value fit for a PAGE ``custom`` attribute (Transkribus syntax: no ``;{}`` inside values)."""
    return re.sub(r"[;{}\n]", ",", str(value)).strip()


def _page_table(page: etree._Element, record: PageRecord, taken: set[str], sub: Callable[..., etree._Element]) -> None:
    """Add the register's entries as a TableRegion: one row per entry, one cell (a TextRegion) per column.

    A cell holds its text (TextEquiv), its row and column (TableCellRole) and,
    in ``custom``, its column's role and printed label, its lines' ids and the
    persons read in it, Transkribus-style (``person {offset:0; length:5;
    lastname:Gelot; firstname:Joseph;}``, offsets into the cell text). The
    lines themselves stay in the text region, so no text is counted twice.
    The entry's act number, ISO date and nature go in the first cell's
    ``custom`` (PAGE has no element for them).
    """
    from registers.layout import ROLES

    w, h = record.width, record.height
    boxes = [e.box for e in record.entries]
    table_box = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
    roles = [r for r in ROLES if any(e.cell(r) for e in record.entries)]
    table = sub(page, "TableRegion", id=xml_id("table_1", "table", taken), rows=len(record.entries), columns=len(roles))
    sub(table, "Coords", points=_points_comma(_clamp_points(_box_polygon(table_box), w, h)))
    for entry in record.entries:
        for n, cell in enumerate(c for c in entry.cells if c.role in roles):
            label = f" label:{_custom_value(cell.label)};" if cell.label else ""
            tags = [f"structure {{type:{_custom_value(cell.role)};{label}}}"]
            tags.append(f"lines {{ids:{_custom_value(' '.join(cell.line_ids))};}}")
            if n == 0:
                fields = [("act", entry.act_number), ("nature", entry.nature)]
                if entry.date is not None:
                    fields += [("date", entry.date.iso), ("dateText", entry.date.raw)]
                tags.append("entry {" + "".join(f"{k}:{_custom_value(v)}; " for k, v in fields if v).strip() + "}")
            if cell.role == "names":
                for p in entry.persons:
                    parts = [("offset", p.start), ("length", p.end - p.start), ("lastname", p.surname),
                             ("firstname", p.first_names), ("title", p.title), ("domicile", p.domicile),
                             ("conf", f"{p.confidence:.4f}")]  # fmt: skip
                    tags.append("person {" + " ".join(f"{k}:{_custom_value(v)};" for k, v in parts if v != "") + "}")
            region = sub(
                table,
                "TextRegion",
                id=xml_id(f"entry{entry.index}_{cell.role}", "cell", taken),
                custom=" ".join(tags),
            )
            sub(region, "Coords", points=_points_comma(_clamp_points(_box_polygon(cell.box), w, h)))
            roles_el = sub(region, "Roles")
            sub(roles_el, "TableCellRole", rowIndex=entry.index, columnIndex=roles.index(cell.role))
            sub(sub(region, "TextEquiv"), "Unicode", cell.text)


def _xml_bytes(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


#: Output format name -> (file suffix appended to the page id, serializer, MIME type).
SERIALIZERS: dict[str, tuple[str, Callable[[PageRecord], bytes], str]] = {
    "json": (".json", record_to_json, "application/json"),
    "alto": (".alto.xml", to_alto, "application/xml"),
    "page": (".page.xml", to_page_xml, "application/xml"),
}


def parse_formats(formats: str | Sequence[str]) -> list[str]:
    """Return the validated list of output formats ("json" always first); raises ValueError for unknown ones."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [f.strip().lower() for f in items if f.strip()]
    unknown = sorted(set(names) - set(SERIALIZERS))
    if unknown:
        raise ValueError(f"unknown output format(s) {', '.join(unknown)}; choose among {', '.join(SERIALIZERS)}")
    # The JSON record is always written: reruns and the manifest rely on it.
    return ["json", *dict.fromkeys(n for n in names if n != "json")]
