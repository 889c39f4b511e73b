import pytest

from ocr.metrics import cer, error_rates, wer


def test_cer_is_summed_over_the_set_not_averaged():
    refs = ["abcd", "a" * 96]
    hyps = ["abcx", "a" * 96]
    # Per-line average would be (0.25 + 0) / 2 = 0.125; the set rate is 1 / 100.
    assert cer(refs, hyps) == pytest.approx(0.01)


def test_wer_counts_word_edits():
    assert wer(["Jean Dupont rue"], ["Jean Dupond rue"]) == pytest.approx(1 / 3)
    assert wer(["a b"], ["a b c"]) == pytest.approx(0.5)


def test_nfc_equivalent_strings_are_equal():
    assert cer(["Dupré"], ["Dupre\u0301"]) == 0.0


def test_counts_and_empty_references():
    rates = error_rates([("", "x"), ("abc", "")])
    assert (rates.char_errors, rates.chars, rates.lines) == (4, 3, 2)
    assert error_rates([]).cer == 0.0
