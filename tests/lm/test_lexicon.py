from __future__ import annotations

import json
import math

import numpy as np
import pytest
from rapidfuzz.distance import Levenshtein

from lm.build import LMInfo
from lm.decoder import BeamDecoder, DecodedLine, DecoderConfig, GreedyDecoder, ctc_logp
from lm.lexicon import CandidateIndex, case_form, ctc_label_span, ctc_logp_batch

from .conftest import peaked, spell

#: "Gimonet (Jean)" with the 'n' of Gimonet just under token_min_logp (-5: p 0.0067) behind an 'm':
#: the beam never builds the surname and reads the unknown "Gimomet".
GIMONET = ("Gimonet (Jean)", {4: {"m": 0.9, "n": 0.006}})


def lexicon_config(**overrides: float) -> DecoderConfig:
    # alpha 0.5: with the tiny LM the name then gains ~6.7 nats over an unknown word, more than the ~5 its 'n' costs.
    return DecoderConfig(**{"processes": 1, "alpha": 0.5, "lexicon_rescore": True, **overrides})


def assert_words_consistent(line: DecodedLine, lp: np.ndarray, labels: list[str]) -> None:
    """The line's text is its words; spans are ordered, inside the line, and confidences follow from them."""
    ids = {c: i for i, c in enumerate(labels)}
    assert line.text == " ".join(w.text for w in line.words)
    ends = [0]
    for w in line.words:
        assert ends[-1] <= w.start_frame < w.end_frame <= len(lp), w
        ends.append(w.end_frame)
        expected = math.exp(ctc_logp(lp[w.start_frame : w.end_frame], [ids[c] for c in w.text]) / len(w.text))
        assert w.confidence == pytest.approx(min(1.0, expected), rel=1e-6), w


# --- CTC helpers ----------------------------------------------------------


def test_batched_ctc_equals_ctc_logp() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(9, 5))
    lp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    targets = [[1], [1, 2], [1, 1], [2, 1, 2, 3], [], [4, 4, 4, 4, 4], [3, 1, 4, 1]]
    batch = ctc_logp_batch(lp, targets)
    for target, got in zip(targets, batch, strict=True):
        assert got == pytest.approx(ctc_logp(lp, target), abs=1e-9), target
    # More labels than frames can hold (repeats need a blank between them): impossible.
    assert ctc_logp_batch(lp[:3], [[4, 4, 4]])[0] == -math.inf


def test_label_span_is_where_the_letters_are(labels: list[str]) -> None:
    ids = {c: i for i, c in enumerate(labels)}
    lp = peaked(labels, [{}, {}, *spell("abc")[1:], {}, {}])  # a b c at frames 2, 4, 6 of 10
    assert ctc_label_span(lp, [ids[c] for c in "abc"]) == (2, 7)
    assert ctc_label_span(lp, []) == (0, 0)


# --- candidate search -----------------------------------------------------


def test_case_forms() -> None:
    assert [case_form(w) for w in ("DUPONT", "Dupont", "dupont", "deSoissons")] == [
        "upper",
        "capitalized",
        "lower",
        "lower",
    ]


def test_candidate_search_equals_brute_force() -> None:
    """The letter-set filter never loses a spelling within the distance, accented and in every case form."""
    rng = np.random.default_rng(0)
    letters = list("aeinorstulmécèdp")
    words = ["".join(rng.choice(letters, size=int(rng.integers(2, 10)))) for _ in range(3000)]
    words += [w.capitalize() for w in words[:1000]] + [w.upper() for w in words[1000:2000]]
    index = CandidateIndex(words)
    assert len(index) == len(set(words))
    queries = [*words[:40:4], *(w.capitalize() for w in words[:30:3]), *(w.upper() for w in words[1000:1030:3])]
    queries += ["Merlot", "DUPONT", "séance", "ab"]
    for query in queries:
        for distance in (1, 2, 3):
            expected = {
                w for w in set(words) if case_form(w) == case_form(query) and Levenshtein.distance(w, query) <= distance
            }
            found = index.search(query, distance)
            assert {w for w, _ in found} == expected, (query, distance)
            assert all(d == Levenshtein.distance(w, query) for w, d in found)


# --- rescoring in the decoder --------------------------------------------


def test_rescoring_restores_a_name_the_beam_cut(labels: list[str], tiny_lm: LMInfo) -> None:
    text, confusions = GIMONET
    lp = peaked(labels, spell(text, confusions=confusions))
    assert GreedyDecoder(labels).decode_line(lp).text == "Gimomet (Jean)"
    with BeamDecoder(labels, tiny_lm.prefix, lexicon_config(lexicon_rescore=False)) as plain:
        before = plain.decode_beams([lp])[0]
    assert before.text == "Gimomet (Jean)"  # the LM alone cannot: 'n' was never tried
    with BeamDecoder(labels, tiny_lm.prefix, lexicon_config()) as dec:
        assert dec.rescorer is not None and "Gimonet" in dec.rescorer.candidates("Gimomet")
        line = dec.decode_beams([lp])[0]
    assert line.text == text
    assert line.nbest[0][0] == text and line.nbest[0][1] > before.nbest[0][1]
    assert_words_consistent(line, lp, labels)
    # The name's span is its letters (frames 1 to 13 of spell()), the untouched word is as the beam put it.
    assert (line.words[0].start_frame, line.words[0].end_frame) == (1, 14)
    assert line.words[1] == before.words[1]
    # The name's confidence reflects its weak letter, and the line's follows.
    assert line.words[0].confidence < before.words[0].confidence
    assert line.confidence < before.confidence


def test_replaced_word_takes_the_frames_of_its_letters(labels: list[str], tiny_lm: LMInfo) -> None:
    # The final 't' is under token_min_logp: the beam ends the word at the 'e' (frame 11); the window widened
    # by 3 frames lets "Gimonet" claim the 't' at frame 13, short of the '(' of the next word at frame 15.
    lp = peaked(labels, spell("Gimonet (Jean)", p=0.995, confusions={6: {"t": 0.006}}))
    with BeamDecoder(labels, tiny_lm.prefix, lexicon_config(lexicon_rescore=False)) as plain:
        before = plain.decode_batch([lp])[0]
    with BeamDecoder(labels, tiny_lm.prefix, lexicon_config()) as dec:
        line = dec.decode_batch([lp])[0]
    assert before.text == "Gimone (Jean)" and (before.words[0].start_frame, before.words[0].end_frame) == (1, 12)
    assert line.text == "Gimonet (Jean)" and (line.words[0].start_frame, line.words[0].end_frame) == (1, 14)
    assert line.words[1] == before.words[1]
    assert_words_consistent(line, lp, labels)


def test_margin_keeps_the_search_result(labels: list[str], tiny_lm: LMInfo) -> None:
    text, confusions = GIMONET
    lp = peaked(labels, spell(text, confusions=confusions))
    with BeamDecoder(labels, tiny_lm.prefix, lexicon_config(lexicon_margin=30.0)) as dec:
        assert dec.decode_batch([lp])[0].text == "Gimomet (Jean)"


def test_unknown_word_without_close_spelling_is_left_alone(labels: list[str], tiny_lm: LMInfo) -> None:
    lp = peaked(labels, spell("Zyxwvut (Jean) Quorkel"))
    with BeamDecoder(labels, tiny_lm.prefix, lexicon_config(lexicon_rescore=False)) as plain:
        expected = plain.decode_beams([lp])[0]
    with BeamDecoder(labels, tiny_lm.prefix, lexicon_config()) as dec:
        assert dec.rescorer is not None
        assert dec.rescorer.needs_rescoring("Zyxwvut") and dec.rescorer.candidates("Zyxwvut") == []
        line = dec.decode_beams([lp])[0]
    assert line == expected
    assert line.text == "Zyxwvut (Jean) Quorkel"
    assert_words_consistent(line, lp, labels)


def test_known_words_and_numbers_are_never_tried(labels: list[str], tiny_lm: LMInfo) -> None:
    with BeamDecoder(labels, tiny_lm.prefix, lexicon_config()) as dec:
        rescorer = dec.rescorer
        assert rescorer is not None
        for core in ("Dupont", "DUPONT", "Gimonet", "rentier", "deGimonet", "M^r", "1850", "12e", "Xy", "Jean-Pierr"):
            assert not rescorer.needs_rescoring(core), core
        assert rescorer.needs_rescoring("Gimomet") and rescorer.needs_rescoring("GIMOMET")


def test_upper_case_word_gets_an_upper_case_name(labels: list[str], tiny_lm: LMInfo) -> None:
    lp = peaked(labels, spell("GIMONET, rentier", confusions={4: {"M": 0.9, "N": 0.006}}))
    with BeamDecoder(labels, tiny_lm.prefix, lexicon_config()) as dec:
        line = dec.decode_batch([lp])[0]
    assert line.text == "GIMONET, rentier"
    assert_words_consistent(line, lp, labels)


def test_a_name_read_for_a_text_word_is_tried_when_asked(labels: list[str], tiny_lm: LMInfo) -> None:
    # The training text has "Martin (Louis"; the 'n' is cut, so the beam settles on the surname MARTEK,
    # which the LM knows only from the name list (not a common word, unlike "martel"). Only the names pass
    # (LM words two edits away) tries "Martin". At alpha 0.7 the LM prefers "Martin" by ~5.8 nats, more than
    # the ~5 its cut 'n' costs.
    lp = peaked(labels, spell("Martin (Louis)", confusions={4: {"i": 0.6, "e": 0.35}, 5: {"k": 0.9, "n": 0.006}}))
    clean = peaked(labels, spell("Martek (Louis)"))
    for names, expected in ((0, "Martek (Louis)"), (1, "Martek (Louis)"), (2, "Martin (Louis)")):
        config = lexicon_config(alpha=0.7, lexicon_names_max_distance=names)
        with BeamDecoder(labels, tiny_lm.prefix, config) as dec:
            assert dec.rescorer is not None
            assert dec.rescorer.needs_rescoring("Martek") == bool(names)
            line, kept = dec.decode_batch([lp, clean])
        assert line.text == expected, names
        assert_words_consistent(line, lp, labels)
        assert kept.text == "Martek (Louis)"  # a name the recognizer reads clearly stays


def test_hotwords_are_candidates(labels: list[str], tiny_lm: LMInfo) -> None:
    # Neither the LM nor the lexicon knows "Zorglub": only the hotword list can restore its 'u'.
    lp = peaked(labels, spell("Zorglub rentier", confusions={5: {"a": 0.85, "u": 0.1}}))
    cfg = lexicon_config(token_min_logp=-2.0, hotword_weight=5.0)
    with BeamDecoder(labels, tiny_lm.prefix, cfg) as dec:
        assert dec.decode_batch([lp])[0].text == "Zorglab rentier"
        dec.set_hotwords(["Zorglub"])
        assert dec.decode_batch([lp])[0].text == "Zorglub rentier"


def test_pool_workers_rescore_as_the_parent(labels: list[str], tiny_lm: LMInfo) -> None:
    text, confusions = GIMONET
    lines = [peaked(labels, spell(text, confusions=confusions)), peaked(labels, spell("Vente par Mr Dupont"))] * 3
    with BeamDecoder(labels, tiny_lm.prefix, lexicon_config()) as seq:
        expected = seq.decode_batch(lines)
    with BeamDecoder(labels, tiny_lm.prefix, lexicon_config(processes=2)) as par:
        assert par.decode_batch(lines) == expected
        assert par._pool is not None  # really decoded by the workers
    assert expected[0].text == text


def test_set_lexicon_rescoring_turns_it_on_and_off(labels: list[str], tiny_lm: LMInfo) -> None:
    text, confusions = GIMONET
    lp = peaked(labels, spell(text, confusions=confusions))
    with BeamDecoder(labels, tiny_lm.prefix, lexicon_config(processes=2, lexicon_rescore=False)) as dec:
        assert dec.rescorer is None
        assert {line.text for line in dec.decode_batch([lp] * 3)} == {"Gimomet (Jean)"}
        dec.set_lexicon_rescoring(True, lexicon_margin=0.0)
        assert {line.text for line in dec.decode_batch([lp] * 3)} == {text}
        dec.set_lexicon_rescoring(False)
        assert {line.text for line in dec.decode_batch([lp] * 3)} == {"Gimomet (Jean)"}
        with pytest.raises(ValueError, match="not lexicon settings"):
            dec.set_lexicon_rescoring(True, alpha=1.0)
    with BeamDecoder(labels, None, lexicon_config()) as no_lm:
        assert no_lm.rescorer is None  # nothing to rescore with


def test_load_reads_lexicon_settings(labels: list[str], tiny_lm: LMInfo) -> None:
    info_path = tiny_lm.files.info
    saved = info_path.read_text(encoding="utf-8")
    try:
        info = json.loads(saved)
        info["decoder"] = {"alpha": 0.2, "lexicon_rescore": True, "lexicon_margin": -2.5, "lexicon_max_distance": 1}
        info_path.write_text(json.dumps(info), encoding="utf-8")
        with BeamDecoder.load(labels, tiny_lm.prefix, processes=1) as dec:
            assert dec.rescorer is not None
            assert (dec.rescorer.margin, dec.rescorer.max_distance) == (-2.5, 1)
            assert dec.version.endswith("-lex1m-2.5")
        with BeamDecoder.load(labels, tiny_lm.prefix, processes=1, lexicon_rescore=False) as off:
            assert off.rescorer is None and "lex" not in off.version
    finally:
        info_path.write_text(saved, encoding="utf-8")


def test_settings_switch_the_rescoring_off(labels: list[str], tiny_lm: LMInfo) -> None:
    from types import SimpleNamespace

    from lm.decoder import open_decoder

    info_path = tiny_lm.files.info
    saved = info_path.read_text(encoding="utf-8")
    try:
        info = json.loads(saved)
        info["decoder"] = {"lexicon_rescore": True}
        info_path.write_text(json.dumps(info), encoding="utf-8")
        on = SimpleNamespace(lm=tiny_lm.prefix, decode_workers=1, lexicon_rescore=None)
        with open_decoder(labels, on) as dec:
            assert dec.rescorer is not None
        off = SimpleNamespace(lm=tiny_lm.prefix, decode_workers=1, lexicon_rescore=False)
        with open_decoder(labels, off) as dec:
            assert dec.rescorer is None
    finally:
        info_path.write_text(saved, encoding="utf-8")
