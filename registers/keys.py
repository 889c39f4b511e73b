"""Search keys of a name: lower case without accents, and a French phonetic key.

The phonetic key is abydos' FONEM (Bouchard & Pouyez, 1981: a phonetic
algorithm written for French surnames, in the Saguenay parish registers), with
doubled letters then collapsed (``MESSAJER`` and ``MESAJER`` both give
``MESAJER``), which FONEM leaves apart. abydos' other French coding
(Henry-Early) keeps three letters only and merges far too much
(``Guyot``/``Gouault``).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_NOT_LETTER = re.compile(r"[^a-z]+")
_DOUBLE = re.compile(r"(.)\1+")


def fold(text: str) -> str:
    """Return ``text`` in lower case without accents or marks, NFC (``Lefèvre`` → ``lefevre``)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def name_key(text: str) -> str:
    """Return the normalized key of a name: folded, letters only (``d'Ardilouze`` → ``dardilouze``)."""
    return _NOT_LETTER.sub("", fold(text))


@lru_cache(maxsize=200_000)
def _fonem(key: str) -> str:
    from abydos.phonetic import FONEM

    return FONEM().encode(key)


def phonetic_key(text: str) -> str:
    """Return the French phonetic key of a name (abydos FONEM, doubled letters collapsed); '' for no letters."""
    key = name_key(text)
    if not key:
        return ""
    code = _fonem(key)
    return _DOUBLE.sub(r"\1", _NOT_LETTER.sub("", code.lower()))
