from __future__ import annotations

import math
from pathlib import Path

import pytest

from lm.words import DEFAULT_SIZE, WordClass, usable, word_key
from ocr.charset import FOREIGN_LETTERS, FRENCH_BASE


def test_case_forms() -> None:
    assert word_key("limitée") == "limitée"
    assert word_key("Limitée") == "limitée"
    assert word_key("LIMITÉE") == "limitée"
    assert word_key("LiMitée") is None
    assert word_key("") is None
    assert word_key("À") == "à"


def test_usable_words() -> None:
    assert usable("aujourd'hui") and usable("porte-monnaie") and usable("société")
    for bad in ("a", "j2ee", "l'", "-ci", "Paris", "don't!"):
        assert not usable(bad), bad
    assert not usable("ångström", alphabet=FRENCH_BASE)


def test_probabilities_lookup_and_prefixes() -> None:
    words = WordClass.from_frequencies({"maison": 3.0, "maisonnette": 1.0})
    assert sum(10**p for p in words.logp.values()) == pytest.approx(1.0)
    assert words.word_logp("Maison") == pytest.approx(math.log10(0.75))
    assert words.word_logp("MAISONNETTE") == pytest.approx(math.log10(0.25))
    assert words.word_logp("maisons") is None and "maisons" not in words
    assert words.has_prefix("Maisonn") and words.has_prefix("MAIS") and not words.has_prefix("maisx")
    assert words.spellings() == ["maison", "Maison", "maisonnette", "Maisonnette"]


def test_write_read_round_trip(tmp_path: Path) -> None:
    words = WordClass.from_frequencies({"été": 2.0, "hiver": 1.0})
    words.write(tmp_path / "a.txt.gz")
    words.write(tmp_path / "b.txt.gz")
    assert (tmp_path / "a.txt.gz").read_bytes() == (tmp_path / "b.txt.gz").read_bytes()
    back = WordClass.read(tmp_path / "a.txt.gz")
    assert back.logp == pytest.approx(words.logp, abs=1e-4)


def test_french_list_from_wordfreq() -> None:
    alphabet = FRENCH_BASE + FOREIGN_LETTERS
    words = WordClass.french(alphabet=alphabet)
    assert len(words) == DEFAULT_SIZE
    for word in ("responsabilité", "prévoyance", "limitée", "immobilière", "aujourd'hui"):
        assert word in words, word
    assert all(usable(w, alphabet) for w in words.logp)
    # Shares of the class: frequent words first, and the whole class sums to one.
    assert words.word_logp("de") > words.word_logp("maison") > words.word_logp("prévoyance")
    assert sum(10**p for p in words.logp.values()) == pytest.approx(1.0, abs=1e-6)


def test_first_names_leave_the_class_unless_frequent() -> None:
    words = WordClass.from_frequencies({"juste": 8.0, "maison": 4.0, "lucienne": 2.0, "levine": 1.0})
    first_names = {"juste", "lucienne"}
    kept = words.without_names(lambda w: w in first_names, keep_top=2)
    assert set(kept.logp) == {"juste", "maison", "levine"}
    assert sum(10**p for p in kept.logp.values()) == pytest.approx(1.0)
    assert kept.word_logp("juste") > words.word_logp("juste")
