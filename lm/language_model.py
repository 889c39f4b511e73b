"""The names LM as pyctcdecode sees it: KenLM over register tokens, with name classes and punctuation split.

pyctcdecode's own ``LanguageModel`` scores each space-separated word as one
KenLM word and checks partial words against a character trie of all unigrams.
For registers that fails twice: ``Dupont,`` is not ``Dupont`` (punctuation
sticks to words), and a trie of 250,000 names costs ~110 MB of Python objects
per process and seconds to build. This class keeps pyctcdecode's scoring
conventions (``alpha``, ``beta``, ``unk_score_offset`` with the same units and
the same partial-word penalty) and changes what a word is:

* a word is scored as its LM tokens (``lm.tokens.lm_tokens``): leading and
  trailing punctuation as tokens of their own, digits folded to ``0``;
* a token outside the KenLM vocabulary that is a name in the lexicon scores as
  its class token plus ``log10(1 / class size)``;
* a token outside both that is a common French word (``lm.words``) scores as
  the class token ``‹MOT›`` plus the word's log10 share of the class;
* a token still unknown is read another way when that way is known
  (``M^r`` as ``Mr``, ``deSoissons`` as ``de Soissons``: ``lm.tokens.fallback_tokens``);
* partial words are checked by binary search in sorted word lists.

It implements pyctcdecode's public ``AbstractLanguageModel`` interface.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

import kenlm
from pyctcdecode.constants import AVG_TOKEN_LEN, LOG_BASE_CHANGE_FACTOR
from pyctcdecode.language_model import AbstractLanguageModel

from lm.names import CLASS_TOKENS, WORD_CLASS, NameLexicon
from lm.tokens import fallback_tokens, fold_digits, lm_tokens, split_word
from lm.words import WordClass


class RegisterLanguageModel(AbstractLanguageModel):
    """Shallow-fusion scorer over a KenLM model of register tokens and a lexicon of name classes."""

    def __init__(
        self,
        kenlm_model: kenlm.Model,
        vocabulary: Iterable[str],
        lexicon: NameLexicon | None = None,
        alpha: float = 0.5,
        beta: float = 1.5,
        unk_score_offset: float = -10.0,
        score_boundary: bool = True,
        name_score_offset: float = 0.0,
        words: WordClass | None = None,
        word_score_offset: float = 0.0,
    ) -> None:
        self._kenlm = kenlm_model
        self._vocab = frozenset(w for w in vocabulary if w not in CLASS_TOKENS and w in kenlm_model)
        self._sorted_vocab = sorted(self._vocab)
        self._lexicon = lexicon or NameLexicon({})
        # log10 P(name | class): uniform over the class's keys.
        self._class_logp = {
            cls: -math.log10(size) for cls, size in self._lexicon.sizes.items() if size and cls in kenlm_model
        }
        # A model built without the class token cannot score its words: leave the class out.
        self._words = words if words is not None and len(words) and WORD_CLASS in kenlm_model else WordClass({})
        self.alpha = alpha
        self.beta = beta
        self.unk_score_offset = unk_score_offset
        self.score_boundary = score_boundary
        self.name_score_offset = name_score_offset
        self.word_score_offset = word_score_offset

    @property
    def order(self) -> int:
        """Return the n-gram order of the KenLM model."""
        return int(self._kenlm.order)

    def get_start_state(self) -> kenlm.State:
        """Return the KenLM state at the start of a line."""
        state = kenlm.State()
        if self.score_boundary:
            self._kenlm.BeginSentenceWrite(state)
        else:
            self._kenlm.NullContextWrite(state)
        return state

    def reset_params(self, **params) -> None:  # type: ignore[override]
        """Set ``alpha``, ``beta``, ``score_boundary`` or an offset (``unk``, ``name``, ``word_score_offset``)."""
        for name in ("alpha", "beta", "unk_score_offset", "name_score_offset", "word_score_offset", "score_boundary"):
            if params.get(name) is not None:
                setattr(self, name, params[name])

    def is_known(self, token: str) -> bool:
        """Return whether a (folded) LM token is a model word, a name of the lexicon or a common word."""
        return token in self._vocab or bool(self._lexicon.classes_of(token)) or token in self._words

    def _known_reading(self, token: str) -> list[str] | None:
        """Return the tokens a (folded) token is scored as: itself, its fallback reading, or None when unknown."""
        if self.is_known(token):
            return [token]
        alt = fallback_tokens(token)
        if alt and all(self.is_known(t) for t in alt):
            return alt
        return None

    def _has_prefix(self, core: str) -> bool:
        folded = fold_digits(core)
        i = bisect.bisect_left(self._sorted_vocab, folded)
        if i < len(self._sorted_vocab) and self._sorted_vocab[i].startswith(folded):
            return True
        if self._lexicon.has_prefix(core) or self._words.has_prefix(core):
            return True
        # A partial word that a fallback reading could still make known.
        alt = fallback_tokens(core)
        if alt:
            *head, last = alt
            return all(self.is_known(t) for t in head) and self._has_prefix(last)
        return False

    def score_partial_token(self, partial_token: str) -> float:
        """Return the penalty (natural log, unscaled, as pyctcdecode's) of a partial word no known word starts with."""
        _, core, trail = split_word(partial_token)
        if not core:
            known = True  # punctuation only, so far
        elif trail:
            # Trailing punctuation closes the core: it must be a whole known word.
            known = self._known_reading(fold_digits(core)) is not None or self.is_known(core)
        else:
            known = self._has_prefix(core)
        if known:
            return 0.0
        penalty = self.unk_score_offset
        if len(partial_token) > AVG_TOKEN_LEN:
            penalty *= len(partial_token) / AVG_TOKEN_LEN
        return penalty

    def token_logp(self, state: kenlm.State, token: str) -> tuple[float, kenlm.State]:
        """Return ``(log10 probability, next state)`` of one LM token: names and common words through their class,
        unknowns offset."""
        end = kenlm.State()
        if token in self._vocab:
            return self._kenlm.BaseScore(state, token, end), end
        best: tuple[float, kenlm.State] | None = None
        for cls in self._lexicon.classes_of(token):
            if cls in self._class_logp:
                cls_end = kenlm.State()
                logp = self._kenlm.BaseScore(state, cls, cls_end) + self._class_logp[cls] + self.name_score_offset
                if best is None or logp > best[0]:
                    best = (logp, cls_end)
        share = self._words.word_logp(token)
        if share is not None:
            cls_end = kenlm.State()
            logp = self._kenlm.BaseScore(state, WORD_CLASS, cls_end) + share + self.word_score_offset
            if best is None or logp > best[0]:
                best = (logp, cls_end)
        if best is not None:
            return best
        return self._kenlm.BaseScore(state, token, end) + self.unk_score_offset, end

    def word_logp(self, state: kenlm.State, word: str, is_last_word: bool = False) -> tuple[float, kenlm.State]:
        """Return ``(log10 probability, next state)`` of a space-free word (plus ``</s>`` when it ends the line)."""
        logp, state, _ = self._scored_word(state, word, is_last_word)
        return logp, state

    def _scored_word(self, state: kenlm.State, word: str, is_last_word: bool) -> tuple[float, kenlm.State, int]:
        """Return ``(log10 probability, next state, words it reads as)`` of a space-free word.

        A glued word read through its fallback (``deFrance`` as ``de France``)
        counts as the words it is read as.
        """
        total, words = 0.0, 1
        for token in lm_tokens(word):
            reading = self._known_reading(token) or [token]
            words += len(reading) - 1
            for part in reading:
                logp, state = self.token_logp(state, part)
                total += logp
        if is_last_word and self.score_boundary:
            total += self._kenlm.BaseScore(state, "</s>", kenlm.State())
        return total, state, words

    def score(self, prev_state: kenlm.State, word: str, is_last_word: bool = False) -> tuple[float, kenlm.State]:
        """Return pyctcdecode's fused word score ``alpha * ln P(word | context) + beta`` and the next state.

        The word bonus ``beta`` is paid per word the LM reads, so a glued word
        (``deFrance``, as transcribers write what the clerk wrote without a gap)
        and its split form (``de France``) tie on the LM side and the
        recognizer decides whether there was a gap; with one bonus per
        space-separated word the split form always won.
        """
        logp, state, words = self._scored_word(prev_state, word, is_last_word)
        return self.alpha * logp * LOG_BASE_CHANGE_FACTOR + self.beta * words, state

    def line_logp(self, text: str) -> float:
        """Return the log10 probability of a whole line (``</s>`` included when boundaries are scored)."""
        state = self.get_start_state()
        words = text.split()
        total = 0.0
        for i, word in enumerate(words):
            logp, state = self.word_logp(state, word, is_last_word=i == len(words) - 1)
            total += logp
        return total
