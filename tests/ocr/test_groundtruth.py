from pathlib import Path

import pytest

from ocr.groundtruth import (
    GroundTruthError,
    find_ground_truth,
    normalize_text,
    read_alto,
    read_ground_truth,
    read_page_xml,
)

ALTO = """<?xml version="1.0" encoding="UTF-8"?>
<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#">
  <Description><MeasurementUnit>pixel</MeasurementUnit>
    <sourceImageInformation><fileName>p.jpg</fileName></sourceImageInformation></Description>
  <Tags><OtherTag ID="LT1" LABEL="printed"/><OtherTag ID="BT1" LABEL="Col_2"/></Tags>
  <Layout><Page WIDTH="400" HEIGHT="300" ID="p0"><PrintSpace>
    <TextBlock ID="b1" TAGREFS="BT1">
      <TextLine ID="l1" TAGREFS="LT1" BASELINE="10 50 200 54">
        <Shape><Polygon POINTS="10 20 200 20 200 60 10 60"/></Shape>
        <String CONTENT="Vente &amp;amp; Bail"/>
      </TextLine>
      <TextLine ID="l2" BASELINE="10,120 200,120" HPOS="10" VPOS="90" WIDTH="190" HEIGHT="40">
        <String CONTENT="Jose&#769;phine"/><String CONTENT="Dupre&#769;"/>
      </TextLine>
    </TextBlock>
  </PrintSpace></Page></Layout>
</alto>
"""

PAGE = """<?xml version="1.0" encoding="UTF-8"?>
<PcGts xmlns="http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15">
  <Page imageFilename="p.png" imageWidth="500" imageHeight="400">
    <TextRegion id="r1" custom="structure {type:paragraph;}">
      <Coords points="0,0 500,0 500,400 0,400"/>
      <TextLine id="t1" custom="readingOrder {index:0;} structure {type:printed;}">
        <Coords points="5,5 300,5 300,45 5,45"/>
        <Baseline points="5,40 300,42"/>
        <Word id="w1"><Coords points="5,5 50,5 50,45 5,45"/><TextEquiv><Unicode>word</Unicode></TextEquiv></Word>
        <TextEquiv><Unicode>Œuvre de l'Hôtel-Dieu</Unicode></TextEquiv>
      </TextLine>
    </TextRegion>
  </Page>
</PcGts>
"""

BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#"><Layout><Page WIDTH="1" HEIGHT="1">&lol2;</Page></Layout></alto>
"""

EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE alto [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#"><Layout><Page WIDTH="1" HEIGHT="1">&xxe;</Page></Layout></alto>
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_alto_lines_polygons_types_and_text(tmp_path):
    (tmp_path / "p.jpg").write_bytes(b"")
    page = read_alto(write(tmp_path, "p.xml", ALTO))
    assert (page.width, page.height) == (400, 300)
    assert page.image_path == tmp_path / "p.jpg"
    first, second = page.lines
    assert first.id == "l1" and first.type == "printed" and first.block == "Col_2"
    assert first.polygon == [(10, 20), (200, 20), (200, 60), (10, 60)]
    assert first.baseline == [(10, 50), (200, 54)]
    # Double-escaped &amp;amp; is undone once more.
    assert first.text == "Vente & Bail"
    # No Shape: the box becomes the polygon; NFD is normalized to NFC; comma points parse.
    assert second.polygon == [(10, 90), (200, 90), (200, 130), (10, 130)]
    assert second.text == "Joséphine Dupré" and len(second.text) == 15
    assert second.baseline == [(10, 120), (200, 120)]


def test_page_xml_reads_line_text_not_word_text(tmp_path):
    page = read_page_xml(write(tmp_path, "p.xml", PAGE))
    assert (page.width, page.height) == (500, 400)
    (line,) = page.lines
    assert line.text == "Œuvre de l'Hôtel-Dieu"
    assert line.type == "printed"
    assert line.polygon[0] == (5, 5) and line.baseline == [(5, 40), (300, 42)]
    assert read_ground_truth(tmp_path / "p.xml").lines[0].text == line.text


@pytest.mark.parametrize("text", [BOMB, EXTERNAL])
def test_entities_are_refused_not_expanded(tmp_path, text):
    with pytest.raises(GroundTruthError, match="unsafe XML"):
        read_alto(write(tmp_path, "bad.xml", text))


def test_malformed_and_foreign_xml(tmp_path):
    with pytest.raises(GroundTruthError, match="not well-formed"):
        read_ground_truth(write(tmp_path, "a.xml", "<alto><Page>"))
    with pytest.raises(GroundTruthError, match="neither ALTO nor PAGE"):
        read_ground_truth(write(tmp_path, "b.xml", "<html/>"))
    with pytest.raises(GroundTruthError, match="bad coordinates"):
        read_alto(write(tmp_path, "c.xml", ALTO.replace('POINTS="10 20', 'POINTS="x 20')))


@pytest.mark.parametrize(
    "attr", ['WIDTH="inf"', 'WIDTH="nan"', 'WIDTH="wide"', 'HPOS="-inf"', 'POINTS="1e999 0 1 1 2 2"']
)
def test_non_finite_numbers_are_errors_not_crashes(tmp_path, attr):
    if attr.startswith("WIDTH"):
        text = ALTO.replace('WIDTH="400"', attr)
    elif attr.startswith("HPOS"):
        text = ALTO.replace('HPOS="10"', attr)
    else:
        text = ALTO.replace('POINTS="10 20 200 20 200 60 10 60"', attr)
    with pytest.raises(GroundTruthError, match="bad"):
        read_alto(write(tmp_path, "p.xml", text))


def test_normalize_text_keeps_abbreviations():
    assert normalize_text(" &amp;c ") == "&c"
    assert normalize_text("&copy") == "&copy"
    assert normalize_text("dud^t") == "dud^t"


def test_real_example_page(example_pages):
    xmls = find_ground_truth(example_pages[0].parent)
    assert len(xmls) == len(example_pages) == 3
    page = read_alto(xmls[0])
    assert page.image_path == example_pages[0]
    import cv2

    h, w = cv2.imread(str(page.image_path), cv2.IMREAD_GRAYSCALE).shape
    assert (page.width, page.height) == (w, h)
    assert len(page.lines) > 30
    texts = [ln.text for ln in page.lines]
    assert sum(bool(t) for t in texts) > 30
    assert all(len(ln.polygon) >= 3 for ln in page.lines)
    assert all(0 <= x <= page.width and 0 <= y <= page.height for ln in page.lines for x, y in ln.polygon)


def test_registre_record_names_beside_their_scan_are_ground_truth(tmp_path):
    # `registre digitize --formats alto,page` writes p.alto.xml / q.page.xml: corrected and put beside the scans,
    # they are ground truth for `registre eval` and `registre adapt`. Their declared file names may be keys.
    alto = ALTO.replace("<fileName>p.jpg</fileName>", "<fileName>scans/1850/p.jpg</fileName>")
    (tmp_path / "p.jpg").write_bytes(b"")
    (tmp_path / "q.png").write_bytes(b"")
    write(tmp_path, "p.alto.xml", alto)
    write(tmp_path, "q.page.xml", PAGE.replace('imageFilename="p.png"', 'imageFilename="elsewhere.png"'))
    write(tmp_path, "r.alto.xml", ALTO.replace("p.jpg", "r.jpg"))  # no scan beside it
    xmls = find_ground_truth(tmp_path)
    assert [p.name for p in xmls] == ["p.alto.xml", "q.page.xml"]
    assert read_ground_truth(xmls[0]).image_path == tmp_path / "p.jpg"
    assert read_ground_truth(xmls[0]).id == "p"
    assert read_ground_truth(xmls[1]).image_path == tmp_path / "q.png"
