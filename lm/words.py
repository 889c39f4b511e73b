"""Common French words the training pages never wrote, as one more word class of the LM.

The KenLM model knows the ~18,000 words of the training transcriptions. A new
register, will or letter brings words of ordinary French that none of them
wrote (``Prévoyance``, ``limitée``, ``responsabilité``): on the held-out
registers 6 % of the words are such words, on the held-out letters and
volunteers' pages 14–19 %. Scored as unknown words (``unk_score_offset``) they
lose to any known word a letter or two away.

Like the name lists (``lm.names``), the word list is a class of the LM rather
than words of it: the class token ``‹MOT›`` stands in the training text for the
common words it holds once (its contexts are learned from them), and a word of
the class scores ``P(‹MOT› | context) · P(word | ‹MOT›)``, the second factor
from the word's frequency in general French (wordfreq's ``large`` French list,
built from subtitles, Wikipedia, news and books; Speer et al.). Words keep
three case forms: as listed (lower case), capitalized, and upper case.
"""

from __future__ import annotations

import bisect
import gzip
import math
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path

#: Words taken from wordfreq's French list, most frequent first (its 100,000th is ``inhale``).
DEFAULT_SIZE = 100_000
#: wordfreq lower-cases proper names too (``lucienne``, ``giacomo``): a first name of the lexicon stays out of the
#: class (it is read through its name class, capitalized) unless it is among this many most frequent words
#: (``juste``, ``santé``, ``justice`` are first names as well as words).
NAME_KEEP_TOP = 5_000


def word_key(word: str) -> str | None:
    """Return the listed (lower-case) form ``word`` is an accepted case form of, or None.

    Accepted: the word as listed, capitalized (``Limitée``) and upper case (``LIMITÉE``).
    """
    if not word:
        return None
    if word.islower():
        return word
    rest = word[1:]
    if word[0].isupper() and (not rest or rest.islower() or word.isupper()):
        return word.lower()
    return None


def usable(word: str, alphabet: Collection[str] | None = None) -> bool:
    """Return whether a listed word can be a register word: letters, inner hyphens or apostrophes, in ``alphabet``."""
    if len(word) < 2 or not word.islower() or not word[0].isalpha() or not word[-1].isalpha():
        return False
    if not all(c.isalpha() or c in "-'" for c in word):
        return False
    return alphabet is None or all(c in alphabet for c in word)


class WordClass:
    """Lower-case words with ``log10 P(word | ‹MOT›)``; looks words and prefixes up in their three case forms."""

    def __init__(self, logp: Mapping[str, float]) -> None:
        self.logp = dict(logp)
        self._sorted = sorted(self.logp)

    def __len__(self) -> int:
        """Return the number of listed words."""
        return len(self.logp)

    def __contains__(self, word: object) -> bool:
        """Return whether ``word`` is a listed word in an accepted case form."""
        return isinstance(word, str) and self.word_logp(word) is not None

    def word_logp(self, word: str) -> float | None:
        """Return ``log10 P(word | ‹MOT›)`` of a word in an accepted case form, None when it is not in the class."""
        key = word_key(word)
        return self.logp.get(key) if key else None

    def has_prefix(self, partial: str) -> bool:
        """Return whether some listed word starts with ``partial`` (in an accepted case form)."""
        if not partial:
            return True
        key = word_key(partial)
        if key is None:
            return False
        i = bisect.bisect_left(self._sorted, key)
        return i < len(self._sorted) and self._sorted[i].startswith(key)

    def spellings(self) -> list[str]:
        """Return every word as listed and capitalized (the forms lexicon rescoring proposes)."""
        return [form for w in self._sorted for form in (w, w[0].upper() + w[1:])]

    @classmethod
    def from_frequencies(cls, frequencies: Mapping[str, float]) -> WordClass:
        """Return the class of ``{word: frequency}``, each word's probability its share of the total."""
        total = sum(frequencies.values())
        if total <= 0:
            return cls({})
        return cls({w: math.log10(f / total) for w, f in frequencies.items() if f > 0})

    @classmethod
    def french(cls, size: int = DEFAULT_SIZE, alphabet: Iterable[str] | None = None) -> WordClass:
        """Return the ``size`` most frequent usable words of wordfreq's large French list."""
        import wordfreq

        freqs = wordfreq.get_frequency_dict("fr", wordlist="large")
        alphabet = set(alphabet) if alphabet is not None else None
        chosen: dict[str, float] = {}
        for word, freq in sorted(freqs.items(), key=lambda item: (-item[1], item[0])):
            if len(chosen) >= size:
                break
            if usable(word, alphabet):
                chosen[word] = freq
        return cls.from_frequencies(chosen)

    def most_frequent(self, n: int) -> set[str]:
        """Return the ``n`` listed words of highest probability."""
        return set(sorted(self.logp, key=lambda w: (-self.logp[w], w))[:n])

    def without_names(self, is_first_name: Callable[[str], bool], keep_top: int = NAME_KEEP_TOP) -> WordClass:
        """Return the class without the first names among its words, but for the ``keep_top`` most frequent."""
        keep = self.most_frequent(keep_top)
        return self.excluding(w for w in self.logp if w not in keep and is_first_name(w))

    def excluding(self, drop: Iterable[str]) -> WordClass:
        """Return the class without the listed words ``drop``, the others' probabilities renormalized."""
        drop = set(drop)
        return WordClass.from_frequencies({w: 10**p for w, p in self.logp.items() if w not in drop})

    def write(self, path: Path) -> None:
        """Write ``word<TAB>log10 p`` lines, sorted, gzip-compressed and byte-identical across builds."""
        text = "".join(f"{w}\t{self.logp[w]:.4f}\n" for w in self._sorted).encode("utf-8")
        with Path(path).open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            gz.write(text)

    @classmethod
    def read(cls, path: Path) -> WordClass:
        """Return the class written by :meth:`write`."""
        logp: dict[str, float] = {}
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                word, _, value = line.rstrip("\n").partition("\t")
                if word and value:
                    logp[word] = float(value)
        return cls(logp)
