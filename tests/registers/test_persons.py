"""Persons read from real names cells of LECTAUREP training pages, with the shipped names LM's lexicon."""

from __future__ import annotations

import pytest

from registers.layout import RegisterLine
from registers.persons import find_persons, load_knowledge


def cell(*texts: str) -> list[RegisterLine]:
    return [RegisterLine(f"l{i}", (100, 100 * i, 900, 100 * i + 60), t, confidence=0.9) for i, t in enumerate(texts)]


def people(*texts: str) -> list[tuple[str, str, str]]:
    return [(p.title, p.first_names, p.surname) for p in find_persons(cell(*texts))]


@pytest.fixture(scope="module", autouse=True)
def knowledge() -> None:
    assert load_knowledge().classes, "the shipped lexicon models/names.lexicon.txt.gz is needed"


def test_surname_then_first_names_in_parentheses() -> None:
    # dufour-1, DAFANCH96_048MIC07660_L-0, act 482
    found = find_persons(
        cell(
            "Nicolle (parMr Jean Céleste) fondeur etfabricant",
            "d'appareils de Gaz, demt à Paris, rue Amelot, 64,",
            "deténu à laPrison deSte Pélagie à Mr Jean Baptiste",
            "Galan, commis chez Mond. Sr Nicolle, demt à Paris",
        )
    )
    assert [(p.title, p.first_names, p.surname) for p in found][:2] == [
        ("M.", "Jean Céleste", "Nicolle"),
        ("M.", "Jean Baptiste", "Galan"),
    ]
    nicolle, galan = found[:2]
    assert (nicolle.start, nicolle.end, nicolle.line_id, nicolle.role) == (0, 7, "l0", "party")
    assert nicolle.domicile.startswith("Paris, rue Amelot, 64")
    assert 0 < nicolle.confidence <= 1
    assert nicolle.box[0] == 100 and nicolle.box[2] < 300  # the surname's share of the line
    assert galan.line_id == "l3" and galan.role == "other"


def test_first_names_then_surname_and_particles() -> None:
    # riant-4, DAFANCH96_048MIC06490_L-1, acts 535 and 537
    assert people(
        "Bergeron (par le mandataire de",
        "Madelaine Félicité Grard Veuve de",
        "Nicolas) rue du Faubourg St Denis n° 73.",
        "à Cécile Flore Lemanceau Deschaleris",
        "Veuve de Jerôme Auguste Lesecq, rue",
        "de Bondy n° 34. de 10,000f à prendre",
        "sur Mr & Mde Gonin, moyt pareilleSomme",
    ) == [
        ("", "Madelaine Félicité", "Bergeron"),
        ("", "Cécile Flore", "Lemanceau Deschaleris"),
        ("", "Jerôme Auguste", "Lesecq"),
        ("Mme", "", "Gonin"),
    ]
    found = find_persons(
        cell(
            "de Monval (par Charles Antoine",
            "Auguste Baron Gamon) demeurant",
            "à Grenoble, comme Tuteur de ses trois",
            "filles à Armand du Peyrat, quai Voltaire",
            "n° 15.",
        )
    )
    assert [(p.first_names, p.surname, p.domicile) for p in found] == [
        ("Charles Antoine Auguste", "de Monval", "Grenoble"),
        ("Armand", "du Peyrat", "quai Voltaire n° 15"),
    ]


def test_titles() -> None:
    # dufour-1, DAFANCH96_048MIC07660_L-0, act 484: "Madelle" is Mademoiselle.
    found = people(
        "Delcourt (entre Mr Pierre) Professeur d'Escrime",
        "demt à Paris au Luxembourg et Madelle Anne",
        "Marie Bouillard, Cuisinière chez Mr Pascal,",
    )
    assert found[0][2] == "Delcourt"
    assert ("Mlle", "Anne Marie", "Bouillard") in found
    # random-set-1, FRAN_0025_0293_L-1, act 585: "Vve" is Veuve.
    assert ("Veuve", "", "Linarès") in people(
        "Séquanaise-Capitalisation (par la Sté) pour Toucher", "Cce de 10.000+ s/. Vve Linarès"
    )


def test_twentieth_century_forms() -> None:
    # random-set-1, FRAN_0025_0293_L-1 (1914), act 587: several parties, a surname of three words.
    assert people(
        "Nouette-Delorme (de Louise Jeanne) de Paris av. de Messine 9,",
        "veuve de Auguste Léon Thélier ; 2° Henri Louis Lucien Anne Marie Goury du",
        "Roslan de Paris Av. de Messine 9. et autres, pr Retrait de Valeurs",
    ) == [
        ("", "Louise Jeanne", "Nouette-Delorme"),
        ("", "Auguste Léon", "Thélier"),
        ("", "Henri Louis Lucien Anne Marie", "Goury du Roslan"),
    ]
    # FRAN_0025_0327_L-0 (1915), act 411; FRAN_0025_0293_L-1, act 591
    assert people("Schinberg (Léon) clerc de notaire à Paris rue de") == [("", "Léon", "Schinberg")]
    assert people("Pourny (par Théodule Alexandre Hubert) de Parie rue de") == [
        ("", "Théodule Alexandre Hubert", "Pourny")
    ]


def test_places_and_words_are_no_persons() -> None:
    assert people("Paris; Susd. rue St Dominique Nos 21 & 23.") == []  # riant-4 06490_L-1: "susdit"
    assert people("payée comptant.") == []
    found = people("Mathey (parMr Louis Joseph) rentier demt à", "Paris, rueduFaubourg St Denis, 86, pour")
    assert found == [("M.", "Louis Joseph", "Mathey")]  # dufour-1 07660_L-0, act 483: no "Denis" person


def test_nbest_spellings_come_from_the_line_alternatives() -> None:
    line = RegisterLine(
        "l0",
        (0, 0, 800, 60),
        "Nicolle (parMr Jean Céleste)",
        nbest=["Nicole (parMr Jean Céleste)", "Micolle (par Mr Jean Céleste)"],
    )
    (nicolle,) = find_persons([line])
    assert nicolle.nbest == ["Nicole", "Micolle"]


def test_a_surname_after_an_elided_particle_is_kept_as_written() -> None:
    # "Aubin" is a first name too; after "d'" it is the surname.
    assert people("d'Aubin (parMr Jean) demt à Paris") == [("M.", "Jean", "d'Aubin")]
