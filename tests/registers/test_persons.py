"""Persons read from real names cells of the LECTAUREP training pages, with the shipped names LM's lexicon."""

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
    # dufour-1, DAFANCH96_048MIC07692_L-0
    found = find_persons(
        cell("Gelot (parMr Joseph) Md deMeubles, demt à", "Paris, rueNotre Dame des Victoires, 16, auProfit")
    )
    assert [(p.title, p.first_names, p.surname) for p in found] == [("M.", "Joseph", "Gelot")]
    gelot = found[0]
    assert (gelot.start, gelot.end, gelot.line_id) == (0, 5, "l0")
    assert gelot.domicile.startswith("Paris")
    assert 0 < gelot.confidence <= 1
    assert gelot.box[0] == 100 and gelot.box[2] < 300  # the surname's share of the line


def test_other_parties_after_titles_and_first_names() -> None:
    # riant-4, DAFANCH96_048MIC06491_L-0
    assert people(
        "Vernes (par Jean François) Cité -", "d'Orléans n°25. à François Vernes", "son père demt à Genève."
    ) == [
        ("", "Jean François", "Vernes"),
        ("", "François", "Vernes"),
    ]
    assert people(
        "Caillard de Beauvoir (par ~", "Abraham Louis) rue du grand Chantier", "N°2. à Emile Paul Crosnier, rue du"
    ) == [
        ("", "Abraham Louis", "Caillard de Beauvoir"),
        ("", "Emile Paul", "Crosnier"),
    ]


def test_widow_and_wife_titles() -> None:
    # dufour-1: a title glued to the word before it, a surname across the cell's lines.
    found = people(
        "Champeaux (par les héritiers & représentants de",
        "Made Louise Aimée Morlon Vve deMr Edme Pelerin)",
        "demt à Paris, à Mr Pierre hyacinthe Théophile",
        "Gamard, avoué dePremière instance demt à Paris",
    )
    assert found[0] == ("Mme", "Louise Aimée", "Champeaux")
    assert ("M.", "Edme", "Pelerin") in found
    assert any(p[2] == "Gamard" for p in found)


def test_twentieth_century_forms() -> None:
    # random-set-1, FRAN_0025_0934_L-0 (1929) and FRAN_0025_0422_L-1 (1920)
    assert people("Baron (Emile) à Paris 13 rue de la Motte Picquet, M^r Edmond.", "Henri Schmit à Chelles")[:2] == [
        ("", "Emile", "Baron"),
        ("M.", "Edmond Henri", "Schmit"),
    ]
    assert people("Muret par. Veuve Gabriel Frédéric Emmanuel née Léontine")[0] == (
        "Veuve",
        "Gabriel Frédéric Emmanuel",
        "Muret",
    )
    assert people("Messager Jean André Emile Charles) à Paris 103 rue Jouffroy")[0] == (
        "",
        "Jean André Emile Charles",
        "Messager",
    )


def test_places_and_companies_are_no_persons() -> None:
    assert people("Union Parisienne Foncière (siège à Paris) 8 rue", "Drouot.") == []
    assert people("rue du Perreux") == []
    assert all(
        p[2] not in ("Paris", "Notre", "Dame", "Victoires")
        for p in people("demt à Paris, rueNotre Dame des Victoires, 16")
    )


def test_nbest_spellings_come_from_the_line_alternatives() -> None:
    line = RegisterLine(
        "l0", (0, 0, 800, 60), "Gelot (parMr Joseph) Md", nbest=["Gelat (parMr Joseph) Md", "Jelot (par Mr Joseph) Md"]
    )
    (gelot,) = find_persons([line])
    assert gelot.nbest == ["Gelat", "Jelot"]
