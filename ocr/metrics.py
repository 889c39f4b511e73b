"""CER and WER summed over a set of lines, after Unicode NFC normalization (DESIGN.md)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein


@dataclass
class ErrorRates:
    """Edit counts and reference sizes over a set; rates are errors / reference units."""

    char_errors: int = 0
    chars: int = 0
    word_errors: int = 0
    words: int = 0
    lines: int = 0

    @property
    def cer(self) -> float:
        """Return character edits divided by reference characters (0 when there are none)."""
        return self.char_errors / self.chars if self.chars else 0.0

    @property
    def wer(self) -> float:
        """Return word edits divided by reference words (0 when there are none)."""
        return self.word_errors / self.words if self.words else 0.0

    def add(self, reference: str, hypothesis: str) -> None:
        """Count one line pair into the totals."""
        ref = unicodedata.normalize("NFC", reference)
        hyp = unicodedata.normalize("NFC", hypothesis)
        self.char_errors += Levenshtein.distance(ref, hyp)
        self.chars += len(ref)
        rw, hw = ref.split(), hyp.split()
        self.word_errors += Levenshtein.distance(rw, hw)
        self.words += len(rw)
        self.lines += 1

    def __iadd__(self, other: ErrorRates) -> ErrorRates:
        self.char_errors += other.char_errors
        self.chars += other.chars
        self.word_errors += other.word_errors
        self.words += other.words
        self.lines += other.lines
        return self


def error_rates(pairs: Iterable[tuple[str, str]]) -> ErrorRates:
    """Return summed error counts for ``(reference, hypothesis)`` pairs."""
    rates = ErrorRates()
    for ref, hyp in pairs:
        rates.add(ref, hyp)
    return rates


def cer(references: Iterable[str], hypotheses: Iterable[str]) -> float:
    """Return the character error rate over the set (edits summed / reference chars summed)."""
    return error_rates(zip(references, hypotheses, strict=True)).cer


def wer(references: Iterable[str], hypotheses: Iterable[str]) -> float:
    """Return the word error rate over the set (edits summed / reference words summed)."""
    return error_rates(zip(references, hypotheses, strict=True)).wer
