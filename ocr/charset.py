"""The recognizer's alphabet: CTC blank at index 0, then one label per character."""

from __future__ import annotations

import json
import re
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

BLANK = "<blank>"
#: Stand-in for characters outside the charset when encoding a label.
UNKNOWN = "\ufffd"

# Everything a French register may use, beyond what the LECTAUREP ground truth
# shows, so one model can grow into other registers without a new output layer.
_FRENCH_LOWER = "àâæçéèêëîïôöœùûüÿñ"
FRENCH_BASE = (
    " "
    + string.ascii_letters
    + string.digits
    + _FRENCH_LOWER
    + _FRENCH_LOWER.upper().replace("Ÿ", "")
    + "Ÿ"
    + "'’.,;:!?-–()[]/&\"«»%+=*°^¥€£$§|"
)
#: Letters of foreign names the other corpora write (copiste-dun-jour's Wikipedia pages): added, not mapped,
#: since a register may name a Spaniard or a German too.
FOREIGN_LETTERS = "áíóúäÁÍÓÚÄ"

#: How the corpora's transcription symbols become labels. One apostrophe, one pair of double quotes and one
#: dash each: a pen draws them alike, and LECTAUREP writes ``'`` and ``–``; a no-break space is a space.
LABEL_MAP = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "—": "–", "─": "–", "\xa0": " "})
#: Struck-out words as copiste-dun-jour and cremma-mss-19 mark them: ``>mais<``, and ``><`` for a scribble.
_STRUCK = re.compile(r">([^<>]*)<")
#: Characters left after the rules above that mark a line as markup, not handwriting (copiste's formulas).
_MARKUP = set("<>{}")


def label_text(text: str) -> str | None:
    """Return the label a recognizer learns for a transcription, or None for a line of markup.

    NFC, the :data:`LABEL_MAP` symbols mapped, struck-out words kept as the
    letters they are (the ink is there; ``><`` scribbles dropped), spaces
    collapsed. Applied to every corpus's ground truth for training and
    evaluation alike.
    """
    text = unicodedata.normalize("NFC", text).translate(LABEL_MAP)
    text = _STRUCK.sub(r"\1", text)
    text = re.sub(r" {2,}", " ", text).strip()
    if _MARKUP & set(text):
        return None
    return text


@dataclass
class Charset:
    """Ordered characters; label ``i + 1`` is ``chars[i]`` and 0 is the CTC blank."""

    chars: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("charset has duplicate characters")
        self._index = {c: i + 1 for i, c in enumerate(self.chars)}

    def extended(self, chars: Iterable[str]) -> Charset:
        """Return this charset with ``chars`` it lacks appended (old labels keep their ids)."""
        return Charset(self.chars + [c for c in dict.fromkeys(chars) if c not in self._index])

    @classmethod
    def build(cls, texts: Iterable[str], base: str = FRENCH_BASE + FOREIGN_LETTERS) -> Charset:
        """Return a charset of ``base`` plus every NFC character in ``texts`` (sorted after base)."""
        seen = dict.fromkeys(base)
        extra = sorted({c for t in texts for c in unicodedata.normalize("NFC", t)} - set(seen))
        extra = [c for c in extra if c.isprintable() and c not in "\t\n\r"]
        return cls(list(seen) + extra)

    @property
    def labels(self) -> list[str]:
        """Return the CTC output labels: blank first, then the characters."""
        return [BLANK, *self.chars]

    def __len__(self) -> int:
        """Return the number of CTC classes, blank included."""
        return len(self.chars) + 1

    def encode(self, text: str) -> list[int]:
        """Return the label ids of ``text``; characters outside the charset are dropped."""
        return [self._index[c] for c in unicodedata.normalize("NFC", text) if c in self._index]

    def unknown(self, text: str) -> set[str]:
        """Return the characters of ``text`` the charset cannot encode."""
        return {c for c in unicodedata.normalize("NFC", text) if c not in self._index}

    def decode(self, ids: Iterable[int]) -> str:
        """Return the text of label ids (no CTC collapsing; blanks skipped)."""
        return "".join(self.chars[i - 1] for i in ids if i > 0)

    def to_json(self) -> str:
        """Return the charset as a JSON string."""
        return json.dumps(self.chars, ensure_ascii=False)

    @classmethod
    def from_json(cls, data: str) -> Charset:
        """Return the charset stored by :meth:`to_json`."""
        return cls(json.loads(data))
