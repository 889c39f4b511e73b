"""The corpus layer: page keys, hands and the validation split of ``ocr/splits.toml``."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from ocr.charset import label_text
from ocr.corpus import DEFAULT_DATA, Splits, corpus_pages, hand_of, split_of


@pytest.mark.parametrize(
    ("key", "hand"),
    [
        ("lectaurep/train/random-set-1/FRAN_0025_0934_L-1", "lectaurep/train/random-set-1/FRAN_0025_0934"),
        ("lectaurep/train/dufour-1/DAFANCH96_048MIC07691_L-1", "lectaurep/train/dufour-1"),
        ("testaments-poilus/batch-2/TestamentsDePoilus_will_AN_0006-3", "testaments-poilus/batch-2/AN_0006"),
        ("cremma-mss-19/lettres-veuillot/f136", "cremma-mss-19/lettres-veuillot"),
        ("copiste-dun-jour/volunteers/wikitexte_0221_double_1", "copiste-dun-jour/volunteers/wikitexte_0221"),
        ("timeus/prudhommes-1858/PH_1858-570_b", "timeus/prudhommes-1858"),
    ],
)
def test_hand_of_follows_the_data_readme(key: str, hand: str) -> None:
    assert hand_of(key) == hand


def test_a_held_out_hand_never_trains(tmp_path: Path) -> None:
    splits = Splits(frozenset({"a/train/x-1/p3"}), frozenset({"testaments-poilus/batch-2/AN_0006"}))
    assert splits.split_of_key("testaments-poilus/batch-2/TestamentsDePoilus_will_AN_0006-0") == "val-unseen"
    assert splits.split_of_key("testaments-poilus/batch-2/TestamentsDePoilus_will_AN_0007-0") == "train"
    assert splits.split_of_key("a/train/x-1/p3") == "val-seen"


def test_stems_of_lectaurep_pages_keep_their_split() -> None:
    assert split_of("FRAN_0025_0934_L-0") == "val-unseen"
    assert split_of("DAFANCH96_048MIC07695_L-0") == "val-seen"
    assert split_of("DAFANCH96_048MIC07000_L-0") == "train"


@pytest.mark.skipif(not DEFAULT_DATA.is_dir(), reason="needs ../shared/data")
def test_the_split_file_names_real_pages_and_hands() -> None:
    pages = corpus_pages()
    by_hand: dict[str, set[str]] = defaultdict(set)
    for page in pages:
        by_hand[page.hand].add(page.split)
    splits = Splits.load()
    keys = {p.key for p in pages}
    assert splits.seen_pages <= keys, sorted(splits.seen_pages - keys)
    assert splits.unseen_hands <= set(by_hand), sorted(splits.unseen_hands - set(by_hand))
    # Held-out hands are whole; a seen-hand validation page has training pages of its hand.
    for hand in splits.unseen_hands:
        assert by_hand[hand] == {"val-unseen"}
    for page in pages:
        if page.split == "val-seen":
            assert "train" in by_hand[page.hand], page.key
    # Every corpus of the data README is read, and each has held-out pages.
    corpora = {p.corpus for p in pages}
    assert {"lectaurep", "testaments-poilus", "timeus", "cremma-mss-19", "copiste-dun-jour"} <= corpora
    for corpus in corpora:
        assert any(p.split != "train" for p in pages if p.corpus == corpus), corpus


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("l’acte — dit\xa0Jean", "l'acte – dit Jean"),
        ("Mne >Duchasl< Duchastel", "Mne Duchasl Duchastel"),
        ("faisait >< >< tous les dimanches,", "faisait tous les dimanches,"),
        ("« Vente » par Mr Dupont", "« Vente » par Mr Dupont"),
        ("prod _{j=1 -atop j-neq i}^{k}", None),
    ],
)
def test_labels_map_the_new_corpora_symbols(text: str, label: str | None) -> None:
    assert label_text(text) == label
