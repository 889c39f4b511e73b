from ocr.charset import BLANK, FRENCH_BASE, Charset


def test_blank_first_and_french_letters_present():
    cs = Charset.build(["dud^t ¥ 1°"])
    assert cs.labels[0] == BLANK and len(cs) == len(cs.chars) + 1
    for c in "àâæçéèêëîïôöœùûüÿñÀÂÆÇÉÈÊËÎÏÔÖŒÙÛÜŸ' ":
        assert c in cs.chars
    assert cs.chars[: len(FRENCH_BASE)] == list(FRENCH_BASE)


def test_encode_decode_roundtrip_and_unknown():
    cs = Charset.build(["Œuvre"])
    ids = cs.encode("Œuvre de Saint-Éloi")
    assert 0 not in ids and cs.decode(ids) == "Œuvre de Saint-Éloi"
    assert cs.unknown("a\u4e2db") == {"\u4e2d"}
    assert cs.decode(cs.encode("a\u4e2db")) == "ab"


def test_json_roundtrip():
    cs = Charset.build(["x¥"])
    assert Charset.from_json(cs.to_json()).chars == cs.chars
