import numpy as np
import pytest
import torch

from ocr.charset import Charset
from ocr.checkpoint import ModelFileError, average_models, load_model, save_model
from ocr.inference import (
    BLANK_PENALTY,
    REREAD_SCALES,
    Recognizer,
    cpu_has_bf16,
    ctc_scores,
    greedy_decode,
    scaled_width,
)
from ocr.model import CRNN, CRNNConfig


def example_crops(page, n: int) -> tuple[list, list[np.ndarray]]:
    """Return the first ``n`` ground-truth lines of an example page and their crops."""
    from ocr.groundtruth import read_alto
    from segmentation.crop import crop_line
    from segmentation.loading import load_page_file

    image = load_page_file(page).pixels
    lines = read_alto(page.with_suffix(".xml")).lines[:n]
    return lines, [crop_line(image, line.polygon, line.baseline) for line in lines]


@pytest.fixture()
def small_model():
    torch.manual_seed(0)
    cs = Charset.build([])
    return CRNN(CRNNConfig(num_classes=len(cs), channels=(8, 16, 16, 16), lstm_hidden=16, lstm_layers=2)), cs


@pytest.mark.parametrize("width", [9, 64, 111, 2500])
def test_any_width_gives_width_over_two_frames(small_model, width):
    model, cs = small_model
    model.eval()
    with torch.inference_mode():
        out = model(torch.zeros(1, 1, 48, width))
    assert out.shape == (width // 2, 1, len(cs))
    assert torch.allclose(out.exp().sum(-1), torch.ones(width // 2), atol=1e-4)


def test_a_long_line_has_enough_frames():
    # The longest LECTAUREP label is 122 chars; at the tightest 4.35 px/char a line is ~530 px wide.
    from ocr.train import fits_ctc

    assert fits_ctc(122, 5, 530, CRNNConfig(num_classes=2).width_stride)
    assert not fits_ctc(122, 5, 250, 2)


def test_recognizer_keeps_input_order_across_width_buckets(small_model):
    model, cs = small_model
    rec = Recognizer(model, cs, max_batch_pixels=48 * 48 * 4)
    crops = [np.full((48, w), 255, np.uint8) for w in (300, 20, 150, 40, 90)]
    lps = rec.logprobs(crops)
    assert [lp.shape[0] for lp in lps] == [150, 10, 75, 20, 45]
    assert len(rec.batches(crops)) > 1
    with pytest.raises(ValueError):
        rec.logprobs([np.zeros((32, 40), np.uint8)])


def test_greedy_decode_collapses_repeats_and_blanks():
    cs = Charset(["a", "b"])
    seq = [1, 1, 0, 1, 2, 2, 0, 0]
    lp = np.log(np.full((len(seq), 3), 0.05, np.float32))
    for t, k in enumerate(seq):
        lp[t, k] = np.log(0.9)
    r = greedy_decode(lp, cs)
    assert r.text == "aab"
    assert r.char_frames == [0, 3, 4]
    assert r.confidence == pytest.approx(0.9, abs=1e-5) and len(r.char_confidences) == 3


def test_checkpoint_roundtrip(tmp_path, small_model):
    model, cs = small_model
    path = tmp_path / "m.pt"
    save_model(path, model, cs, "test-1")
    loaded, cs2, version = load_model(path)
    assert version == "test-1" and cs2.chars == cs.chars
    x = torch.rand(2, 1, 48, 60)
    model.eval()
    with torch.inference_mode():
        assert torch.allclose(model(x), loaded(x))


def test_bad_model_files_give_clear_errors(tmp_path):
    from ocr.checkpoint import ModelFileError

    with pytest.raises(ModelFileError, match="no such model"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="not a readable model"):
        load_model(tmp_path / "junk.pt")


def test_folding_batchnorm_keeps_the_outputs(small_model):
    import copy

    model, _ = small_model
    # Give BatchNorm non-trivial statistics, as training would.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 1, model.config.height, 96))
    model.eval()
    x = torch.rand(2, 1, model.config.height, 120)
    with torch.inference_mode():
        before = model(x)
        fused = copy.deepcopy(model).fuse_for_inference()
        after = fused(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert torch.allclose(before, after, atol=1e-4)


def test_bf16_recognition_on_cpu_reads_a_real_line_as_float32_does(example_pages):
    lines, crops = example_crops(example_pages[0], 12)
    fp32 = Recognizer.load(None, "cpu")
    bf16 = Recognizer.load(None, "cpu", cpu_bf16=True)
    a, b = fp32.recognize(crops), bf16.recognize(crops)
    same = sum(x.text == y.text for x, y in zip(a, b, strict=True))
    assert same >= len(crops) - 2


def test_cpu_bf16_units_are_read_from_the_cpu_flags(tmp_path):
    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n\nprocessor\t: 1\nflags\t: fpu\n")
    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert cpu_has_bf16(amx) is True
    assert cpu_has_bf16(avx2) is False
    assert cpu_has_bf16(tmp_path / "missing") is None


def test_averaged_models_hold_the_mean_of_their_weights(tmp_path, small_model):
    model, cs = small_model
    other = CRNN(model.config)
    paths = [tmp_path / "a.pt", tmp_path / "b.pt"]
    save_model(paths[0], model, cs, "a")
    save_model(paths[1], other, cs, "b")
    soup, cs2, versions = average_models(paths)
    assert versions == ["a", "b"] and cs2.chars == cs.chars
    for key, value in soup.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, (model.state_dict()[key] + other.state_dict()[key]) / 2)
    assert not torch.equal(soup.head.weight, model.head.weight)


def test_models_of_other_shapes_are_not_averaged(tmp_path, small_model):
    model, cs = small_model
    wider = CRNN(CRNNConfig(num_classes=len(cs), channels=(8, 16, 16, 16), lstm_hidden=32, lstm_layers=2))
    save_model(tmp_path / "a.pt", model, cs, "a")
    save_model(tmp_path / "b.pt", wider, cs, "b")
    with pytest.raises(ModelFileError, match="another architecture"):
        average_models([tmp_path / "a.pt", tmp_path / "b.pt"])
    with pytest.raises(ModelFileError, match="at least two"):
        average_models([tmp_path / "a.pt"])


def test_onnx_runtime_reads_as_pytorch_does_at_any_width_and_batch(small_model):
    model, cs = small_model
    model.eval()
    eager = Recognizer(model, cs, backend="torch", max_batch_pixels=48 * 300 * 3)
    fast = Recognizer(model, cs, max_batch_pixels=48 * 300 * 3)
    assert fast.backend == "onnx" and eager.backend == "torch"
    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 256, (48, int(w)), dtype=np.uint8) for w in (3, 17, 64, 299, 300, 301, 1200, 40)]
    a, b = eager.logprobs(crops), fast.logprobs(crops)
    assert [x.shape for x in a] == [x.shape for x in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-4)
    # A session per thread count: torch.set_num_threads still decides the cores it uses.
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        fast.logprobs(crops[:2])
    finally:
        torch.set_num_threads(threads)
    assert 1 in fast._sessions


def test_onnx_runtime_reads_the_new_weights_after_they_change(small_model):
    # Training validates through one Recognizer while its model learns: a graph exported before must not
    # keep answering with the old weights.
    model, cs = small_model
    model.eval()
    rec = Recognizer(model, cs)
    crop = [np.random.default_rng(2).integers(0, 256, (48, 120), dtype=np.uint8)]
    before = rec.logprobs(crop)[0]
    with torch.no_grad():
        model.head.bias[1] += 5.0
    rec.weights_changed()
    after = rec.logprobs(crop)[0]
    np.testing.assert_allclose(after, Recognizer(model, cs, backend="torch").logprobs(crop)[0], atol=1e-4)
    assert not np.allclose(before, after, atol=1e-2)


def test_onnx_backend_is_refused_where_it_cannot_run(small_model):
    model, cs = small_model
    with pytest.raises(ValueError, match="CPU only"):
        Recognizer(model, cs, cpu_bf16=True, backend="onnx")
    with pytest.raises(ValueError, match="backend must be"):
        Recognizer(model, cs, backend="tensorrt")
    assert Recognizer(model, cs, cpu_bf16=True).backend == "torch"


def test_a_widened_cnn_computes_what_the_narrow_one_did(small_model):
    from ocr.model import widen_state_dict

    model, cs = small_model
    model.eval()
    x = torch.rand(3, 1, 48, 90)
    wide_cfg = CRNNConfig(num_classes=len(cs), channels=(12, 16, 24, 40), lstm_hidden=16, lstm_layers=2)
    exact, noisy = CRNN(wide_cfg).eval(), CRNN(wide_cfg).eval()
    exact.load_state_dict(widen_state_dict(model.state_dict(), model.config, (12, 16, 24, 40), noise=0.0))
    noisy.load_state_dict(widen_state_dict(model.state_dict(), model.config, (12, 16, 24, 40)))
    with torch.inference_mode():
        ref, out, near = model(x), exact(x), noisy(x)
    assert torch.allclose(ref, out, atol=1e-4)
    # The copies' noise breaks their symmetry without changing what the model reads much.
    assert not torch.equal(ref, near)
    assert torch.allclose(ref, near, atol=0.2)
    assert exact.cnn[0].weight.shape[0] == 12 and exact.rnn.weight_ih_l0.shape[1] == 40 * 3
    with pytest.raises(ValueError, match="can only widen"):
        widen_state_dict(model.state_dict(), model.config, (4, 16, 16, 16))


def test_int8_recognition_reads_real_lines_as_float32_does(example_pages):
    from ocr.metrics import ErrorRates

    lines, crops = example_crops(example_pages[0], 24)
    fp32 = Recognizer.load(None, "cpu", int8=False)
    int8 = Recognizer.load(None, "cpu")
    assert int8.int8 and int8.backend == "onnx" and not fp32.int8
    a, b = fp32.recognize(crops), int8.recognize(crops)
    same = sum(x.text == y.text for x, y in zip(a, b, strict=True))
    assert same >= len(crops) - 3
    fp32_rates, int8_rates = ErrorRates(), ErrorRates()
    for line, x, y in zip(lines, a, b, strict=True):
        fp32_rates.add(line.text, x.text)
        int8_rates.add(line.text, y.text)
    assert int8_rates.cer <= fp32_rates.cer + 0.01


def test_batched_ctc_scores_match_the_forward_algorithm_written_out():
    from lm.decoder import ctc_logp

    rng = np.random.default_rng(3)
    lps, targets = [], []
    for frames, length in ((1, 0), (7, 3), (40, 12), (25, 25), (9, 2), (60, 0)):
        x = rng.normal(size=(frames, 6)).astype(np.float32)
        lps.append(x - np.log(np.exp(x).sum(1, keepdims=True)))
        targets.append([int(k) for k in rng.integers(1, 6, length)])
    targets[2][3] = targets[2][4]  # a repeated label needs a blank between its two frames
    got = ctc_scores(lps, targets, batch=4)
    want = [ctc_logp(lp, t) for lp, t in zip(lps, targets, strict=True)]
    # 25 labels with repeats do not fit 25 frames: both say impossible.
    assert np.isneginf(want[3]) == np.isneginf(got[3])
    finite = [i for i in range(len(lps)) if np.isfinite(want[i])]
    np.testing.assert_allclose(got[finite], np.array(want)[finite], rtol=1e-4, atol=1e-3)


def test_rereading_keeps_sure_lines_and_returns_the_width_each_line_was_read_at(example_pages):
    from ocr.metrics import ErrorRates

    lines, crops = example_crops(example_pages[0], 30)
    once = Recognizer.load(None, "cpu")
    lps, widths = once.read(crops)
    assert widths == [c.shape[1] for c in crops]
    # Nothing is unsure under a confidence of 0: the same reading as without scales.
    never = Recognizer.load(None, "cpu", reread_scales=REREAD_SCALES, reread_below=0.0)
    for a, b in zip(lps, never.read(crops)[0], strict=True):
        np.testing.assert_array_equal(a, b)
    always = Recognizer.load(None, "cpu", reread_scales=REREAD_SCALES, reread_below=1.01)
    again, again_widths = always.read(crops)
    allowed = [{scaled_width(c.shape[1], f) for f in (1.0, *REREAD_SCALES)} for c in crops]
    assert all(w in ok for w, ok in zip(again_widths, allowed, strict=True))
    assert any(w != c.shape[1] for w, c in zip(again_widths, crops, strict=True))
    # Each line's frames are those of the width it was read at.
    assert all(lp.shape[0] == w // 2 for lp, w in zip(again, again_widths, strict=True))
    plain, reread = ErrorRates(), ErrorRates()
    for line, a, b in zip(lines, lps, again, strict=True):
        plain.add(line.text, greedy_decode(a, once.charset).text)
        reread.add(line.text, greedy_decode(b, once.charset).text)
    assert reread.cer <= plain.cer + 0.005
    with pytest.raises(ValueError, match="between 0.25 and 4"):
        Recognizer.load(None, "cpu", reread_scales=(0.0,))


def test_the_shortcut_head_is_computed_only_in_training_and_when_weighted():
    cs = Charset.build([])
    model = CRNN(
        CRNNConfig(num_classes=len(cs), channels=(8, 16, 16, 16), lstm_hidden=16, lstm_layers=1, shortcut=True)
    )
    x = torch.rand(2, 1, 48, 40)
    model.train()
    main, side = model.forward_train(x)
    assert side is not None and side.shape == main.shape == (20, 2, len(cs))
    assert model.forward_train(x, shortcut=False)[1] is None
    model.eval()
    assert model.forward_train(x)[1] is None
    # Inference reads the BiLSTM head only.
    assert torch.equal(model(x), model.forward_train(x)[0])


def test_blank_penalty_lowers_the_blank_keeps_distributions_and_lets_a_close_character_through(small_model):
    model, cs = small_model
    model.eval()
    crops = [np.random.default_rng(3).integers(0, 256, (48, w), dtype=np.uint8) for w in (90, 200)]
    for backend in ("torch", "onnx"):
        raw = Recognizer(model, cs, backend=backend, blank_penalty=0).logprobs(crops)
        shipped = Recognizer(model, cs, backend=backend).logprobs(crops)
        for a, b in zip(raw, shipped, strict=True):
            # The blank loses exactly the penalty against every character, and each frame stays a distribution
            # (confidences are CTC probabilities of the text: they must not shrink with every blank frame).
            np.testing.assert_allclose((a[:, 0:1] - a[:, 1:]) - (b[:, 0:1] - b[:, 1:]), BLANK_PENALTY, atol=1e-4)
            np.testing.assert_allclose(np.exp(b).sum(axis=1), 1.0, atol=1e-4)
            assert (b[:, 0] < a[:, 0]).all() and (b[:, 1:] > a[:, 1:]).all()
    # A frame where the blank beats a character by less than the penalty emits the character.
    frames = np.log(np.full((3, len(cs.labels)), 1e-4, np.float32))
    frames[:, 0] = np.log(0.55)
    frames[1, 1] = np.log(0.40)
    assert greedy_decode(frames, cs).text == ""
    frames[:, 0] -= BLANK_PENALTY
    assert greedy_decode(frames, cs).text == cs.labels[1]
