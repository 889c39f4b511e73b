"""The LM's training text: transcriptions of the training pages, tokenized, plus name-class lines.

Only pages whose split is ``train`` (``ocr/splits.toml``) are read, so the
validation pages and held-out hands the decoder is tuned and measured on never
leak into the model.

Besides every training line as written, each line holding a rare name (seen at
most ``rare_max`` times in the training text) is repeated with those names
replaced by their class token. That teaches the model where *unseen* names go —
line starts, after ``(``, ``Mr``, ``Made``, ``de`` — from the names a clerk
wrote once, much as an unseen name will turn up on a new page.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lm.names import FIRSTNAME_CLASS, SURNAME_CLASS, WORD_CLASS, NameLexicon, read_names
from lm.tokens import line_tokens, split_word
from lm.words import WordClass
from ocr.charset import label_text
from ocr.corpus import DEFAULT_DATA, corpus_pages
from ocr.groundtruth import read_ground_truth


def training_lines(data_dir: Path = DEFAULT_DATA) -> list[str]:
    """Return the labels (``ocr.charset.label_text``) of every training page's lines under ``data_dir``, in key order.

    Every corpus of the data folder counts: the registers' names and formulas,
    and the other hands' French.
    """
    return [t for lines in training_volume_lines(data_dir).values() for t in lines]


def training_volume_lines(data_dir: Path = DEFAULT_DATA) -> dict[str, list[str]]:
    """Return ``{volume folder: training-page labels}`` (for per-register hotwords), volumes in key order."""
    out: dict[str, list[str]] = {}
    for page in corpus_pages(Path(data_dir)):
        if page.split != "train":
            continue
        labels = (label_text(line.text) for line in read_ground_truth(page.xml).lines if line.text)
        out.setdefault(page.volume, []).extend(t for t in labels if t)
    return out


def word_cores(lines: Iterable[str]) -> list[str]:
    """Return the core (punctuation stripped) of every word of ``lines``."""
    return [core for text in lines for word in text.split() if (core := split_word(word)[1])]


def class_of_name(core: str, lexicon: NameLexicon) -> str | None:
    """Return the class token a name stands for in the corpus: first name when it can be one, else surname."""
    classes = lexicon.classes_of(core)
    if not classes:
        return None
    # First names are the shorter, surer list ("Louis", "Marie" are surnames too,
    # but in a register they are mostly first names).
    return FIRSTNAME_CLASS if FIRSTNAME_CLASS in classes else SURNAME_CLASS


def class_lines(
    lines: Sequence[str], lexicon: NameLexicon, rare_max: int = 1, words: WordClass | None = None
) -> list[str]:
    """Return tokenized copies of the lines holding rare names or rare common words, replaced by their class token.

    A capitalized rare word that is a name stands for its name class; any other
    rare word of ``words`` (``lm.words``) for the common-word class.
    """
    counts = Counter(word_cores(lines))
    out: list[str] = []
    for text in lines:
        tokens: list[str] = []
        replaced = False
        for word in text.split():
            lead, core, trail = split_word(word)
            cls = None
            if core and counts[core] <= rare_max:
                if core[:1].isupper():
                    cls = class_of_name(core, lexicon)
                if cls is None and words is not None and core in words:
                    cls = WORD_CLASS
            if cls is None:
                tokens.extend(line_tokens(word))
            else:
                tokens.extend([*lead, cls, *trail])
                replaced = True
        if replaced:
            out.append(" ".join(tokens))
    return out


@dataclass
class Corpus:
    """Tokenized LM training lines and the lexicon of name classes built with them."""

    lines: list[str]
    lexicon: NameLexicon
    words: WordClass = field(default_factory=lambda: WordClass({}))
    stats: dict[str, int] = field(default_factory=dict)

    def vocabulary(self) -> list[str]:
        """Return the sorted distinct tokens of the lines (class tokens included)."""
        return sorted({tok for line in self.lines for tok in line.split()})


def build_corpus(
    data_dir: Path = DEFAULT_DATA,
    names: bool = True,
    rare_max: int = 1,
    accent_rules: bool = True,
    words: WordClass | None = None,
) -> Corpus:
    """Return the LM corpus of ``data_dir``: tokenized training lines, plus class lines, lexicon and word class.

    ``words`` (``lm.words.WordClass``) adds the common-word class; class lines
    are written only when ``names`` is on.
    """
    data_dir = Path(data_dir)
    texts = training_lines(data_dir)
    lines = [" ".join(line_tokens(t)) for t in texts]
    lexicon = NameLexicon({})
    words = words or WordClass({})
    extra: list[str] = []
    if names:
        names_dir = data_dir / "names"
        lexicon = NameLexicon.build(
            read_names(names_dir / "surnames.txt"),
            read_names(names_dir / "firstnames.txt"),
            accent_words=word_cores(texts),
            rules=accent_rules,
        )
        words = words.without_names(lambda w: FIRSTNAME_CLASS in lexicon.classes_of(w.upper()))
        extra = class_lines(texts, lexicon, rare_max, words)
    stats = {"training_lines": len(texts), "class_lines": len(extra), "name_keys": len(lexicon), "words": len(words)}
    return Corpus([ln for ln in lines + extra if ln], lexicon, words, stats)
