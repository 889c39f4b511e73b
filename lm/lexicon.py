"""Lexicon rescoring: after the beam search, try known spellings near the words the LM cannot read (issue #5).

The beam search extends a hypothesis only by characters above
``token_min_logp`` in a frame and keeps ``beam_width`` hypotheses: when one
letter of ``Gimonet`` falls below either cut, the known name is never built and
the LM can only choose between unknown readings (``Gimomet``). This pass looks
at each word of the best beam whose core is unknown to the LM, takes the known
spellings within a small Levenshtein distance in the same case form (LM words,
surnames and first names of the lexicon, hotwords), and scores each with the
objective of the search itself: the CTC log-likelihood of the word, summed over
all alignments, over the word's frames (widened by a few frames, never into a
neighbour word) plus the line's fused LM score (``alpha * ln P + beta`` per
word, hotword bonus included). A word is replaced when its best candidate
beats it by more than a margin; 0 is the search's own objective, and the tuned
margin (``bench/lm_tune.py --lexicon``) is negative: the search's own
approximations favour what it read.

Words of 8 letters or more may get one more edit (``long_word``). Optionally a
word the LM knows only as a lexicon name, not from the training text, is tried
against the LM's words (``names_max_distance``): among 245,000 names, ``Piris``
and ``Mane`` are names, and the beam settles on them when a letter of
``Paris`` or ``Marie`` was cut. Other known words are never touched. Candidates
are found among ~480,000 spellings by a letter-set filter and rapidfuzz's
Levenshtein (:class:`CandidateIndex`) and remembered per word read.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from lm.language_model import RegisterLanguageModel
from lm.names import display_case
from lm.tokens import fold_digits, split_word

#: Case forms a word is matched in: a capitalized word is only replaced by a capitalized spelling, and so on.
CASE_FORMS = ("capitalized", "upper", "lower")

#: Candidates whose CTC log-likelihood is this far (natural log) below the word read are not LM-scored:
#: the LM gain of a known word over an unknown one is a few nats (OOV offset -6 log10 at alpha 0.35 is 4.8).
MIN_ACOUSTIC_DELTA = -15.0
#: Candidates LM-scored per word, best acoustic first.
MAX_SCORED = 24
#: Distinct words whose candidate lists a worker remembers (readings repeat across a register's lines).
CACHE_SIZE = 20_000


def case_form(word: str) -> str:
    """Return ``"upper"``, ``"capitalized"`` or ``"lower"`` by the word's first letter and the rest."""
    if word.isupper():
        return "upper"
    if word[:1].isupper():
        return "capitalized"
    return "lower"


def ctc_logp_batch(logprobs: np.ndarray, targets: Sequence[Sequence[int]]) -> np.ndarray:
    """Return ``ln P(target | logprobs)`` under CTC for each target over the same (frames, classes) span.

    One forward recursion over every target at once (padded to the longest),
    rescaled every frame (Graves et al. 2006, sec. 4.1); equals
    ``lm.decoder.ctc_logp`` target by target.
    """
    n = len(targets)
    frames = len(logprobs)
    if n == 0:
        return np.zeros(0)
    lengths = np.array([len(t) for t in targets])
    states = 2 * int(lengths.max()) + 1
    ext = np.zeros((n, states), np.int64)
    for k, target in enumerate(targets):
        ext[k, 1 : 2 * len(target) : 2] = target
    if frames == 0:
        return np.where(lengths == 0, 0.0, -math.inf)
    valid = np.arange(states)[None, :] < (2 * lengths + 1)[:, None]
    skip = np.zeros((n, states))
    skip[:, 3::2] = ext[:, 3::2] != ext[:, 1:-2:2]
    # (frames, targets, states): the probability each state emits at each frame, 0 on padding.
    emit = np.exp(logprobs[:, ext].astype(np.float64)) * valid
    alpha = np.zeros((n, states))
    alpha[:, :2] = emit[0, :, :2]
    log_scale = np.zeros(n)
    for t in range(1, frames):
        total = alpha.sum(axis=1)
        dead = total <= 0.0
        total[dead] = 1.0
        log_scale += np.log(total)
        alpha /= total[:, None]
        nxt = alpha.copy()
        nxt[:, 1:] += alpha[:, :-1]
        nxt[:, 2:] += alpha[:, :-2] * skip[:, 2:]
        alpha = nxt * emit[t]
    rows = np.arange(n)
    last = 2 * lengths
    end = alpha[rows, last] + np.where(lengths > 0, alpha[rows, np.maximum(last - 1, 0)], 0.0)
    with np.errstate(divide="ignore"):
        return np.where(end > 0.0, log_scale + np.log(np.where(end > 0.0, end, 1.0)), -math.inf)


def ctc_label_span(logprobs: np.ndarray, target: Sequence[int]) -> tuple[int, int]:
    """Return ``[first, last + 1)``: the frames holding a label in the best CTC alignment of ``target`` (Viterbi).

    ``(0, 0)`` for an empty target or one the span cannot hold.
    """
    frames = len(logprobs)
    if not target or frames == 0:
        return 0, 0
    ext = np.zeros(2 * len(target) + 1, np.int64)
    ext[1::2] = target
    states = len(ext)
    allow_skip = np.zeros(states, bool)
    allow_skip[3::2] = ext[3::2] != ext[1:-2:2]
    emit = logprobs[:, ext].astype(np.float64)
    score = np.full(states, -math.inf)
    score[:2] = emit[0, :2]
    back = np.zeros((frames, states), np.int64)
    idx = np.arange(states)
    for t in range(1, frames):
        stay = score
        step = np.concatenate(([-math.inf], score[:-1]))
        jump = np.where(allow_skip, np.concatenate(([-math.inf, -math.inf], score[:-2])), -math.inf)
        best = np.stack([stay, step, jump])
        choice = best.argmax(axis=0)
        back[t] = idx - choice
        score = best[choice, idx] + emit[t]
    state = states - 1 if score[-1] >= score[-2] else states - 2
    if not math.isfinite(score[state]):
        return 0, 0
    path = [state]
    for t in range(frames - 1, 0, -1):
        state = int(back[t, state])
        path.append(state)
    path.reverse()
    label_frames = [t for t, s in enumerate(path) if s % 2 == 1]
    return label_frames[0], label_frames[-1] + 1


class CandidateIndex:
    """Known spellings by case form, sorted by length, searched by Levenshtein distance.

    A letter-set filter runs first, in numpy over the whole length range: with
    ``m`` letters of the word missing from a spelling and ``x`` letters of the
    spelling missing from the word, ``max(m, x) <= d`` and
    ``m + x + |length difference| <= 2 d`` hold for any spelling within ``d``
    edits (a substitution accounts for one of each, an insertion or deletion
    for one and for the length difference). It keeps ~1 % of a length range of
    names, and rapidfuzz measures only those: 4x faster than rapidfuzz on the
    whole range.
    """

    def __init__(self, words: Iterable[str]) -> None:
        by_form: dict[str, list[str]] = {form: [] for form in CASE_FORMS}
        for word in dict.fromkeys(words):
            by_form[case_form(word)].append(word)
        # One bit per case-folded letter, by frequency order: the rarest share bits (which only weakens the filter).
        letters = Counter(c for spellings in by_form.values() for w in spellings for c in w.lower())
        self._bits = {c: 1 << (i % 64) for i, (c, _) in enumerate(letters.most_common())}
        self._words: dict[str, np.ndarray] = {}
        self._lengths: dict[str, np.ndarray] = {}
        self._masks: dict[str, np.ndarray] = {}
        for form, spellings in by_form.items():
            spellings.sort(key=len)
            # An object array: gathering the filter's survivors by index is then one C call.
            self._words[form] = np.array(spellings, dtype=object)
            self._lengths[form] = np.array([len(w) for w in spellings], np.int64)
            self._masks[form] = np.array([self.letter_mask(w) for w in spellings], np.uint64)
        self.size = sum(len(w) for w in self._words.values())

    def __len__(self) -> int:
        """Return the number of spellings."""
        return self.size

    def letter_mask(self, word: str) -> int:
        """Return the set of ``word``'s letters (case folded) as a 64-bit mask; unseen letters share the last bit."""
        mask = 0
        for char in word.lower():
            mask |= self._bits.get(char, 1 << 63)
        return mask

    def search(self, word: str, max_distance: int) -> list[tuple[str, int]]:
        """Return ``(spelling, distance)`` of every spelling within ``max_distance`` edits in ``word``'s case form."""
        form = case_form(word)
        lengths = self._lengths[form]
        lo = int(np.searchsorted(lengths, len(word) - max_distance, side="left"))
        hi = int(np.searchsorted(lengths, len(word) + max_distance, side="right"))
        if lo >= hi:
            return []
        query = np.uint64(self.letter_mask(word))
        # Letters of the spelling missing from the word first: it alone drops most of the range.
        extra = np.bitwise_count(self._masks[form][lo:hi] & ~query)
        keep = lo + np.flatnonzero(extra <= max_distance)
        missing = np.bitwise_count(~self._masks[form][keep] & query)
        length_gap = np.abs(lengths[keep] - len(word))
        keep = keep[(missing <= max_distance) & (missing + extra[keep - lo] + length_gap <= 2 * max_distance)]
        if not len(keep):
            return []
        pool = self._words[form][keep].tolist()
        hits = process.extract(word, pool, scorer=Levenshtein.distance, score_cutoff=max_distance, limit=None)
        return [(spelling, int(dist)) for spelling, dist, _ in hits]


def known_spellings(language_model: RegisterLanguageModel, alphabet: Iterable[str]) -> tuple[list[str], list[str]]:
    """Return ``(LM words, names)``: the alphabetic spellings the LM reads; names in display and upper case and
    the common-word class's words.

    Only spellings written entirely in ``alphabet`` (the recognizer's characters) are kept.
    """
    chars = set(alphabet)
    words = [w for w in language_model._vocab if w.isalpha() and set(w) <= chars]  # noqa: SLF001
    names: list[str] = []
    for key in language_model._lexicon.classes:  # noqa: SLF001
        if key.isalpha():
            names.extend(form for form in (display_case(key), key) if set(form) <= chars)
    # Common French words: as listed and capitalized; they join the names, not the LM's words.
    names.extend(w for w in language_model._words.spellings() if w.isalpha() and set(w) <= chars)  # noqa: SLF001
    return words, names


@dataclass
class Rescored:
    """Words of a line after rescoring: ``(text, start_frame, end_frame)``, which were replaced, the score change."""

    words: list[tuple[str, int, int]]
    replaced: list[int] = field(default_factory=list)
    #: Change of the CTC log-likelihood (natural log) of the replaced words over their windows.
    acoustic_delta: float = 0.0
    #: Change of the search objective (acoustic + fused LM + hotword bonus).
    score_delta: float = 0.0


class LexiconRescorer:
    """Replaces words the LM cannot read (or reads only as names) by known spellings that score better.

    See the module doc; ``margin`` is in natural log, distances in edits.
    """

    def __init__(
        self,
        language_model: RegisterLanguageModel,
        label_ids: Mapping[str, int],
        max_distance: int = 2,
        margin: float = 0.0,
        window: int = 3,
        names_max_distance: int = 0,
        long_word: int = 0,
    ) -> None:
        self.language_model = language_model
        self.label_ids = dict(label_ids)
        self.max_distance = max_distance
        self.margin = margin
        self.window = window
        self.names_max_distance = names_max_distance
        self.long_word = long_word
        words, names = known_spellings(language_model, label_ids)
        self.index = CandidateIndex([*words, *names])
        self.words_index = CandidateIndex(words)
        self.extra = CandidateIndex([])
        self._cache: dict[tuple[str, bool], list[str]] = {}

    def configure(self, max_distance: int, margin: float, names_max_distance: int = 0, long_word: int = 0) -> None:
        """Set the candidate distances in edits (``names_max_distance``, ``long_word``: 0 is off) and the margin."""
        distances = (max_distance, names_max_distance, long_word)
        if distances != (self.max_distance, self.names_max_distance, self.long_word):
            self._cache.clear()
        self.max_distance, self.names_max_distance, self.long_word = distances
        self.margin = margin

    def distance(self, core: str) -> int:
        """Return the edits allowed for the candidates of ``core``: one more from ``long_word`` letters."""
        return self.max_distance + (1 if self.long_word and len(core) >= self.long_word else 0)

    def set_extra_words(self, words: Iterable[str]) -> None:
        """Make the alphabetic cores of ``words`` (hotwords) candidates too."""
        cores = (split_word(w)[1] for w in words)
        self.extra = CandidateIndex(c for c in cores if c.isalpha() and set(c) <= self.label_ids.keys())
        self._cache.clear()

    def candidates(self, core: str, name: bool = False) -> list[str]:
        """Return the known spellings within :meth:`distance` edits of ``core``, nearest first.

        For a ``name`` (see :meth:`kind`): the LM words within ``names_max_distance``.
        """
        hit = self._cache.get((core, name))
        if hit is None:
            if name:
                found = self.words_index.search(core, self.names_max_distance)
            else:
                distance = self.distance(core)
                found = [*self.index.search(core, distance), *self.extra.search(core, distance)]
            hit = [w for w, _ in sorted(dict(found).items(), key=lambda item: item[1])]
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[(core, name)] = hit
        return hit

    def kind(self, core: str) -> str | None:
        """Return ``"oov"`` or ``"name"`` for a word core to try, None for one to leave.

        Tried: alphabetic cores of three letters or more that the LM cannot read
        (``"oov"``), and, when ``names_max_distance`` is set, those it knows only
        as a lexicon name, not as a word of the training text (``"name"``).
        """
        if len(core) < 3 or not core.isalpha():
            return None
        lm = self.language_model
        if lm._known_reading(fold_digits(core)) is None:  # noqa: SLF001
            return "oov"
        if self.names_max_distance and core not in lm._vocab and lm._lexicon.classes_of(core):  # noqa: SLF001
            return "name"
        return None

    def needs_rescoring(self, core: str) -> bool:
        """Return whether a word core is one to try (see :meth:`kind`)."""
        return self.kind(core) is not None

    def _lm_score(self, words: Sequence[str], start: int, states: list, prefix: list[float]) -> float:
        """Return the fused LM score of ``words`` given the states and scores before ``start`` are those cached."""
        lm = self.language_model
        state, total = states[start], prefix[start]
        for i in range(start, len(words)):
            s, state = lm.score(state, words[i], is_last_word=i == len(words) - 1)
            total += s
        return total

    def _prefix(self, words: Sequence[str]) -> tuple[list, list[float]]:
        """Return the LM states before each word and the fused scores of the words before it."""
        lm = self.language_model
        states, prefix = [lm.get_start_state()], [0.0]
        for i, word in enumerate(words):
            s, state = lm.score(states[-1], word, is_last_word=i == len(words) - 1)
            states.append(state)
            prefix.append(prefix[-1] + s)
        return states, prefix

    def rescore(
        self,
        logprobs: np.ndarray,
        words: Sequence[tuple[str, int, int]],
        hotword_score: Callable[[str], float] | None = None,
    ) -> Rescored:
        """Return the words of a line (text, frame span) with the words tried replaced where a spelling scores better.

        ``logprobs`` are the line's full (frames, classes) log-probabilities;
        spans index them. ``hotword_score(word)`` is the search's hotword bonus.
        """
        out = Rescored(list(words))
        texts = [w for w, _, _ in words]
        states: tuple[list, list[float]] | None = None
        for wi, (word, start, end) in enumerate(words):
            lead, core, trail = split_word(word)
            kind = self.kind(core)
            if kind is None:
                continue
            spellings = self.candidates(core, name=kind == "name")
            if not spellings:
                continue
            lo = out.words[wi - 1][2] if wi else 0
            hi = out.words[wi + 1][1] if wi + 1 < len(out.words) else len(logprobs)
            # Widened to catch a letter the beam left to a blank, never into a neighbour (nor inside the word).
            s, e = max(min(lo, start), start - self.window), min(max(hi, end), end + self.window)
            span = logprobs[s:e]
            texts_tried = [word, *(lead + c + trail for c in spellings)]
            acoustic = ctc_logp_batch(span, [[self.label_ids[ch] for ch in t] for t in texts_tried])
            delta = acoustic[1:] - acoustic[0]
            order = [k for k in np.argsort(-delta)[:MAX_SCORED] if delta[k] > MIN_ACOUSTIC_DELTA]
            if not order:
                continue
            if states is None:
                states = self._prefix(texts)
            base = states[1][-1]
            best_gain, best_k = self.margin, -1
            for k in order:
                trial = [*texts[:wi], texts_tried[k + 1], *texts[wi + 1 :]]
                gain = float(delta[k]) + self._lm_score(trial, wi, *states) - base
                if hotword_score is not None:
                    gain += hotword_score(texts_tried[k + 1]) - hotword_score(word)
                if gain > best_gain:
                    best_gain, best_k = gain, k
            if best_k < 0:
                continue
            new = texts_tried[best_k + 1]
            first, last = ctc_label_span(span, [self.label_ids[ch] for ch in new])
            out.words[wi] = (new, s + first, s + last) if last > first else (new, start, end)
            out.replaced.append(wi)
            out.acoustic_delta += float(delta[best_k])
            out.score_delta += best_gain
            texts[wi] = new
            states = None
        return out


__all__ = [
    "CandidateIndex",
    "LexiconRescorer",
    "Rescored",
    "case_form",
    "ctc_label_span",
    "ctc_logp_batch",
    "known_spellings",
]
