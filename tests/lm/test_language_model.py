from __future__ import annotations

import kenlm
import pytest

from lm.build import LMInfo, read_lexicon
from lm.language_model import RegisterLanguageModel
from lm.words import WordClass


@pytest.fixture(scope="module")
def register_lm(tiny_lm: LMInfo) -> RegisterLanguageModel:
    files = tiny_lm.files
    return RegisterLanguageModel(
        kenlm.Model(str(files.binary)),
        files.unigrams.read_text(encoding="utf-8").split(),
        read_lexicon(files.lexicon),
        unk_score_offset=-10.0,
        words=WordClass.read(files.words),
    )


def test_words_names_and_unknowns(register_lm: RegisterLanguageModel) -> None:
    start = register_lm.get_start_state()
    logp = lambda word: register_lm.word_logp(start, word)[0]  # noqa: E731
    # A name known only from the surname list scores far above an unknown word, punctuated or not.
    assert logp("Gimonet") > logp("Gimomet") + 5
    assert logp("Gimonet,") > logp("Gimomet,") + 5
    assert logp("GIMONET") > logp("Gimomet") + 5
    # Punctuation is its own token: a seen word keeps its statistics when a comma sticks to it.
    assert logp("Paris,") > logp("Parix,") + 5
    # Superscript marks and glued particles fall back to known readings.
    assert logp("M^r") == pytest.approx(logp("Mr"))
    assert logp("deGimonet") > logp("deGimomet") + 5
    line = register_lm.line_logp
    assert line("Dupont (Jean Pierre) marchand") > line("Dupont (Jean Pierre) marxand")


def test_common_words_outside_the_training_text(register_lm: RegisterLanguageModel) -> None:
    start = register_lm.get_start_state()
    logp = lambda word: register_lm.word_logp(start, word)[0]  # noqa: E731
    # No training line writes "responsabilité": the common-word class knows it, in its three case forms.
    assert "responsabilité" not in register_lm._vocab  # noqa: SLF001
    for form in ("responsabilité", "Responsabilité", "RESPONSABILITÉ"):
        assert logp(form) > logp("responsabilitq") + 3, form
    assert logp("ResponsabiLité") == pytest.approx(logp("responsabilitq"), abs=2)
    # A frequent word scores above a rare one through its share of the class.
    assert logp("maison") > logp("chevêchette")
    assert register_lm.score_partial_token("responsabil") == 0.0
    register_lm.reset_params(word_score_offset=-3.0)
    try:
        assert logp("maison") > logp("responsabilitq")
        lowered = logp("Prévoyance")
    finally:
        register_lm.reset_params(word_score_offset=0.0)
    assert logp("Prévoyance") == pytest.approx(lowered + 3.0)


def test_glued_word_ties_with_its_split_form(register_lm: RegisterLanguageModel) -> None:
    # "deGimonet" (a transcriber's glue) and "de Gimonet" read as the same LM words and earn the same
    # word bonus, so the recognizer's gap decides between them.
    start = register_lm.get_start_state()
    glued, _ = register_lm.score(start, "deGimonet")
    de, state = register_lm.score(start, "de")
    name, _ = register_lm.score(state, "Gimonet")
    assert glued == pytest.approx(de + name)


def test_partial_words(register_lm: RegisterLanguageModel) -> None:
    partial = register_lm.score_partial_token
    for known in ("Gimo", "(Gim", "Dupont,", "(Jean)", "deGim", "1", "12,", "", "("):
        assert partial(known) == 0.0, known
    for unknown in ("Gimox", "Dupomt,", "Xq"):
        assert partial(unknown) < 0.0, unknown
    # Longer unknown partial words cost more, as in pyctcdecode.
    assert partial("Xqzwvkjh") < partial("Xq")


def test_fused_score_uses_alpha_and_beta(register_lm: RegisterLanguageModel) -> None:
    start = register_lm.get_start_state()
    raw, _ = register_lm.word_logp(start, "Paris")
    register_lm.reset_params(alpha=0.5, beta=2.0)
    fused, _ = register_lm.score(start, "Paris")
    assert fused == pytest.approx(0.5 * raw * 2.302585092994046 + 2.0)
