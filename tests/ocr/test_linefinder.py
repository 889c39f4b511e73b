"""The learned line finder's training side: targets, a few real training steps, the ONNX export OpenCV runs."""

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ocr.groundtruth import GroundTruthLine, GroundTruthPage
from ocr.linefinder import (
    NET_SCALE,
    ZOOM,
    ZOOM_OUT,
    LineNet,
    LinePage,
    LineTrainConfig,
    augment_crop,
    export_onnx,
    line_targets,
    load_line_pages,
    load_line_weights,
    load_packed_line_pages,
    pack_line_pages,
    page_input,
    train_line_finder,
)
from segmentation.learned import LineModelError, LineNetwork

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pages"


def one_line_page() -> GroundTruthPage:
    line = GroundTruthLine(
        id="l1",
        polygon=[(100, 140), (500, 140), (500, 230), (100, 230)],
        baseline=[(100, 200), (500, 200)],
        text="Dupont",
    )
    return GroundTruthPage(Path("p.xml"), None, 800, 400, [line])


def test_targets_mark_a_band_above_the_baseline_and_the_polygon_as_region():
    targets = line_targets(one_line_page(), (100, 200), scale=0.25)
    band, region = targets
    assert region[40:57, 26:124].all() and int(region.sum()) == pytest.approx(24 * 101, rel=0.05)
    rows = np.flatnonzero(band.any(axis=1))
    # 60 px above the baseline at y=200: the band sits ~18 px (scan) above it, ~27 px thick.
    assert rows.min() >= (200 - 0.3 * 60 - 0.45 * 60) * 0.25 - 1
    assert rows.max() <= 200 * 0.25
    assert band[:, 30:120].any(axis=0).all(), "the band runs along the whole line"
    assert not (band.astype(bool) & ~region.astype(bool)).any()


def toy_pages() -> list[LinePage]:
    """Two small pages of dark strokes in rows, with their targets."""
    rng = np.random.default_rng(0)
    pages = []
    for k in range(2):
        gray = np.full((160, 192), 235, np.uint8)
        lines = []
        for i, y in enumerate(range(40, 150, 24)):
            x1 = int(rng.integers(100, 180))
            for x in range(20, x1, 7):
                cv2.line(gray, (x, y - int(rng.integers(4, 9))), (x + 3, y), 40, 2)
            poly = [(20 / NET_SCALE, (y - 14) / NET_SCALE), (x1 / NET_SCALE, (y - 14) / NET_SCALE)]
            poly += [(x1 / NET_SCALE, (y + 4) / NET_SCALE), (20 / NET_SCALE, (y + 4) / NET_SCALE)]
            base = [(20 / NET_SCALE, y / NET_SCALE), (x1 / NET_SCALE, y / NET_SCALE)]
            lines.append(GroundTruthLine(f"l{i}", poly, base, "x"))
        gt = GroundTruthPage(Path(f"p{k}.xml"), None, int(192 / NET_SCALE), int(160 / NET_SCALE), lines)
        pages.append(LinePage(f"p{k}", gray, line_targets(gt, gray.shape)))
    return pages


def test_zoomed_out_crops_hold_the_lines_of_a_low_resolution_scan():
    page = toy_pages()[0]
    rng = np.random.default_rng(1)

    def line_height(share: float) -> float:
        """The median height (network pixels) of the target regions' columns over many crops."""
        heights = []
        for _ in range(40):
            _, tgt = augment_crop(page, 64, rng, zoom_out_share=share)
            region = tgt[1].astype(np.uint8)
            n, labels, stats, _ = cv2.connectedComponentsWithStats(region)
            heights += [stats[i, cv2.CC_STAT_HEIGHT] for i in range(1, n) if stats[i, cv2.CC_STAT_WIDTH] > 8]
        return float(np.median(heights))

    usual, zoomed = line_height(0.0), line_height(1.0)
    # Regions are 18 px tall at zoom 1: ZOOM (0.8-1.25x) usually, ZOOM_OUT (0.35-0.8x) when zoomed out.
    assert ZOOM == (0.8, 1.25) and ZOOM[0] * 18 - 2 <= usual <= ZOOM[1] * 18 + 2
    assert ZOOM_OUT[0] * 18 - 2 <= zoomed <= ZOOM_OUT[1] * 18 and zoomed < 0.75 * usual


def test_training_steps_export_an_onnx_network_that_opencv_runs_like_torch(tmp_path):
    out = tmp_path / "lines.onnx"
    config = LineTrainConfig(steps=6, batch_size=2, crop=64, channels=(4, 8, 8, 8, 8), export_every=0, threads=1)
    summary = train_line_finder(out, config, pages=toy_pages())
    assert out.exists() and out.with_suffix(".json").exists()
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["scale"] == NET_SCALE and meta["steps"] == 6 and meta["version"] == summary["version"]
    # The version names the day, the steps and the network itself (the ONNX file's digest).
    digest = hashlib.sha256(out.read_bytes()).hexdigest()[:6]
    assert re.fullmatch(rf"lines-\d{{8}}-s6-{digest}", summary["version"]), summary["version"]
    assert not list(tmp_path.glob("*.tmp"))
    assert out.with_suffix(".pt").exists()  # the torch weights, to continue from

    network = LineNetwork.load(out)
    gray = np.full((100, 130), 230, np.uint8)  # sides that are no multiple of 16: padded, then cropped back
    cv2.line(gray, (10, 50), (110, 50), 30, 3)
    maps = network.predict(gray, work_scale=NET_SCALE)
    assert maps.band.shape == maps.region.shape == (100, 130)
    assert maps.scale == pytest.approx(1.0)
    assert 0.0 <= maps.band.min() and maps.band.max() <= 1.0


def test_the_onnx_export_computes_what_torch_computes(tmp_path):
    torch.manual_seed(0)
    net = LineNet((4, 8, 8, 8, 8))
    for m in net.modules():  # BatchNorm statistics that are not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    export_onnx(net, tmp_path / "n.onnx", {"scale": NET_SCALE, "multiple": 16, "version": "t"})
    gray = np.random.default_rng(1).integers(0, 256, (112, 144)).astype(np.uint8)
    maps = LineNetwork.load(tmp_path / "n.onnx").predict(gray, work_scale=NET_SCALE)
    with torch.no_grad():
        expected = torch.sigmoid(net.eval()(torch.from_numpy(page_input(gray))))[0].numpy()
    assert np.abs(maps.band - expected[0]).max() < 1e-4
    assert np.abs(maps.region - expected[1]).max() < 1e-4


def test_training_continues_from_the_weights_an_export_wrote(tmp_path):
    first = tmp_path / "a.onnx"
    config = LineTrainConfig(steps=2, batch_size=2, crop=64, channels=(4, 8, 8, 8, 8), export_every=0, threads=1)
    train_line_finder(first, config, pages=toy_pages())
    start = load_line_weights(first.with_suffix(".pt"))
    assert start.channels == (4, 8, 8, 8, 8)
    # Zero steps of learning rate: the continued network is the one it started from (other channels are ignored).
    warm = LineTrainConfig(
        steps=1, batch_size=2, crop=64, lr=0.0, export_every=0, threads=1, init_from=str(first.with_suffix(".pt"))
    )
    second = tmp_path / "b.onnx"
    summary = train_line_finder(second, warm, pages=toy_pages())
    assert summary["config"]["channels"] == [4, 8, 8, 8, 8]
    # Its version counts the steps of both runs and names the one it continued.
    first_version = json.loads(first.with_suffix(".json").read_text())["version"]
    assert summary["total_steps"] == 3 and re.fullmatch(r"lines-\d{8}-s3-[0-9a-f]{6}", summary["version"])
    assert summary["continued_from"] == first_version and re.fullmatch(r"lines-\d{8}-s2-[0-9a-f]{6}", first_version)
    end = load_line_weights(second.with_suffix(".pt"))
    for (name, a), b in zip(start.state_dict().items(), end.state_dict().values(), strict=True):
        if "running" not in name and "num_batches" not in name:  # BatchNorm statistics move in train mode
            assert torch.equal(a, b), name
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    with pytest.raises(ValueError, match="not line-finder weights"):
        load_line_weights(bad)


def test_a_missing_network_is_a_clear_error(tmp_path):
    with pytest.raises(LineModelError, match="registre train-lines"):
        LineNetwork.load(tmp_path / "none.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a network")
    bad.with_suffix(".json").write_text(json.dumps({"scale": 0.25, "multiple": 16}))
    with pytest.raises(LineModelError, match="cannot read"):
        LineNetwork.load(bad)


def test_train_lines_command_trains_on_training_pages_only(tmp_path):
    data = tmp_path / "data"
    volume = data / "lectaurep" / "train" / "random-set-1"
    volume.mkdir(parents=True)
    # The bundled pages are of held-out hands: in their own volume and under their own names they never train.
    for src in [EXAMPLES / "FRAN_0025_0989_L-0.xml"]:
        shutil.copy(src, volume / src.name)
        shutil.copy(src.with_suffix(".jpg"), volume / src.with_suffix(".jpg").name)
    cmd = [sys.executable, "-m", "flows.cli", "train-lines", "--data", str(data), "--steps", "2", "--batch-size", "1"]
    cmd += ["--threads", "1"]
    refused = subprocess.run([*cmd, "--out", str(tmp_path / "a.onnx")], capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "no training pages" in refused.stderr
    assert "Traceback" not in refused.stderr
    # Renamed, a page is a training page.
    for f in list(volume.iterdir()):
        f.rename(volume / ("TRAIN_0001" + f.suffix))
    (volume / "TRAIN_0001.xml").write_text(
        (volume / "TRAIN_0001.xml").read_text(encoding="utf-8").replace(src.with_suffix(".jpg").name, "TRAIN_0001.jpg"),
        encoding="utf-8",
    )
    done = subprocess.run([*cmd, "--out", str(tmp_path / "b.onnx")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["training_pages"] == 1
    assert (tmp_path / "b.onnx").exists()

    # Packed for a machine without the data folder, the same pages train there.
    pack = [sys.executable, "-m", "flows.cli", "pack-line-pages", str(tmp_path / "pages.pkl"), "--data", str(data)]
    packed = subprocess.run(pack, capture_output=True, text=True, timeout=300)
    assert packed.returncode == 0, packed.stderr[-2000:]
    assert json.loads(packed.stdout)["pages"] == 1
    cmd = [sys.executable, "-m", "flows.cli", "train-lines", "--pages", str(tmp_path / "pages.pkl"), "--steps", "2"]
    cmd += ["--batch-size", "1", "--threads", "1", "--data", str(tmp_path / "none")]
    wrong = subprocess.run(
        [*cmd, "--scale", "0.25", "--out", str(tmp_path / "c.onnx")], capture_output=True, text=True, timeout=300
    )
    assert wrong.returncode != 0 and "packed at scale 0.333" in wrong.stderr
    # ... with the crops cut in a worker process, as on a GPU.
    done = subprocess.run(
        [*cmd, "--workers", "1", "--out", str(tmp_path / "c.onnx")], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["training_pages"] == 1


def test_packed_pages_load_back_close_to_the_originals(tmp_path):
    data = tmp_path / "data"
    volume = data / "lectaurep" / "train" / "vol"
    volume.mkdir(parents=True)
    src = EXAMPLES / "FRAN_0025_0989_L-0.xml"
    (volume / "TRAIN_1.xml").write_text(
        src.read_text(encoding="utf-8").replace(src.with_suffix(".jpg").name, "TRAIN_1.jpg"), encoding="utf-8"
    )
    shutil.copy(src.with_suffix(".jpg"), volume / "TRAIN_1.jpg")
    pages = load_line_pages(data)
    size = pack_line_pages(pages, tmp_path / "p.pkl", NET_SCALE)
    scale, back = load_packed_line_pages(tmp_path / "p.pkl")

    assert scale == NET_SCALE and [p.page_id for p in back] == ["lectaurep/train/vol/TRAIN_1"]
    assert np.array_equal(back[0].targets, pages[0].targets)
    assert back[0].gray.shape == pages[0].gray.shape
    assert np.abs(back[0].gray.astype(int) - pages[0].gray).mean() < 3.0
    assert size < pages[0].gray.nbytes / 4
    (tmp_path / "bad.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="cannot read packed line pages"):
        load_packed_line_pages(tmp_path / "bad.pkl")


def _scaled_alto(xml: str, factor: float) -> str:
    """Return ALTO text with every coordinate (POINTS, BASELINE, HPOS, VPOS, WIDTH, HEIGHT) times ``factor``."""

    def numbers(m: re.Match) -> str:
        scaled = " ".join(str(round(float(v) * factor)) for v in re.split(r"[ ,]+", m.group(2).strip()))
        return f'{m.group(1)}="{scaled}"'

    return re.sub(r"\b(POINTS|BASELINE|HPOS|VPOS|WIDTH|HEIGHT)=\"([^\"]*)\"", numbers, xml)


def test_training_pages_come_from_every_corpus_at_the_segmenters_scale(tmp_path):
    # The same register page in a LECTAUREP folder, as a half-resolution page of another corpus, and as a
    # validation page: the validation page never trains, and the half-size scan is enlarged back to the
    # line spacing the network trains at, as the segmenter enlarges it when it reads such a page.
    src = EXAMPLES / "FRAN_0025_0989_L-0.xml"
    xml, image = src.read_text(encoding="utf-8"), cv2.imread(str(src.with_suffix(".jpg")), cv2.IMREAD_GRAYSCALE)
    data = tmp_path / "data"
    for folder, stem, factor in [
        ("lectaurep/train/vol", "FULL_1", 1.0),
        ("timeus/prudhommes-1858", "HALF_1", 0.5),
        ("lectaurep/train/dufour-1", "DAFANCH96_048MIC07691_L-1", 1.0),
    ]:
        (data / folder).mkdir(parents=True)
        page = _scaled_alto(xml, factor).replace(src.with_suffix(".jpg").name, f"{stem}.jpg")
        (data / folder / f"{stem}.xml").write_text(page, encoding="utf-8")
        scaled = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(data / folder / f"{stem}.jpg"), scaled)

    pages = {p.page_id: p for p in load_line_pages(data)}

    assert sorted(pages) == ["lectaurep/train/vol/FULL_1", "timeus/prudhommes-1858/HALF_1"]
    full, half = pages["lectaurep/train/vol/FULL_1"], pages["timeus/prudhommes-1858/HALF_1"]
    assert full.gray.shape[0] == pytest.approx(image.shape[0] * NET_SCALE, abs=1)
    # Its rows (19.5 network pixels apart at full size) enlarged into the trained spacing, 15.5-22.5: to the
    # nearer end, 0.8 of the full scan's size instead of a half; its targets drawn at that size.
    assert half.gray.shape[0] / full.gray.shape[0] == pytest.approx(15.5 / 19.5, abs=0.05)
    assert half.targets.shape[1:] == half.gray.shape
    assert half.targets[1].mean() == pytest.approx(full.targets[1].mean(), rel=0.15)
