"""French surnames and first names in the forms registers write them, as two word classes of the LM.

INSEE publishes surnames in upper case with accents stripped and first names
in upper case with some accents. Registers write ``Dupont`` or ``DUPONT``, and
``Thérèse``, ``Lefèvre``. The lexicon stores one upper-case key per spelling
(accented variants are extra keys) and accepts two case forms of each: the key
itself and its capitalized display form (``JEAN-PIERRE`` → ``Jean-Pierre``).

Names are not words of the KenLM model: 255,000 of them would make the binary
tens of megabytes, and a name read once carries no statistics of its own. Each
is a member of the class ``‹NOM›`` (surname) or ``‹PRENOM›`` (first name),
whose contexts the model learns from the training pages; a name scores
``P(class | context) / |class|`` (class-based n-gram, Brown et al. 1992).
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

#: KenLM tokens standing for any member of a class (never a register word: the guillemets are single).
SURNAME_CLASS = "‹NOM›"
FIRSTNAME_CLASS = "‹PRENOM›"
#: The class of common French words (``lm.words``), beside the two name classes.
WORD_CLASS = "‹MOT›"
CLASS_TOKENS = (SURNAME_CLASS, FIRSTNAME_CLASS, WORD_CLASS)

# INSEE's first-name file was converted from cp1252 with Ÿ (0x9F) left as a C1 control.
_MOJIBAKE = {"\x9f": "Ÿ"}

# Accented endings of French surnames that INSEE's accent-free list loses. Each
# adds a variant (never replaces the plain key): ``BARRIERE`` → ``BARRIÈRE``,
# ``LEFEVRE`` → ``LEFÈVRE``, ``DESIREE`` → ``DESIRÉE``. A bare final E is left
# alone: Dupré, but Lemaître and Laporte.
ACCENT_SUFFIX_RULES: tuple[tuple[str, str], ...] = (
    ("IERE", "IÈRE"),
    ("ERE", "ÈRE"),
    ("EVRE", "ÈVRE"),
    ("EGE", "ÈGE"),
    ("ENE", "ÈNE"),
    ("ECHE", "ÈCHE"),
    ("EE", "ÉE"),
)

#: Particles of multi-word surnames (``DE LA ROCHETTE``); the decoder reads words, so
#: such a name enters the lexicon as its other parts (``ROCHETTE``) only.
PARTICLES = frozenset(
    "A AL D DA DAL DE DEL DELLA DELLE DEN DER DES DI DO DOS DU EL L LA LE LES LO "
    "MAC MC O SAN SANTA ST STE TEN TER VAN VANDE VANDEN VON Y".split()
)

_WORD_START = re.compile(r"(^|[\s\-'’])(\w)")


def strip_accents(text: str) -> str:
    """Return ``text`` without combining marks (``Thérèse`` → ``Therese``), NFC."""
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def display_case(key: str) -> str:
    """Return the capitalized form of an name: ``JEAN-PIERRE`` → ``Jean-Pierre``, ``D'ALMEIDA`` → ``D'Almeida``."""
    return _WORD_START.sub(lambda m: m.group(1) + m.group(2).upper(), key.lower())


def clean_name(line: str) -> str:
    """Return a name-list entry in NFC upper case with INSEE's encoding slips repaired ('' for a blank line)."""
    for bad, good in _MOJIBAKE.items():
        line = line.replace(bad, good)
    return unicodedata.normalize("NFC", line.strip()).upper()


def read_names(path: Path) -> list[str]:
    """Return the cleaned entries of a one-name-per-line list, in file order, without blanks."""
    with Path(path).open(encoding="utf-8") as f:
        return [name for name in (clean_name(line) for line in f) if name]


def learn_accents(words: Iterable[str], min_count: int = 1) -> dict[str, str]:
    """Return ``{accent-free upper key: most frequent accented upper spelling}`` from words seen with accents."""
    seen: dict[str, Counter[str]] = {}
    for word in words:
        upper = unicodedata.normalize("NFC", word).upper()
        key = strip_accents(upper)
        if key != upper:
            seen.setdefault(key, Counter())[upper] += 1
    return {key: forms.most_common(1)[0][0] for key, forms in seen.items() if forms.most_common(1)[0][1] >= min_count}


def suffix_variants(key: str) -> list[str]:
    """Return the accented variant of an accent-free surname by the first matching :data:`ACCENT_SUFFIX_RULES`."""
    for plain, accented in ACCENT_SUFFIX_RULES:
        # Only on words long enough to be more than the ending ("LE", "DE" stay).
        if key.endswith(plain) and len(key) > len(plain) + 2 and strip_accents(key) == key:
            return [key[: -len(plain)] + accented]
    return []


def name_parts(name: str) -> list[str]:
    """Return the space-separated parts of a name that enter the lexicon (particles dropped)."""
    parts = name.split()
    if len(parts) == 1:
        return parts
    return [p for p in parts if p not in PARTICLES]


def name_variants(key: str, accents: dict[str, str], rules: bool) -> list[str]:
    """Return the upper-case spellings of one name: the key, its learned accented form, its rule-made accented form."""
    out = [key]
    plain = strip_accents(key)
    learned = accents.get(plain)
    if learned and learned not in out:
        out.append(learned)
    if rules:
        for variant in suffix_variants(plain):
            if variant not in out:
                out.append(variant)
    return out


@dataclass
class NameLexicon:
    """Upper-case name keys with their classes; looks names and prefixes up in both accepted case forms."""

    classes: dict[str, str] = field(default_factory=dict)  # key -> "N", "P" or "NP"

    def __post_init__(self) -> None:
        self._sorted = sorted(self.classes)
        self.sizes = {
            SURNAME_CLASS: sum("N" in c for c in self.classes.values()),
            FIRSTNAME_CLASS: sum("P" in c for c in self.classes.values()),
        }

    def __len__(self) -> int:
        """Return the number of upper-case keys."""
        return len(self.classes)

    @staticmethod
    def _key(word: str) -> str | None:
        """Return the key ``word`` is an accepted form of (upper or capitalized), or None."""
        upper = word.upper()
        if word == upper or word == display_case(upper):
            return upper
        return None

    def classes_of(self, word: str) -> tuple[str, ...]:
        """Return the class tokens of ``word`` (empty when it is not a name in an accepted case form)."""
        key = self._key(word)
        code = self.classes.get(key, "") if key else ""
        return tuple(tok for letter, tok in (("N", SURNAME_CLASS), ("P", FIRSTNAME_CLASS)) if letter in code)

    def has_prefix(self, partial: str) -> bool:
        """Return whether some name starts with ``partial`` in an accepted case form."""
        if not partial:
            return True
        key = self._key(partial)
        if key is None:
            return False
        i = bisect.bisect_left(self._sorted, key)
        return i < len(self._sorted) and self._sorted[i].startswith(key)

    @classmethod
    def build(
        cls,
        surnames: Iterable[str],
        firstnames: Iterable[str],
        accent_words: Iterable[str] = (),
        rules: bool = True,
    ) -> NameLexicon:
        """Return the lexicon of both lists, with accented variants learned from ``accent_words`` and suffix rules."""
        firstnames = list(firstnames)
        # Accented first names (ANDRÉ, HÉLÈNE) teach the accents of the same names used as surnames.
        accents = learn_accents([*accent_words, *firstnames])
        classes: dict[str, str] = {}
        for letter, names, use_rules in (("N", surnames, rules), ("P", firstnames, False)):
            for part in (p for name in names for p in name_parts(name)):
                for variant in name_variants(part, accents, use_rules):
                    code = classes.get(variant, "")
                    if letter not in code:
                        classes[variant] = code + letter
        return cls({k: "".join(sorted(v)) for k, v in classes.items()})

    def write(self, path: Path) -> None:
        """Write the lexicon as sorted ``KEY<TAB>CLASSES`` lines (UTF-8)."""
        with Path(path).open("w", encoding="utf-8") as f:
            for key in self._sorted:
                f.write(f"{key}\t{self.classes[key]}\n")

    @classmethod
    def read(cls, path: Path) -> NameLexicon:
        """Return the lexicon written by :meth:`write`."""
        classes: dict[str, str] = {}
        with Path(path).open(encoding="utf-8") as f:
            for line in f:
                key, _, code = line.rstrip("\n").partition("\t")
                if key and code:
                    classes[key] = code
        return cls(classes)
