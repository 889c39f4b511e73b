"""Fuzzing the ALTO/PAGE readers: any bytes give a page or a GroundTruthError, never another exception."""

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocr.groundtruth import GroundTruthError, read_ground_truth

SEED_ALTO = (
    b'<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#"><Layout><Page WIDTH="10" HEIGHT="10">'
    b'<PrintSpace><TextBlock ID="b"><TextLine ID="l" BASELINE="1 2 3 4"><Shape><Polygon POINTS="0 0 5 0 5 5"/>'
    b'</Shape><String CONTENT="ab"/></TextLine></TextBlock></PrintSpace></Page></Layout></alto>'
)
SEED_PAGE = (
    b'<PcGts xmlns="http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"><Page imageWidth="9" '
    b'imageHeight="9"><TextRegion id="r"><TextLine id="t"><Coords points="0,0 4,0 4,4"/><Baseline points="0,3 4,3"/>'
    b"<TextEquiv><Unicode>x</Unicode></TextEquiv></TextLine></TextRegion></Page></PcGts>"
)


def mutate(seed: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    data = bytearray(seed)
    for pos, cut, insert in edits:
        pos %= len(data) + 1
        data[pos : pos + cut] = insert
    return bytes(data)


edits = st.lists(
    st.tuples(
        st.integers(0, 4096),
        st.integers(0, 8),
        st.sampled_from(
            [
                b"",
                b"<",
                b">",
                b'"',
                b"&",
                b"&amp;",
                b"x",
                b"-1",
                b"1e9",
                b"NaN",
                b"inf",
                b"-inf",
                b"<!DOCTYPE a>",
                b"\xff",
            ]
        )
        | st.binary(max_size=6),
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.sampled_from([SEED_ALTO, SEED_PAGE]), edits=edits)
def test_readers_never_crash(tmp_path: Path, seed: bytes, edits: list) -> None:
    path = tmp_path / "page.xml"
    path.write_bytes(mutate(seed, edits))
    try:
        page = read_ground_truth(path)
    except GroundTruthError:
        return
    for line in page.lines:
        assert isinstance(line.text, str)
        assert all(isinstance(x, int) and isinstance(y, int) for x, y in line.polygon)
