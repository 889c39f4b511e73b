"""How the names LM splits a register word into LM tokens.

The decoder's words are whatever the recognizer writes between spaces, so
punctuation sticks to them: ``Paris,``, ``(Fernand)``, ``Blanc.`` A word-level
model over such words would need every name in every punctuated form (in the
training pages a name is followed by ``,`` ``)`` or ``.`` in a third of its
occurrences). Instead leading and trailing punctuation become tokens of their
own, and digits are folded to ``0`` so that amounts, dates and folio numbers
share statistics by shape (``1850`` and ``1929`` are both ``0000``): the LM
cannot know which number a clerk wrote, only what numbers look like.

The same function tokenizes the corpus (``lm.corpus``) and the decoder's
hypotheses (``lm.decoder``), so both sides always agree.
"""

from __future__ import annotations

import re
import unicodedata

#: Characters split off the start of a word as their own tokens.
LEADING_PUNCT = "([«\"'’&*"
#: Characters split off the end of a word as their own tokens.
TRAILING_PUNCT = ")].,;:!?»\"'’*-–="

_DIGITS = re.compile(r"\d")
#: KenLM reserves these words; a literal one in a transcription would abort lmplz.
_RESERVED = {"<s>", "</s>", "<unk>"}


def fold_digits(token: str) -> str:
    """Return ``token`` with every decimal digit replaced by ``0``."""
    return _DIGITS.sub("0", token)


def split_word(word: str) -> tuple[str, str, str]:
    """Return ``(leading punctuation, core, trailing punctuation)`` of one space-free word."""
    start, end = 0, len(word)
    while start < end and word[start] in LEADING_PUNCT:
        start += 1
    while end > start and word[end - 1] in TRAILING_PUNCT:
        end -= 1
    return word[:start], word[start:end], word[end:]


def lm_tokens(word: str) -> list[str]:
    """Return the LM tokens of one space-free word: each leading punctuation mark, the core, each trailing one.

    The core has its digits folded to ``0``; a word made only of punctuation
    (``&``, ``"``, ``--``) stays one token.
    """
    lead, core, trail = split_word(word)
    if not core:
        return [_safe(word)] if word else []
    return [*lead, _safe(fold_digits(core)), *trail]


# Transcribers of LECTAUREP glue a particle to the next word where the clerk left no
# gap ("deMr", "auHavre", "delaRéunion", "l'homologation"); a glued form the model
# never saw is scored as the particle then the word.
_PARTICLES = "dela del' des de du d' la le les l' au aux à et en par pour sur".split()
_GLUED_PARTICLE = re.compile(rf"^({'|'.join(_PARTICLES)})(?=[A-ZÀ-ÖØ-Þ]|(?<=')\w)")

# Lower-case glue ("delouer", "unemaison") is tried only for an unknown token
# (the LM checks that every part is known) and with a rest of three letters or more;
# an elided particle before a lower-case letter is already the pattern above.
_LOWER_GLUE_PARTICLES = [p for p in [*_PARTICLES, "une", "un"] if not p.endswith("'")]
_GLUED_LOWER = re.compile(rf"^({'|'.join(_LOWER_GLUE_PARTICLES)})(?=[a-zà-öø-ÿ])")


def fallback_tokens(token: str) -> list[str] | None:
    """Return another reading of an LM token the model does not know, or None.

    Superscript marks are dropped (``M^r`` → ``Mr``) and a glued particle is
    split off (``deSoissons`` → ``de Soissons``, ``delouer`` → ``de louer``).
    """
    if "^" in token and token.replace("^", ""):
        return [token.replace("^", "")]
    m = _GLUED_PARTICLE.match(token)
    if m and len(token) > m.end():
        return [m.group(1), token[m.end() :]]
    m = _GLUED_LOWER.match(token)
    if m and len(token) - m.end() >= 3:
        return [m.group(1), token[m.end() :]]
    return None


def line_tokens(text: str) -> list[str]:
    """Return the LM tokens of a line of text (NFC, split on whitespace)."""
    text = unicodedata.normalize("NFC", text)
    return [tok for word in text.split() for tok in lm_tokens(word)]


def _safe(token: str) -> str:
    # "<s>" written in a register would be the sentence marker to KenLM: bracket it differently.
    return token.replace("<", "‹").replace(">", "›") if token in _RESERVED else token
