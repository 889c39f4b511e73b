from __future__ import annotations

from pathlib import Path

import pytest

from lm.corpus import class_lines
from lm.names import (
    FIRSTNAME_CLASS,
    SURNAME_CLASS,
    NameLexicon,
    clean_name,
    display_case,
    learn_accents,
    name_parts,
    strip_accents,
    suffix_variants,
)
from lm.tokens import line_tokens, lm_tokens, split_word


@pytest.mark.parametrize(
    ("word", "tokens"),
    [
        ("Paris,", ["Paris", ","]),
        ("(Fernand)", ["(", "Fernand", ")"]),
        ("(Fernand),", ["(", "Fernand", ")", ","]),
        ("1929.", ["0000", "."]),
        ("3.75", ["0.00"]),
        ("34bis", ["00bis"]),
        ("d'Aubin", ["d'Aubin"]),
        ("M^r", ["M^r"]),
        ("Fran-", ["Fran", "-"]),
        ("&", ["&"]),
        ("--", ["--"]),
        ("<s>", ["‹s›"]),
    ],
)
def test_lm_tokens_split_punctuation_and_fold_digits(word: str, tokens: list[str]) -> None:
    assert lm_tokens(word) == tokens


def test_split_word_keeps_inner_punctuation() -> None:
    assert split_word("(Jean-Pierre),") == ("(", "Jean-Pierre", "),")
    assert line_tokens("Dupont  (Jean)\t12") == ["Dupont", "(", "Jean", ")", "00"]


def test_name_case_forms_and_accents() -> None:
    assert display_case("JEAN-PIERRE") == "Jean-Pierre"
    assert display_case("D'ALMEIDA") == "D'Almeida"
    assert strip_accents("Thérèse Aloÿs") == "Therese Aloys"
    assert clean_name("alo\x9fs ") == "ALOŸS"
    assert learn_accents(["Thérèse", "Therese", "Thérèse", "Thérése", "Paris"]) == {"THERESE": "THÉRÈSE"}
    assert suffix_variants("BARRIERE") == ["BARRIÈRE"]
    assert suffix_variants("LEFEVRE") == ["LEFÈVRE"]
    assert suffix_variants("LAPORTE") == []
    assert suffix_variants("DE") == []
    assert name_parts("DE LA ROCHETTE") == ["ROCHETTE"]
    assert name_parts("LE GOFF") == ["GOFF"]


def test_lexicon_lookup_prefix_and_round_trip(tmp_path: Path) -> None:
    lex = NameLexicon.build(["DUPONT", "MARTIN", "BARRIERE"], ["MARTIN", "HÉLÈNE", "JEAN-PIERRE"], ["Hélène"])
    assert lex.classes_of("Dupont") == (SURNAME_CLASS,)
    assert lex.classes_of("DUPONT") == (SURNAME_CLASS,)
    assert lex.classes_of("dupont") == ()  # not a case form registers use for a name
    assert lex.classes_of("DuPont") == ()
    assert lex.classes_of("Martin") == (SURNAME_CLASS, FIRSTNAME_CLASS)
    assert lex.classes_of("Barrière") == (SURNAME_CLASS,)  # suffix rule
    assert lex.classes_of("Barriere") == (SURNAME_CLASS,)
    assert lex.classes_of("Jean-Pierre") == (FIRSTNAME_CLASS,)
    assert lex.classes_of("Hélène") == (FIRSTNAME_CLASS,)
    assert lex.has_prefix("Dup") and lex.has_prefix("JEAN-P") and lex.has_prefix("Hél")
    assert not lex.has_prefix("Dux") and not lex.has_prefix("dUp")
    assert lex.sizes == {SURNAME_CLASS: len(lex.classes) - 2, FIRSTNAME_CLASS: 3}
    lex.write(tmp_path / "lex.txt")
    assert NameLexicon.read(tmp_path / "lex.txt").classes == lex.classes


def test_class_lines_replace_only_rare_names() -> None:
    lex = NameLexicon.build(["DUPONT", "GIMONET"], ["JEAN"])
    lines = ["Dupont (Jean) à Paris,", "Dupont (Jean) rentier", "Gimonet, veuve"]
    # Dupont and Jean appear twice: kept; Gimonet once: its line is repeated with the class token.
    assert class_lines(lines, lex, rare_max=1) == [f"{SURNAME_CLASS} , veuve"]
    assert len(class_lines(lines, lex, rare_max=2)) == 3


@pytest.mark.parametrize(
    ("token", "reading"),
    [
        ("M^r", ["Mr"]),
        ("deSoissons", ["de", "Soissons"]),
        ("auHavre", ["au", "Havre"]),
        ("l'homologation", ["l'", "homologation"]),
        ("deprêter", ["de", "prêter"]),  # read so only when "deprêter" itself is unknown
        ("surle", None),  # too short a rest to be told from a word
        ("Paris", None),
    ],
)
def test_fallback_readings(token: str, reading: list[str] | None) -> None:
    from lm.tokens import fallback_tokens

    assert fallback_tokens(token) == reading
