from __future__ import annotations

import itertools
import json
import math
import signal

import numpy as np
import pytest

from lm.build import LMInfo
from lm.decoder import (
    BeamDecoder,
    DecoderConfig,
    GreedyDecoder,
    ctc_logp,
    expand_hotwords,
    read_hotwords,
    squeeze_blank_runs,
)

from .conftest import peaked, spell


def greedy_frames(labels: list[str], chars: list[str], p: float = 0.9) -> np.ndarray:
    return peaked(labels, [{c: p} if c else {} for c in chars], floor=1e-8)


# --- greedy ---------------------------------------------------------------


def test_greedy_merges_repeats_and_drops_blanks(labels: list[str]) -> None:
    lp = greedy_frames(labels, ["a", "a", "", "a", "b", "b", "", "", "c"])
    line = GreedyDecoder(labels).decode_line(lp)
    assert line.text == "aabc"
    assert [(w.text, w.start_frame, w.end_frame) for w in line.words] == [("aabc", 0, 9)]
    assert line.confidence == pytest.approx(0.9, abs=1e-3)


def test_greedy_words_and_spaces(labels: list[str]) -> None:
    lp = greedy_frames(labels, [" ", "a", "b", " ", "", " ", "c", "", " "])
    line = GreedyDecoder(labels).decode_line(lp)
    assert line.text == "ab c"
    assert [(w.text, w.start_frame, w.end_frame) for w in line.words] == [("ab", 1, 3), ("c", 6, 7)]
    assert line.nbest == [("ab c", pytest.approx(float(lp.max(axis=1).sum())))]


def test_greedy_empty_and_blank_lines(labels: list[str]) -> None:
    g = GreedyDecoder(labels)
    empty = g.decode_line(np.zeros((0, len(labels)), np.float32))
    assert empty.text == "" and empty.confidence == 0.0
    blank = g.decode_line(greedy_frames(labels, ["", "", ""]))
    assert blank.text == "" and blank.words == [] and blank.confidence > 0.99


def test_greedy_confidence_is_geometric_mean_of_peaks(labels: list[str]) -> None:
    lp = peaked(labels, [{"x": 0.8}, {"x": 0.6}, {}, {"y": 0.6}], floor=1e-8)
    assert GreedyDecoder(labels).decode_line(lp).confidence == pytest.approx(math.sqrt(0.8 * 0.6), rel=1e-3)


def test_labels_need_a_space() -> None:
    with pytest.raises(ValueError, match="space"):
        GreedyDecoder(["<blank>", "a", "b"])


# --- helpers --------------------------------------------------------------


def test_ctc_logp_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 3))
    lp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    for target in ([1], [1, 2], [1, 1], [2, 1, 2]):
        total = -math.inf
        for path in itertools.product(range(3), repeat=5):
            collapsed = [k for i, k in enumerate(path) if k != 0 and (i == 0 or k != path[i - 1])]
            if collapsed == target:
                total = np.logaddexp(total, sum(lp[t, k] for t, k in enumerate(path)))
        assert ctc_logp(lp, target) == pytest.approx(total, abs=1e-9)


def test_squeeze_keeps_one_frame_per_blank_run(labels: list[str]) -> None:
    lp = peaked(labels, [{}, {}, {}, {"a": 0.9}, {}, {}, {"a": 0.9}, {}])
    squeezed, kept, dropped = squeeze_blank_runs(lp, token_min_logp=-5.0)
    assert kept.tolist() == [0, 3, 4, 6, 7]
    assert dropped == pytest.approx(float(lp[[1, 2, 5], 0].sum()))
    assert np.array_equal(squeezed, lp[kept])


def test_hotwords_file_and_forms(tmp_path) -> None:
    path = tmp_path / "hot.txt"
    path.write_text("# family names of the parish\nMANTEL Gimonet\nMANTEL\n", encoding="utf-8")
    assert read_hotwords(path) == ["MANTEL", "Gimonet"]
    forms = expand_hotwords(["MANTEL"])
    assert {"MANTEL", "Mantel", "Mantel,", "(Mantel)", "Mantel)"} <= set(forms)


# --- beam search ----------------------------------------------------------


def test_beam_without_lm_reads_a_clean_line(labels: list[str]) -> None:
    lp = peaked(labels, spell("Dupont (Jean)"))
    with BeamDecoder(labels, None, DecoderConfig(processes=1)) as dec:
        line = dec.decode_beams([lp])[0]
    assert line.text == "Dupont (Jean)"
    assert [(w.text, w.start_frame, w.end_frame) for w in line.words] == [("Dupont", 1, 12), ("(Jean)", 15, 26)]
    assert all(0.9 < w.confidence <= 1.0 for w in line.words)
    assert 0.9 < line.confidence <= 1.0
    assert line.nbest[0][0] == line.text
    assert [s for _, s in line.nbest] == sorted((s for _, s in line.nbest), reverse=True)


def test_lm_fixes_a_near_miss_name(labels: list[str], tiny_lm: LMInfo) -> None:
    # "Gimonet" is only in the surname list, never in the training text: the class model must carry it.
    text = "Gimonet (Jean)"
    lp = peaked(labels, spell(text, confusions={4: {"m": 0.55, "n": 0.40}}))
    assert GreedyDecoder(labels).decode_line(lp).text == "Gimomet (Jean)"
    with BeamDecoder(labels, None, DecoderConfig(processes=1)) as plain:
        assert plain.decode_batch([lp])[0].text == "Gimomet (Jean)"
    with BeamDecoder(labels, tiny_lm.prefix, DecoderConfig(processes=1)) as dec:
        assert dec.decode_batch([lp])[0].text == text
        assert dec.lm_version == tiny_lm.version


def test_lm_keeps_punctuated_training_words(labels: list[str], tiny_lm: LMInfo) -> None:
    text = "demt à Paris, rue de Lille, 12"
    lp = peaked(labels, spell(text, confusions={9: {"n": 0.5, "r": 0.45}}))  # "Pan is," at the 'r'
    with BeamDecoder(labels, tiny_lm.prefix, DecoderConfig(processes=1)) as dec:
        assert dec.decode_batch([lp])[0].text == text


def test_hotwords_change_the_result(labels: list[str], tiny_lm: LMInfo) -> None:
    lp = peaked(labels, spell("Mantel, rentier", confusions={2: {"r": 0.5, "n": 0.45}}))
    with BeamDecoder(labels, None, DecoderConfig(processes=1)) as plain:
        assert plain.decode_batch([lp])[0].text == "Martel, rentier"
    with BeamDecoder(labels, None, DecoderConfig(processes=1), hotwords=["MANTEL"]) as hot:
        assert hot.decode_batch([lp])[0].text == "Mantel, rentier"
    with BeamDecoder(labels, tiny_lm.prefix, DecoderConfig(processes=1), hotwords=["Mantel"]) as hot_lm:
        assert hot_lm.decode_batch([lp])[0].text == "Mantel, rentier"


def test_fast_hotword_scorer_scores_as_pyctcdecode() -> None:
    from pyctcdecode.language_model import HotwordScorer

    from lm.decoder import FastHotwordScorer

    words = expand_hotwords(["Mantel", "GIMONET", "Dupont", "Du", "de la Tour"])
    ours, theirs = FastHotwordScorer.build(words, 2.0), HotwordScorer.build_scorer(words, weight=2.0)
    texts = ["Mantel, rentier", "Dupont Dupont MANTEL", "Du Dupontel", "la Tour de Gimonet", "", "GIMONET)"]
    for text in texts:
        assert ours.score(text) == pytest.approx(theirs.score(text)), text
    for token in ["M", "Man", "Mantel", "Mantel,", "Du", "Dup", "Gi", "x", "", "GIMONE", "To"]:
        assert ours.score_partial_token(token) == pytest.approx(theirs.score_partial_token(token)), token
        assert (token in ours) == (token in theirs), token


def test_set_hotwords_replaces_them_in_every_worker(labels: list[str]) -> None:
    lp = peaked(labels, spell("Mantel, rentier", confusions={2: {"r": 0.5, "n": 0.45}}))
    with BeamDecoder(labels, None, DecoderConfig(processes=2), hotwords=["MANTEL"]) as dec:
        assert {line.text for line in dec.decode_batch([lp] * 4)} == {"Mantel, rentier"}
        dec.set_hotwords([])
        assert {line.text for line in dec.decode_batch([lp] * 4)} == {"Martel, rentier"}
        dec.set_hotwords(["Mantel"], weight=5.0)
        assert dec.config.hotword_weight == 5.0
        assert {line.text for line in dec.decode_batch([lp] * 4)} == {"Mantel, rentier"}


def random_lines(labels: list[str], n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    texts = ["Dupont (Jean Pierre) rentier", "Martin (Louis), demt à Paris", "Vente par Mr Garnier", "rue du Bac, 4"]
    letters = "abcdefghijklmnopqrstuvwxyz"
    out = []
    for i in range(n):
        text = texts[i % len(texts)]
        confusions = {
            int(k): {text[int(k)]: 0.5, letters[int(rng.integers(26))]: 0.4} for k in rng.integers(0, len(text), size=2)
        }
        frames = spell(text, confusions=confusions)
        # Long blank runs, as between cells of a wide crop.
        frames = [{}] * int(rng.integers(0, 12)) + frames + [{}] * int(rng.integers(0, 12))
        out.append(peaked(labels, frames))
    return out


def test_pool_decoding_equals_sequential(labels: list[str], tiny_lm: LMInfo) -> None:
    lines = random_lines(labels, 24)
    with BeamDecoder(labels, tiny_lm.prefix, DecoderConfig(processes=1)) as seq:
        expected_batch = seq.decode_batch(lines)
        expected_beams = seq.decode_beams(lines)
    with BeamDecoder(labels, tiny_lm.prefix, DecoderConfig(processes=2)) as par:
        assert par.decode_batch(lines) == expected_batch
        assert par.decode_beams(lines) == expected_beams
        pool = par._pool
        assert pool is not None
        assert len({p.pid for p in pool._pool}) == 2  # noqa: SLF001 - really two worker processes
        assert par.decode_batch(lines[:5]) == expected_batch[:5]
        assert par._pool is pool  # reused, not one pool per call
    assert par._pool is None


def test_closing_the_pool_lets_workers_exit_quietly(
    labels: list[str], tiny_lm: LMInfo, capfd: pytest.CaptureFixture[str]
) -> None:
    """Workers forked under a SIGTERM handler that raises (as Prefect's does) exit cleanly, with no traceback."""

    def raising(signum: int, frame: object) -> None:
        raise RuntimeError("the parent's SIGTERM handler ran in a worker")

    previous = signal.signal(signal.SIGTERM, raising)
    try:
        with BeamDecoder(labels, tiny_lm.prefix, DecoderConfig(processes=2)) as dec:
            dec.decode_batch(random_lines(labels, 4))
            workers = list(dec._pool._pool)  # noqa: SLF001 - the worker processes themselves
    finally:
        signal.signal(signal.SIGTERM, previous)
    err = capfd.readouterr().err
    assert [p.exitcode for p in workers] == [0, 0], err  # exited on their own, not terminated
    assert "Traceback" not in err and "RuntimeError" not in err, err


def test_squeezing_blank_runs_changes_nothing(labels: list[str], tiny_lm: LMInfo) -> None:
    """Our decoding (blank runs collapsed) gives pyctcdecode's own result on the full frames, word spans included."""
    lines = random_lines(labels, 12, seed=1)
    cfg = DecoderConfig(processes=1, beam_width=8)
    with BeamDecoder(labels, tiny_lm.prefix, cfg, hotwords=["Garnier"]) as dec:
        ours = dec.decode_beams(lines)
        for lp, line in zip(lines, ours, strict=True):
            beams = dec._ctc.decode_beams(  # noqa: SLF001 - pyctcdecode's public call on the same decoder
                lp,
                beam_width=8,
                beam_prune_logp=cfg.beam_prune_logp,
                token_min_logp=cfg.token_min_logp,
                hotwords=expand_hotwords(["Garnier"]),
                hotword_weight=cfg.hotword_weight,
            )
            text, _, word_frames, _, _ = beams[0]
            assert line.text == text
            assert [(w.text, w.start_frame, w.end_frame) for w in line.words] == [
                (word, start, end) for word, (start, end) in word_frames
            ]


def test_load_reads_tuned_settings(labels: list[str], tiny_lm: LMInfo) -> None:
    info_path = tiny_lm.files.info
    saved = info_path.read_text(encoding="utf-8")
    try:
        info = json.loads(saved)
        info["decoder"] = {"alpha": 0.9, "beta": 2.5, "beam_width": 6, "tuned_on": {"lines": 10}}
        info_path.write_text(json.dumps(info), encoding="utf-8")
        with BeamDecoder.load(labels, tiny_lm.prefix, beam_width=4, processes=1) as dec:
            assert (dec.config.alpha, dec.config.beta, dec.config.beam_width) == (0.9, 2.5, 4)
            assert dec.version == f"beam4-lm:{tiny_lm.version}-a0.9-b2.5"
    finally:
        info_path.write_text(saved, encoding="utf-8")


def test_missing_lm_is_a_clear_error(labels: list[str], tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="build-lm"):
        BeamDecoder(labels, tmp_path / "nothing")


def test_open_decoder_follows_run_settings(labels: list[str], tiny_lm: LMInfo, tmp_path) -> None:
    from types import SimpleNamespace

    from lm.decoder import open_decoder

    assert isinstance(open_decoder(labels, SimpleNamespace(use_lm=False)), GreedyDecoder)
    hot = tmp_path / "hot.txt"
    hot.write_text("MANTEL\n", encoding="utf-8")
    settings = SimpleNamespace(use_lm=True, lm=tiny_lm.files.binary, hotwords=hot, beam_width=5, decode_workers=1)
    with open_decoder(labels, settings) as dec:
        assert isinstance(dec, BeamDecoder)
        assert dec.config.beam_width == 5 and dec.config.processes == 1
        assert "Mantel," in dec.hotwords
        assert dec.lm_version == tiny_lm.version


def test_load_refuses_unknown_settings(labels: list[str], tiny_lm: LMInfo) -> None:
    with pytest.raises(TypeError, match="hotword"):
        BeamDecoder.load(labels, tiny_lm.prefix, hotword=["Mantel"])
    with BeamDecoder.load(labels, tiny_lm.prefix, hotwords=["Mantel"], processes=1) as dec:
        assert "(Mantel)" in dec.hotwords
