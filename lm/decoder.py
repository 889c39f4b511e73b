"""CTC decoders behind one interface: greedy (``--no-lm``) and pyctcdecode beam search with the names LM.

Both take what ``ocr.inference.Recognizer.logprobs`` returns — one float32
``(frames, classes)`` array of natural-log probabilities per line, class 0 the
CTC blank — and return :class:`DecodedLine` records. Frame ``f`` of a line
covers input columns ``[f * stride, (f + 1) * stride)`` of its crop.

Throughput (pyctcdecode issues #77, #65/PR #68, transformers PR #18351): a
:class:`BeamDecoder` owns one ``fork`` process pool, created on first use after
the LM is loaded (children inherit it instead of unpickling it) and closed by
:meth:`BeamDecoder.close` or the context manager; ``spawn`` would silently
decode in one process, and a pool per call costs more than the decoding.
Workers put back the default SIGTERM and ignore SIGINT (a fork inherits the
parent's Python handlers: Prefect's SIGTERM handler made every worker print a
traceback when the pool was terminated, and Ctrl-C is the parent's to handle),
and the pool is closed by letting them finish, not by terminating them.
After the search, words the LM does not know may be replaced by a known
spelling a few edits away that scores better (``lm.lexicon``, issue #5).
Before the search, runs of frames where only the blank passes
``token_min_logp`` are collapsed to one frame: pyctcdecode would only add the
same blank score to every beam there, so the result is unchanged and lines are
~2× shorter.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

import kenlm
import numpy as np
from pyctcdecode.alphabet import Alphabet
from pyctcdecode.decoder import BeamSearchDecoderCTC
from pyctcdecode.language_model import HotwordScorer

from lm.build import DEFAULT_LM, LMFiles, lm_prefix, read_info, read_lexicon
from lm.language_model import RegisterLanguageModel
from lm.lexicon import LexiconRescorer
from lm.names import display_case
from lm.words import WordClass


@dataclass
class DecoderConfig:
    """Beam-search settings; ``alpha``/``beta`` are tuned by ``bench/lm_tune.py`` and stored in the LM's JSON."""

    alpha: float = 0.2
    beta: float = 1.0
    unk_score_offset: float = -6.0
    #: log10 added to the class score of a name the model knows only from the name lists.
    name_score_offset: float = 0.0
    #: log10 added to the class score of a common French word the model knows only from the word list.
    word_score_offset: float = 0.0
    beam_width: int = 32
    #: Beams scoring this far (natural log) below the best are dropped.
    beam_prune_logp: float = -5.0
    #: Characters below this log-probability in a frame are not tried (the frame's best always is).
    token_min_logp: float = -5.0
    #: Bonus per hotword character; 2 measured best on the validation lines (10 made CER worse than no hotwords).
    hotword_weight: float = 2.0
    #: Alternatives kept per line by :meth:`BeamDecoder.decode_beams`.
    nbest: int = 5
    #: Worker processes for batches (1: decode in this process).
    processes: int = 2
    #: Try known spellings near the words of the best beam the LM cannot read (``lm.lexicon``; needs an LM).
    lexicon_rescore: bool = False
    #: A candidate replaces the word when it scores this much (natural log) better; 0 is the search's objective.
    lexicon_margin: float = 0.0
    #: Levenshtein distance of the candidates tried.
    lexicon_max_distance: int = 2
    #: Words of this many letters or more get one more edit (0: never).
    lexicon_long_word: int = 0
    #: Also try LM words this close to a word the LM knows only as a lexicon name (0: off).
    lexicon_names_max_distance: int = 0

    @classmethod
    def from_dict(cls, data: dict) -> DecoderConfig:
        """Return a config from a dict, ignoring keys that are not settings (``tuned_on``, ...)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class DecodedWord:
    """One word of a decoded line: text, frame span ``[start_frame, end_frame)`` and confidence 0–1."""

    text: str
    start_frame: int
    end_frame: int
    confidence: float


@dataclass
class DecodedLine:
    """A decoded line: text, confidence 0–1, its words with frame spans, and alternatives ``(text, log score)``."""

    text: str
    confidence: float
    words: list[DecodedWord] = field(default_factory=list)
    #: Best first; the score is the decoder's natural-log score (acoustic + weighted LM + bonuses). A reading
    #: changed by lexicon rescoring comes first even when a negative ``lexicon_margin`` left it below the next.
    nbest: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Return the line as plain JSON-able data."""
        return asdict(self)


def ctc_pyctcdecode_labels(labels: Sequence[str]) -> list[str]:
    """Return recognizer labels (blank first, whatever its name) as pyctcdecode wants them: blank as ``""``."""
    if len(labels) < 2:
        raise ValueError("labels must hold the blank and at least one character")
    out = ["", *labels[1:]]
    if " " not in out:
        # Without a space label pyctcdecode never ends a word (issue #55): no LM scoring at all.
        raise ValueError("labels have no space ' ': the LM needs it as the word separator")
    if len(set(out)) != len(out):
        raise ValueError("labels have duplicates")
    return out


def squeeze_blank_runs(logprobs: np.ndarray, token_min_logp: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Return ``(frames kept, their original indices, summed blank log-prob of the dropped frames)``.

    A frame is dropped when it follows a kept frame of the same kind: its best
    class is the blank and every character is below ``token_min_logp``. The beam
    search would only add its blank score to every beam.
    """
    if len(logprobs) == 0:
        return logprobs, np.zeros(0, np.int64), 0.0
    blank_only = (logprobs[:, 1:].max(axis=1) < token_min_logp) & (logprobs.argmax(axis=1) == 0)
    drop = blank_only.copy()
    drop[0] = False
    drop[1:] &= blank_only[:-1]
    keep = np.flatnonzero(~drop)
    return logprobs[keep], keep, float(logprobs[drop, 0].sum())


def ctc_logp(logprobs: np.ndarray, targets: Sequence[int]) -> float:
    """Return ``ln P(targets | logprobs)`` under CTC (sum over alignments), for a (frames, classes) span."""
    frames = len(logprobs)
    if not targets:
        return float(logprobs[:, 0].sum())
    if frames == 0:
        return -math.inf
    ext = np.zeros(2 * len(targets) + 1, np.int64)
    ext[1::2] = targets
    # A label state may be entered from two states back (skipping the blank) unless it repeats that label.
    skip = np.zeros(len(ext), np.float64)
    skip[3::2] = ext[3::2] != ext[1:-2:2]
    # The forward recursion in probability space, rescaled every frame (Graves et al. 2006, sec. 4.1).
    emit = np.exp(logprobs[:, ext].astype(np.float64))
    alpha = np.zeros(len(ext))
    alpha[:2] = emit[0, :2]
    log_scale = 0.0
    for t in range(1, frames):
        total = alpha.sum()
        if total <= 0.0:
            return -math.inf
        log_scale += math.log(total)
        alpha /= total
        nxt = alpha.copy()
        nxt[1:] += alpha[:-1]
        nxt[2:] += alpha[:-2] * skip[2:]
        alpha = nxt * emit[t]
    end = alpha[-1] + alpha[-2]
    return log_scale + math.log(end) if end > 0.0 else -math.inf


def _geometric_confidence(logp: float, units: int) -> float:
    """Return ``exp(logp / units)`` clipped to [0, 1]: a per-character geometric-mean probability."""
    return float(min(1.0, max(0.0, math.exp(logp / max(1, units)))))


def read_hotwords(path: str | Path) -> list[str]:
    """Return the words of a hotwords file (whitespace-separated, ``#`` starts a comment), in order, deduplicated."""
    words: dict[str, None] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        for word in line.split("#", 1)[0].split():
            words[word] = None
    return list(words)


def expand_hotwords(words: Iterable[str]) -> list[str]:
    """Return hotwords in the forms a register writes them: as given, capitalized, upper case, and punctuated.

    Punctuated means ``,`` ``.`` ``)`` after or ``(`` before.

    pyctcdecode matches a hotword only as a whole space-separated word, so
    ``Dupont,`` would not earn the bonus of ``Dupont``.
    """
    out: dict[str, None] = {}
    for word in words:
        forms = [word]
        if word.replace("-", "").replace("'", "").isalpha():
            forms += [display_case(word.upper()), word.upper()]
        for form in forms:
            for variant in (form, form + ",", form + ".", form + ")", "(" + form, "(" + form + ")"):
                out[variant] = None
    return list(out)


#: Seconds :meth:`BeamDecoder.close` waits for the workers to exit before terminating them.
POOL_EXIT_TIMEOUT_S = 10.0


def _quiet_worker() -> None:
    """Reset what a fork worker inherited: default SIGTERM, SIGINT ignored (the parent's), no thread exit hooks.

    The parent's ``threading`` exit hooks (Prefect registers one that drains
    its background services) would run when the worker exits, against
    services whose threads were not forked: they fail (exit code 1) or wait.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    hooks = getattr(threading, "_threading_atexits", None)
    if isinstance(hooks, list):
        hooks.clear()


def _close_pool(pool: Pool, timeout: float = POOL_EXIT_TIMEOUT_S) -> None:
    """Stop ``pool`` cleanly: no new work, workers exit once idle; terminated only if they hang past ``timeout``."""
    pool.close()
    joiner = threading.Thread(target=pool.join, name="decoder-pool-join", daemon=True)
    joiner.start()
    joiner.join(timeout)
    if joiner.is_alive():
        pool.terminate()
        joiner.join()


class FastHotwordScorer(HotwordScorer):
    """pyctcdecode's hotword scoring, with a word set and a prefix table instead of its regex and trie.

    pyctcdecode matches hotwords with one regex alternation over every hotword
    and a character trie: with the ~1,500 surnames of a register (four written
    forms each) that made beam search ~30x slower. Here whole words are looked
    up in a set and partial words in a table of every prefix's shortest
    completion; the scores are pyctcdecode's (``weight`` per whole hotword in
    the text, ``weight * len(partial) / len(shortest completion)`` for a partial
    word).
    """

    def __init__(self, words: Iterable[str], weight: float) -> None:
        self._weight = weight
        self._words = frozenset(words)
        self._shortest: dict[str, int] = {}
        for word in self._words:
            for end in range(len(word) + 1):
                prefix = word[:end]
                self._shortest[prefix] = min(self._shortest.get(prefix, len(word)), len(word))

    @classmethod
    def build(cls, hotwords: Iterable[str], weight: float) -> FastHotwordScorer:
        """Return the scorer of ``hotwords`` (each split on whitespace into words) at ``weight``."""
        return cls((w for phrase in hotwords for w in phrase.split()), weight)

    def __contains__(self, item: str) -> bool:
        return item in self._shortest

    def score(self, text: str) -> float:
        """Return ``weight`` times the number of whole hotwords among the words of ``text``."""
        if not self._words:
            return 0.0
        return self._weight * sum(1 for word in text.split() if word in self._words)

    def score_partial_token(self, token: str) -> float:
        """Return the bonus of a word in progress: its share of the shortest hotword it can still become."""
        shortest = self._shortest.get(token)
        return 0.0 if shortest is None else self._weight * len(token) / shortest


# Decoders used by pool workers, keyed by a random id. Fork children inherit the
# entry made before the pool started, so the KenLM model is never pickled.
_REGISTRY: dict[bytes, _SearchState] = {}


@dataclass
class _SearchState:
    """What a worker needs to decode one line."""

    ctc: BeamSearchDecoderCTC
    hotword_scorer: FastHotwordScorer
    config: DecoderConfig
    label_ids: dict[str, int]
    rescorer: LexiconRescorer | None = None


def _decode_line(key: bytes, logprobs: np.ndarray, detailed: bool) -> DecodedLine:
    """Decode one line with the registered decoder ``key`` (runs in a pool worker or in-process)."""
    st = _REGISTRY[key]
    cfg = st.config
    logprobs = np.asarray(logprobs, np.float32)
    if len(logprobs) == 0:
        return DecodedLine("", 0.0, [], [("", 0.0)] if detailed else [])
    squeezed, kept, dropped_logp = squeeze_blank_runs(logprobs, cfg.token_min_logp)
    # pyctcdecode's decode_beams rebuilds the hotword regex and trie on every call;
    # _decode_logits takes the scorer built once per run (pyctcdecode 0.5.0).
    beams = st.ctc._decode_logits(  # noqa: SLF001
        np.clip(squeezed, math.log(1e-15), 0.0),
        beam_width=cfg.beam_width,
        beam_prune_logp=cfg.beam_prune_logp,
        token_min_logp=cfg.token_min_logp,
        # History pruning merges beams that share their last words: fine for the
        # best text, not for an n-best list.
        prune_history=not detailed,
        hotword_scorer=st.hotword_scorer,
    )
    text, _, word_frames, logit_score, _ = beams[0]
    spans = [(word, int(kept[start]), int(kept[end - 1]) + 1) for word, (start, end) in word_frames]
    top: list[tuple[str, float]] = []
    if st.rescorer is not None and cfg.lexicon_rescore:
        rescored = st.rescorer.rescore(logprobs, spans, st.hotword_scorer.score)
        if rescored.replaced:
            spans = rescored.words
            text = " ".join(word for word, _, _ in spans)
            logit_score += rescored.acoustic_delta
            top = [(text, float(beams[0][4]) + rescored.score_delta)]
    confidence = _geometric_confidence(logit_score + dropped_logp, len(text))
    words = []
    for word, start_f, end_f in spans:
        span_logp = ctc_logp(logprobs[start_f:end_f], [st.label_ids[c] for c in word])
        words.append(DecodedWord(word, start_f, end_f, _geometric_confidence(span_logp, len(word))))
    nbest: list[tuple[str, float]] = []
    if detailed:
        seen: set[str] = set()
        for b_text, _, _, _, combined in [*((t, None, None, None, c) for t, c in top), *beams]:
            if b_text not in seen:
                seen.add(b_text)
                nbest.append((b_text, float(combined)))
            if len(nbest) >= cfg.nbest:
                break
    return DecodedLine(text, confidence, words, nbest)


class BeamDecoder:
    """pyctcdecode beam search over the recognizer's labels, with the names LM (or none), hotwords and a fork pool."""

    def __init__(
        self,
        labels: Sequence[str],
        lm: str | Path | None = DEFAULT_LM,
        config: DecoderConfig | None = None,
        hotwords: Iterable[str] = (),
    ) -> None:
        self.config = config or DecoderConfig()
        self.labels = ctc_pyctcdecode_labels(labels)
        self.hotwords = expand_hotwords(hotwords)
        self.lm_version = "none"
        self.language_model: RegisterLanguageModel | None = None
        if lm is not None:
            files = LMFiles(lm_prefix(lm))
            if not files.binary.exists():
                raise FileNotFoundError(f"{files.binary}: no LM binary (run `registre build-lm` or pass --no-lm)")
            vocabulary = files.unigrams.read_text(encoding="utf-8").split()
            lexicon = read_lexicon(files.lexicon) if files.lexicon.exists() else None
            words = WordClass.read(files.words) if files.words.exists() else None
            self.language_model = RegisterLanguageModel(
                kenlm.Model(str(files.binary)),
                vocabulary,
                lexicon,
                alpha=self.config.alpha,
                beta=self.config.beta,
                unk_score_offset=self.config.unk_score_offset,
                name_score_offset=self.config.name_score_offset,
                words=words,
                word_score_offset=self.config.word_score_offset,
            )
            self.lm_version = read_info(files.prefix).get("version", "unknown")
        self._ctc = BeamSearchDecoderCTC(Alphabet.build_alphabet(self.labels), self.language_model)
        self._key = os.urandom(16)
        _REGISTRY[self._key] = _SearchState(
            self._ctc,
            FastHotwordScorer.build(self.hotwords, weight=self.config.hotword_weight),
            self.config,
            {c: i for i, c in enumerate(self.labels) if c},
        )
        self._pool: Pool | None = None
        if self.config.lexicon_rescore:
            self.set_lexicon_rescoring(True)

    @classmethod
    def load(
        cls,
        labels: Sequence[str],
        lm: str | Path = DEFAULT_LM,
        hotwords_file: str | Path | None = None,
        hotwords: Iterable[str] = (),
        **overrides: float | int,
    ) -> BeamDecoder:
        """Return a decoder with the LM at ``lm`` and its tuned settings from the LM's JSON, then ``overrides``.

        ``overrides`` are :class:`DecoderConfig` fields (``beam_width=8``, ``processes=1``);
        hotwords come from ``hotwords_file`` and ``hotwords`` together.
        """
        unknown = set(overrides) - {f.name for f in fields(DecoderConfig)}
        if unknown:
            raise TypeError(f"not decoder settings: {sorted(unknown)}")
        tuned = read_info(lm_prefix(lm)).get("decoder", {})
        config = DecoderConfig.from_dict({**tuned, **overrides})
        words = [*(read_hotwords(hotwords_file) if hotwords_file else []), *hotwords]
        return cls(labels, lm, config, words)

    @property
    def version(self) -> str:
        """Return a short description of the decoding for manifests: beam width, LM version, alpha, beta, lexicon."""
        c = self.config
        lexicon = ""
        if self.rescorer is not None:
            lexicon = f"-lex{c.lexicon_max_distance}"
            lexicon += f"l{c.lexicon_long_word}" if c.lexicon_long_word else ""
            lexicon += f"n{c.lexicon_names_max_distance}" if c.lexicon_names_max_distance else ""
            lexicon += f"m{c.lexicon_margin:g}"
        return f"beam{c.beam_width}-lm:{self.lm_version}-a{c.alpha:g}-b{c.beta:g}{lexicon}"

    @property
    def rescorer(self) -> LexiconRescorer | None:
        """Return the lexicon rescorer in use (None when rescoring is off or there is no LM)."""
        return _REGISTRY[self._key].rescorer if self.config.lexicon_rescore else None

    def set_lexicon_rescoring(self, enabled: bool, **settings: float) -> None:
        """Turn lexicon rescoring on or off and change its ``lexicon_*`` settings; pool workers are restarted.

        ``settings`` are :class:`DecoderConfig` fields (``lexicon_margin=-4``).
        The candidate index (~1-2 s, ~30 MB for the 245,000-name lexicon) is
        built here, once, before the pool forks, so that workers share it.
        """
        c = self.config
        names = {f.name: f.type for f in fields(DecoderConfig) if f.name.startswith("lexicon_")}
        unknown = set(settings) - set(names) | ({"lexicon_rescore"} & set(settings))
        if unknown:
            raise ValueError(f"not lexicon settings: {sorted(unknown)}")
        for name, value in settings.items():
            setattr(c, name, int(value) if names[name] == "int" else float(value))
        c.lexicon_rescore = bool(enabled) and self.language_model is not None
        state = _REGISTRY[self._key]
        if c.lexicon_rescore and state.rescorer is None:
            assert self.language_model is not None
            state.rescorer = LexiconRescorer(self.language_model, state.label_ids)
            state.rescorer.set_extra_words(self.hotwords)
        if state.rescorer is not None:
            state.rescorer.configure(
                c.lexicon_max_distance, c.lexicon_margin, c.lexicon_names_max_distance, c.lexicon_long_word
            )
        self._close_pool()

    #: Settings :meth:`set_params` may change (those the language model reads at scoring time).
    LM_PARAMS = ("alpha", "beta", "unk_score_offset", "name_score_offset", "word_score_offset")

    def set_params(self, **params: float) -> None:
        """Change LM weights (``alpha``, ``beta``, ``unk_score_offset``, ``name_score_offset``, ``word_score_offset``).

        Pool workers are restarted, since each holds a copy of the old ones.
        """
        unknown = set(params) - set(self.LM_PARAMS)
        if unknown:
            raise ValueError(f"not LM settings: {sorted(unknown)}")
        for name, value in params.items():
            setattr(self.config, name, float(value))
        if self.language_model is not None:
            self.language_model.reset_params(**params)
        self._close_pool()

    def set_hotwords(self, hotwords: Iterable[str], weight: float | None = None) -> None:
        """Replace the hotwords (and their weight) without reloading the LM; pool workers are restarted."""
        if weight is not None:
            self.config.hotword_weight = float(weight)
        self.hotwords = expand_hotwords(hotwords)
        state = _REGISTRY[self._key]
        state.hotword_scorer = FastHotwordScorer.build(self.hotwords, weight=self.config.hotword_weight)
        if state.rescorer is not None:
            state.rescorer.set_extra_words(self.hotwords)
        self._close_pool()

    def _get_pool(self) -> Pool | None:
        if self.config.processes <= 1:
            return None
        if self._pool is None:
            self._pool = multiprocessing.get_context("fork").Pool(self.config.processes, initializer=_quiet_worker)
        return self._pool

    def _run(self, logprobs: Sequence[np.ndarray], detailed: bool) -> list[DecodedLine]:
        work = functools.partial(_decode_line, self._key, detailed=detailed)
        pool = self._get_pool() if len(logprobs) > 1 else None
        if pool is None:
            return [work(lp) for lp in logprobs]
        chunk = max(1, len(logprobs) // (8 * self.config.processes))
        return pool.map(work, logprobs, chunksize=chunk)

    def decode_batch(self, logprobs: Sequence[np.ndarray]) -> list[DecodedLine]:
        """Return the best reading of each line: text, confidence and words (no n-best list)."""
        return self._run(logprobs, detailed=False)

    def decode_beams(self, logprobs: Sequence[np.ndarray]) -> list[DecodedLine]:
        """Return the best reading of each line with its n-best alternatives (a slower, unpruned search)."""
        return self._run(logprobs, detailed=True)

    def _close_pool(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            _close_pool(pool)

    def close(self) -> None:
        """Stop the worker processes and release the LM."""
        self._close_pool()
        _REGISTRY.pop(self._key, None)
        self._ctc.cleanup()

    def __enter__(self) -> BeamDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GreedyDecoder:
    """Best-path CTC decoding (``--no-lm``): the most likely class per frame, repeats merged, blanks removed."""

    version = "greedy"

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = ctc_pyctcdecode_labels(labels)

    def decode_line(self, logprobs: np.ndarray) -> DecodedLine:
        """Return the best-path reading of one line.

        Its confidence is the geometric mean of the emitted characters' peak
        probabilities, as in ``ocr.inference.greedy_decode``.
        """
        logprobs = np.asarray(logprobs)
        if len(logprobs) == 0:
            return DecodedLine("", 0.0, [], [("", 0.0)])
        best = logprobs.argmax(axis=1)
        best_logp = logprobs.max(axis=1)
        # A character is emitted where the best class is not blank and differs from the previous frame's.
        starts = np.flatnonzero((best != 0) & (best != np.concatenate(([0], best[:-1]))))
        # Each emission's run ends where the class changes; its confidence is the run's peak.
        change = np.flatnonzero(np.diff(best) != 0) + 1
        run_ends = np.append(change, len(best))
        ends = run_ends[np.searchsorted(run_ends, starts, side="right")]
        chars = [self.labels[k] for k in best[starts]]
        peaks = np.array([best_logp[s:e].max() for s, e in zip(starts, ends, strict=True)], np.float64)
        text = "".join(chars)
        if len(peaks):
            confidence = float(np.exp(peaks.mean()))
        else:
            confidence = float(np.exp(best_logp.mean()))
        words: list[DecodedWord] = []
        i = 0
        while i < len(chars):
            if chars[i] == " ":
                i += 1
                continue
            j = i
            while j < len(chars) and chars[j] != " ":
                j += 1
            words.append(
                DecodedWord("".join(chars[i:j]), int(starts[i]), int(ends[j - 1]), float(np.exp(peaks[i:j].mean())))
            )
            i = j
        # Spaces at the ends and doubled inside are not words (as pyctcdecode normalizes them).
        clean = " ".join(text.split())
        return DecodedLine(clean, confidence, words, [(clean, float(best_logp.sum()))])

    def decode_batch(self, logprobs: Sequence[np.ndarray]) -> list[DecodedLine]:
        """Return the best-path reading of each line."""
        return [self.decode_line(lp) for lp in logprobs]

    def decode_beams(self, logprobs: Sequence[np.ndarray]) -> list[DecodedLine]:
        """Return the same as :meth:`decode_batch` (one path: the n-best list has one entry)."""
        return self.decode_batch(logprobs)

    def close(self) -> None:
        """Do nothing (no resources)."""

    def __enter__(self) -> GreedyDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Decoder = BeamDecoder | GreedyDecoder


def open_decoder(labels: Sequence[str], settings: Any = None) -> Decoder:
    """Return the decoder a ``flows.settings.Settings``-like object asks for; greedy when its ``use_lm`` is false.

    Reads ``use_lm``, ``lm`` (a prefix or any LM file, default ``models/names``),
    ``hotwords`` (a file), ``beam_width``, ``decode_workers`` and
    ``lexicon_rescore`` when present; the LM's tuned settings fill the rest.
    """
    if not getattr(settings, "use_lm", True):
        return GreedyDecoder(labels)
    overrides: dict[str, float | int | bool] = {}
    if getattr(settings, "lexicon_rescore", None) is not None:
        overrides["lexicon_rescore"] = bool(settings.lexicon_rescore)
    if getattr(settings, "beam_width", None) is not None:
        overrides["beam_width"] = int(settings.beam_width)
    if getattr(settings, "decode_workers", None) is not None:
        overrides["processes"] = int(settings.decode_workers)
    lm = getattr(settings, "lm", None) or DEFAULT_LM
    return BeamDecoder.load(labels, lm, getattr(settings, "hotwords", None), **overrides)


__all__ = [
    "BeamDecoder",
    "DecodedLine",
    "DecodedWord",
    "Decoder",
    "DecoderConfig",
    "GreedyDecoder",
    "ctc_logp",
    "expand_hotwords",
    "open_decoder",
    "read_hotwords",
    "squeeze_blank_runs",
]
