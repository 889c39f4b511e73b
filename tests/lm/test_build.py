from __future__ import annotations

import json
import sys
from pathlib import Path

import kenlm
import pytest

from lm.build import KenLMToolsMissing, LMInfo, build_lm, find_tool, lm_prefix, read_lexicon
from lm.corpus import build_corpus, training_lines
from lm.names import FIRSTNAME_CLASS, SURNAME_CLASS, WORD_CLASS
from lm.words import WordClass

from .conftest import TRAINING_TEXT, require_kenlm_tools


def test_corpus_reads_training_pages_only(tiny_data: Path) -> None:
    assert training_lines(tiny_data) == TRAINING_TEXT
    corpus = build_corpus(tiny_data)
    text = "\n".join(corpus.lines)
    assert "secretvalidationword" not in text and "Zyxwvut" not in text
    # Punctuation split off, digits folded, rare names also seen as their class.
    assert "Dupont ( Jean Pierre ) marchand de vin demt à Paris , rue de Lille , 00" in corpus.lines
    assert any(SURNAME_CLASS in line for line in corpus.lines)
    assert any(FIRSTNAME_CLASS in line for line in corpus.lines)
    assert corpus.lexicon.classes_of("Gimonet") == (SURNAME_CLASS,)
    assert corpus.lexicon.classes_of("Aloÿs") == (FIRSTNAME_CLASS,)
    assert not any(WORD_CLASS in line for line in corpus.lines)  # no word class given


def test_rare_common_words_teach_the_word_class(tiny_data: Path) -> None:
    words = WordClass.from_frequencies({"marchand": 2.0, "rentier": 1.0, "rue": 5.0, "lille": 1.0})
    corpus = build_corpus(tiny_data, words=words)
    # "marchand" and "Lille" are written once: their line is repeated with the class token; "rentier" and
    # "rue" are written more often and keep their own statistics only; names are never common words.
    assert "Dupont ( Jean Pierre ) ‹MOT› de vin demt à Paris , rue de ‹MOT› , 00" in corpus.lines
    assert not any("‹MOT›" in line for line in corpus.lines if "rentier" in line or "Martin ( Louis" in line)
    assert corpus.stats["words"] == 4


def test_build_lm_with_real_kenlm_tools(tiny_lm: LMInfo) -> None:
    files = tiny_lm.files
    for path in (files.arpa, files.binary, files.unigrams, files.lexicon, files.words, files.info):
        assert path.exists() and path.stat().st_size > 0, path
    assert tiny_lm.order == 3
    assert int(tiny_lm.ngrams["3"]) > 0
    model = kenlm.Model(str(files.binary))
    assert model.order == 3
    # Seen n-grams score above unseen ones.
    assert model.score("à Paris , rue", bos=False, eos=False) > model.score("rue , Paris à", bos=False, eos=False)
    for cls in (SURNAME_CLASS, FIRSTNAME_CLASS, WORD_CLASS):
        assert cls in model
    unigrams = files.unigrams.read_text(encoding="utf-8").split()
    assert "Paris" in unigrams and "," in unigrams and SURNAME_CLASS not in unigrams and WORD_CLASS not in unigrams
    assert "secretvalidationword" not in unigrams
    assert read_lexicon(files.lexicon).classes_of("GIMONET") == (SURNAME_CLASS,)
    assert "responsabilité" in WordClass.read(files.words)
    info = json.loads(files.info.read_text(encoding="utf-8"))
    assert info["version"] == tiny_lm.version and info["format"] == "registre-lm/1"


def test_rebuild_keeps_tuned_decoder_settings(tiny_data: Path, tmp_path: Path) -> None:
    require_kenlm_tools()
    out = tmp_path / "names"
    first = build_lm(tiny_data, out, order=2, prune=(0,))
    info = json.loads(first.files.info.read_text(encoding="utf-8"))
    info["decoder"] = {"alpha": 0.7, "beta": 2.0}
    first.files.info.write_text(json.dumps(info), encoding="utf-8")
    second = build_lm(tiny_data, out, order=2, prune=(0,))
    assert second.version == first.version  # same inputs, same files
    assert json.loads(second.files.info.read_text(encoding="utf-8"))["decoder"] == {"alpha": 0.7, "beta": 2.0}


def test_missing_tools_give_a_set_up_hint(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(KenLMToolsMissing, match="build_kenlm.sh"):
        find_tool("lmplz")
    with pytest.raises(KenLMToolsMissing):
        build_lm(tiny_data, tmp_path / "names")


def test_lm_prefix_accepts_any_of_its_files() -> None:
    assert lm_prefix("models/names.binary") == Path("models/names")
    assert lm_prefix("models/names.lexicon.txt.gz") == Path("models/names")
    assert lm_prefix("models/names") == Path("models/names")
