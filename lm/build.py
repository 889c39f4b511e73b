"""Building the names LM with KenLM's own tools: ``lmplz`` estimates the ARPA model, ``build_binary`` packs it.

``build_lm(data_dir, Path("models/names"))`` writes, beside that prefix:

* ``names.arpa`` — the estimated model (text; rebuilt, not shipped),
* ``names.binary`` — the same as a quantized trie, what the decoder loads,
* ``names.unigrams.txt`` — the model's word tokens, one per line (pyctcdecode's unigram list),
* ``names.lexicon.txt.gz`` — the name classes (``lm.names.NameLexicon``),
* ``names.words.txt.gz`` — the common-word class (``lm.words.WordClass``),
* ``names.json`` — how it was built, its version, and the decoder's tuned defaults.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lm.corpus import Corpus, build_corpus
from lm.names import CLASS_TOKENS, NameLexicon
from lm.words import DEFAULT_SIZE, WordClass
from ocr.charset import FOREIGN_LETTERS, FRENCH_BASE
from ocr.corpus import DEFAULT_DATA

log = logging.getLogger(__name__)

#: The LM `registre` decodes with when none is given: a path prefix of the files listed above.
DEFAULT_LM = Path(__file__).resolve().parent.parent / "models" / "names"
FORMAT = "registre-lm/1"


class KenLMToolsMissing(RuntimeError):
    """lmplz or build_binary cannot be found."""


@dataclass
class LMFiles:
    """Paths of one built LM, all derived from a path prefix (``models/names``)."""

    prefix: Path

    @property
    def arpa(self) -> Path:
        """Return the ARPA model's path."""
        return self.prefix.with_name(self.prefix.name + ".arpa")

    @property
    def binary(self) -> Path:
        """Return the KenLM binary model's path."""
        return self.prefix.with_name(self.prefix.name + ".binary")

    @property
    def unigrams(self) -> Path:
        """Return the unigram list's path."""
        return self.prefix.with_name(self.prefix.name + ".unigrams.txt")

    @property
    def lexicon(self) -> Path:
        """Return the name lexicon's path."""
        return self.prefix.with_name(self.prefix.name + ".lexicon.txt.gz")

    @property
    def words(self) -> Path:
        """Return the common-word class's path."""
        return self.prefix.with_name(self.prefix.name + ".words.txt.gz")

    @property
    def info(self) -> Path:
        """Return the JSON description's path."""
        return self.prefix.with_name(self.prefix.name + ".json")


def lm_prefix(path: str | Path) -> Path:
    """Return the path prefix of an LM given as a prefix or as any of its files (``models/names.binary``)."""
    path = Path(path)
    for suffix in (".arpa", ".binary", ".unigrams.txt", ".lexicon.txt.gz", ".words.txt.gz", ".json"):
        if path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)])
    return path


@dataclass
class LMInfo:
    """What a build produced: files, sizes in bytes, n-gram counts and the settings that made it."""

    prefix: str
    version: str
    order: int
    prune: list[int]
    ngrams: dict[str, int]
    vocabulary: int
    name_keys: int
    sizes: dict[str, int]
    corpus: dict[str, int] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    @property
    def files(self) -> LMFiles:
        """Return the paths of this LM."""
        return LMFiles(Path(self.prefix))


def find_tool(name: str) -> Path:
    """Return the path of a KenLM program found on PATH or beside the running Python (the venv's bin/)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    if found:
        return Path(found)
    raise KenLMToolsMissing(
        f"KenLM's {name} is not on PATH nor in {beside.parent}: run the project set-up "
        "(`make setup`, or `bash scripts/build_kenlm.sh .venv`) to build lmplz and build_binary"
    )


def run_lmplz(
    lines: Sequence[str],
    arpa: Path,
    order: int,
    prune: Sequence[int] = (),
    memory: str = "512M",
    tmp_dir: Path | None = None,
) -> None:
    """Estimate a modified Kneser-Ney ARPA model of ``lines`` (one sentence each, tokens space-separated) with lmplz."""
    cmd = [str(find_tool("lmplz")), "--order", str(order), "--memory", memory, "--skip_symbols", "--discount_fallback"]
    if tmp_dir is not None:
        cmd += ["--temp_prefix", str(tmp_dir) + os.sep]
    if any(prune):
        # lmplz wants one threshold per order from the first that prunes; unigrams are never pruned.
        thresholds = [0, *prune[1:]] if len(prune) > 1 else [0, *prune]
        cmd += ["--prune", *map(str, thresholds)]
    text = "".join(line + "\n" for line in lines).encode("utf-8")
    with arpa.open("wb") as out:
        proc = subprocess.run(cmd, input=text, stdout=out, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"lmplz failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}")


def run_build_binary(arpa: Path, binary: Path, kind: str = "trie", quantize_bits: int = 8) -> None:
    """Pack an ARPA model into KenLM's binary format (``trie`` quantized to ``quantize_bits``, or ``probing``)."""
    cmd = [str(find_tool("build_binary")), "-s"]
    if kind == "trie" and quantize_bits:
        cmd += ["-q", str(quantize_bits), "-b", str(quantize_bits)]
    cmd += [kind, str(arpa), str(binary)]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"build_binary failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}")


def arpa_counts(arpa: Path) -> dict[str, int]:
    """Return ``{"1": n1, "2": n2, ...}`` from an ARPA file's header."""
    counts: dict[str, int] = {}
    with arpa.open(encoding="utf-8") as f:
        for line in f:
            if line.startswith("ngram "):
                n, _, c = line[6:].partition("=")
                counts[n.strip()] = int(c)
            elif line.startswith("\\1-grams:"):
                break
    return counts


def write_unigrams(corpus: Corpus, path: Path) -> int:
    """Write the corpus's word tokens (class tokens left out), one per line; return their number."""
    words = [w for w in corpus.vocabulary() if w not in CLASS_TOKENS]
    path.write_text("".join(w + "\n" for w in words), encoding="utf-8")
    return len(words)


def write_lexicon(lexicon: NameLexicon, path: Path) -> None:
    """Write the name lexicon gzip-compressed (byte-identical across builds: no file name or time in the header)."""
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "lexicon.txt"
        lexicon.write(plain)
        with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            gz.write(plain.read_bytes())


def read_lexicon(path: Path) -> NameLexicon:
    """Return the lexicon written by :func:`write_lexicon` (a plain ``.txt`` also works)."""
    if path.suffix == ".gz":
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / "lexicon.txt"
            with gzip.open(path, "rb") as gz:
                plain.write_bytes(gz.read())
            return NameLexicon.read(plain)
    return NameLexicon.read(path)


def files_digest(paths: Sequence[Path]) -> str:
    """Return the first 12 hex digits of the SHA-256 over the files' contents, in order."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def read_info(prefix: str | Path) -> dict:
    """Return the JSON description of the LM at ``prefix`` ({} when there is none)."""
    path = LMFiles(lm_prefix(prefix)).info
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def write_info(prefix: str | Path, info: dict) -> None:
    """Write the JSON description of the LM at ``prefix`` atomically."""
    path = LMFiles(lm_prefix(prefix)).info
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def build_lm(
    data_dir: Path = DEFAULT_DATA,
    out: Path = DEFAULT_LM,
    order: int = 3,
    prune: Sequence[int] = (0, 0, 1),
    names: bool = True,
    rare_max: int = 1,
    binary_kind: str = "trie",
    quantize_bits: int = 8,
    memory: str = "512M",
    words: int = DEFAULT_SIZE,
) -> LMInfo:
    """Build the names LM of ``data_dir`` (training pages, name lists) into the files of prefix ``out``; return them.

    ``prune`` holds lmplz's per-order count thresholds (``(0, 0, 1)``: drop
    trigrams seen once); ``names=False`` builds a model of the training text alone.
    ``words`` is the size of the common-word class (``lm.words``; 0: none, and
    none without ``names``).
    The ``decoder`` section of an existing ``out.json`` (tuned alpha/beta) is kept.
    """
    files = LMFiles(lm_prefix(out))
    files.prefix.parent.mkdir(parents=True, exist_ok=True)
    # Fail before the corpus work when the tools are missing.
    find_tool("lmplz")
    find_tool("build_binary")
    word_class = WordClass.french(words, FRENCH_BASE + FOREIGN_LETTERS) if names and words else WordClass({})
    corpus = build_corpus(Path(data_dir), names=names, rare_max=rare_max, words=word_class)
    with tempfile.TemporaryDirectory(prefix="registre-lm-") as tmp:
        run_lmplz(corpus.lines, files.arpa, order, prune, memory, Path(tmp))
    run_build_binary(files.arpa, files.binary, binary_kind, quantize_bits)
    vocabulary = write_unigrams(corpus, files.unigrams)
    write_lexicon(corpus.lexicon, files.lexicon)
    if len(corpus.words):
        corpus.words.write(files.words)
    else:
        files.words.unlink(missing_ok=True)
    version = files_digest([p for p in (files.binary, files.unigrams, files.lexicon, files.words) if p.exists()])
    info = LMInfo(
        prefix=str(files.prefix),
        version=version,
        order=order,
        prune=list(prune),
        ngrams=arpa_counts(files.arpa),
        vocabulary=vocabulary,
        name_keys=len(corpus.lexicon),
        sizes={
            p.name: p.stat().st_size
            for p in (files.arpa, files.binary, files.unigrams, files.lexicon, files.words)
            if p.exists()
        },
        corpus=corpus.stats,
        settings={
            "names": names,
            "rare_max": rare_max,
            "binary_kind": binary_kind,
            "quantize_bits": quantize_bits,
            "words": len(corpus.words),
        },
    )
    previous = read_info(files.prefix)
    record = {"format": FORMAT, **{k: v for k, v in asdict(info).items() if k != "prefix"}}
    if "decoder" in previous:
        record["decoder"] = previous["decoder"]
    write_info(files.prefix, record)
    log.info("LM %s: %s n-grams, binary %d bytes", version, info.ngrams, info.sizes[files.binary.name])
    return info
