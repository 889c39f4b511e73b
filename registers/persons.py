"""Persons named in an entry's names column: surname, first names, title, domicile.

A répertoire names the main party first, surname then first names in
parentheses (``Gelot (par Mr Joseph) Md de Meubles, demt à Paris``) or after
``par`` (``Muret par. Veuve Gabriel Frédéric``); other parties follow a title
(``à Mr Pierre Théophile Gamard``, ``Made Plon``) or come as first names then
a surname (``à Joseph Tiné``). Which capitalized word is a first name, which
a surname, and which merely a place or a common word is what the names LM
already knows: the INSEE lists in its lexicon (``lm.names.NameLexicon``, name
classes ``N``/``P``) and the register words of its unigram list (a word the
clerks also write in lower case — ``rue``, ``veuve``, ``propre`` — is no
surname). Column and position do the rest: only the names column is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from registers.keys import fold
from registers.layout import Box, RegisterLine

MODELS = Path(__file__).resolve().parent.parent / "models"

#: Titles as written (folded, ``^`` and dots removed) → the title recorded.
TITLES: dict[str, str] = {
    "m": "M.", "mr": "M.", "monsieur": "M.", "sr": "M.", "sieur": "M.",
    "mme": "Mme", "made": "Mme", "mad": "Mme", "mde": "Mme", "mame": "Mme", "madame": "Mme",
    "mlle": "Mlle", "melle": "Mlle", "madelle": "Mlle", "mademoiselle": "Mlle", "mdelle": "Mlle",
    "dlle": "Dlle", "delle": "Dlle", "demoiselle": "Dlle",
    "vve": "Veuve", "veuve": "Veuve", "ve": "Veuve",
    "me": "Me", "mtre": "Me", "maitre": "Me",
}  # fmt: skip
PARTICLES = frozenset({"de", "du", "des", "d'", "le", "la", "van", "von", "del", "di"})
# Places and words of addresses that are also INSEE surnames; register words the unigram list misses.
_NOT_NAMES = frozenset(
    "paris seine france saint st ste sainte notre dame rue place boulevard bd boul avenue av quai passage impasse "
    "faubourg fg cite villa allee chaussee tribunal civil etat premiere instance greffe succession societe union "
    "compagnie cie banque ville commune conseil famille prefet ministre maire chambre etude suite do id idem "
    "xxx nord sud est ouest ct cte vve ppre propre md mde marchand rentier rentiere sans profession "
    "janvier fevrier mars avril mai juin juillet aout septembre octobre novembre decembre an mois "
    "caisse credit foncier lyon versailles marseille belgique angleterre "
    "susd susdit susdite susdits led lad lesd ledit ladite".split()
)
_SKIP_IN_PARENS = frozenset("par pour le la les mandataire de du des heritiers et representants mineur dumineur "
                            "apres deces au profit auprofit a à requete".split())  # fmt: skip
_TOKEN = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ][A-Za-zÀ-ÖØ-öø-ÿ'’^\-]*|[()]")
_GLUED = re.compile(r"^(par|de|du|des|au|à|a|et|le|la|d'|rue|pour)(?=[A-ZÀ-Ý])")
_DOMICILE = re.compile(
    r"\b(?:dem(?:eurant|\^?t|t)|dom(?:icili[ée]e?)?\.?)\s+(?:à\s+)?(?=[A-ZÀ-Ý])|\b(?:à|de)\s+(?=[A-ZÀ-Ý])"
    r"|(?=\b(?:rue|place|quai|boulevard|boul|bd|faubourg|fg|cité|avenue|av|passage|impasse)\b)"
)

_DOMICILE_END = re.compile(
    r"\s(?:pour|au ?profit|auProfit|et de|par|requête|d'une?|le \d|arrivée?|voir|à l'|dont|comme|à|de \d+)\b|[;)]"
    r"|\b(?:M\^?r|M\^?me|Ma\^?me|Made|Madelle|Mlle|M\.|Mr|Vve|Veuve)(?=[\s.])"
)


@dataclass
class Person:
    """A person of an entry: names, title, domicile; offsets of the surname into the cell text; box in pixels."""

    surname: str
    first_names: str = ""
    title: str = ""
    domicile: str = ""
    confidence: float = 0.0
    start: int = 0  # offset of the surname in the names cell's text
    end: int = 0
    line_id: str = ""
    box: Box = (0, 0, 0, 0)
    nbest: list[str] = field(default_factory=list)
    role: str = "party"  # "party" (the act's first-named), "other"


@dataclass
class _Tok:
    text: str
    start: int
    end: int
    line: int  # index of the cell line

    @property
    def key(self) -> str:
        return fold(self.text).replace("^", "").replace(".", "").replace("’", "'")


@dataclass
class NameKnowledge:
    """What the names LM knows: name classes by upper-case key, and the register's common (lower-case) words."""

    classes: dict[str, str]
    common: frozenset[str]

    def is_firstname(self, word: str) -> bool:
        """Return whether a capitalized word is an INSEE first name."""
        return word[:1].isupper() and "P" in self.classes.get(word.upper(), "")

    def is_surname(self, word: str) -> bool:
        """Return whether a word is in the INSEE surname list (any case)."""
        return "N" in self.classes.get(word.upper(), "")

    def is_common(self, word: str) -> bool:
        """Return whether a word is a register word or a place rather than a name."""
        key = fold(word).strip("'^.-")
        return key in self.common or key in _NOT_NAMES


@lru_cache(maxsize=2)
def load_knowledge(models: Path = MODELS) -> NameKnowledge:
    """Return the shipped LM's name classes and common words (``names.lexicon.txt.gz``, ``names.unigrams.txt``)."""
    from lm.build import read_lexicon

    lexicon_path = models / "names.lexicon.txt.gz"
    classes = read_lexicon(lexicon_path).classes if lexicon_path.exists() else {}
    unigrams = models / "names.unigrams.txt"
    common: set[str] = set()
    if unigrams.exists():
        for word in unigrams.read_text(encoding="utf-8").split():
            core = word.strip(".,;:()\"'-")
            if core and core.islower() and core.isalpha() and len(core) > 1:
                common.add(fold(core))
    return NameKnowledge(classes, frozenset(common))


def tokenize(text: str) -> list[_Tok]:
    """Return the word tokens and parentheses of a cell's text with offsets; glued words split (``parMr``)."""
    out: list[_Tok] = []
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    for m in _TOKEN.finditer(text):
        line = sum(1 for s in line_starts if s <= m.start()) - 1
        word, start = m.group(0), m.start()
        glued = _GLUED.match(word)
        if glued and len(word) > glued.end() + 1:
            out.append(_Tok(word[: glued.end()], start, start + glued.end(), line))
            word, start = word[glued.end() :], start + glued.end()
        word = word.rstrip("'’-")
        out.append(_Tok(word, start, start + len(word), line))
    return out


def _namelike(tok: _Tok, know: NameKnowledge) -> bool:
    t = tok.text.replace("^", "")
    return (
        len(t) >= 2
        and t[0].isupper()
        and tok.key not in TITLES
        and not know.is_common(t)
        and sum(c.isalpha() for c in t) >= 2
        and not (t.isupper() and len(t) <= 3 and not know.is_surname(t))
    )


def _title(tok: _Tok) -> str | None:
    return TITLES.get(tok.key) if tok.text[:1].isupper() else None


def _surname_run(toks: list[_Tok], i: int, know: NameKnowledge) -> int:
    """Return the end of the surname starting at ``i``: particles and name-like words (``Caillard de Beauvoir``)."""
    j = i
    while j < len(toks):
        tok = toks[j]
        if _namelike(tok, know) and (j == i or not know.is_firstname(tok.text) or know.is_surname(tok.text)):
            j += 1
        elif tok.key in PARTICLES and j + 1 < len(toks) and _namelike(toks[j + 1], know):
            j += 1
        else:
            break
        if j - i >= 4:
            break
    return j


def _first_names(toks: list[_Tok], i: int, know: NameKnowledge) -> tuple[list[_Tok], int]:
    names = []
    while i < len(toks):
        word = toks[i].text
        # Inside a run of first names a clerk may write one in lower case ("Pierre hyacinthe Théophile").
        if not (know.is_firstname(word) or (names and know.is_firstname(word[:1].upper() + word[1:]))):
            break
        names.append(toks[i])
        i += 1
    return names, i


def _lead(toks: list[_Tok], know: NameKnowledge) -> tuple[Person | None, set[int]]:
    """Return the act's first-named party (the cell's opening surname) and the token indices it used."""
    for start in range(min(len(toks), 3)):
        tok = toks[start]
        if tok.key in PARTICLES and start + 1 < len(toks) and _namelike(toks[start + 1], know):
            break
        if _namelike(tok, know):
            break
        if tok.text not in ("(",) and tok.key not in PARTICLES:
            return None, set()
    else:
        return None, set()
    if toks[start].line != toks[0].line:
        return None, set()
    end = _surname_run(toks, start + (toks[start].key in PARTICLES), know)
    if end == start:
        return None, set()
    # In "Messager Jean André Emile Charles" the run swallowed the first names: the known first names after one.
    surname_end = end
    while surname_end - start > 1 and know.is_firstname(toks[surname_end - 1].text):
        surname_end -= 1
    if all(t.key in PARTICLES for t in toks[start:surname_end]):
        surname_end = end  # "d'Aubin": the name after a particle is the surname, even when it is a first name too
    used = set(range(start, end))
    person = Person(
        " ".join(t.text for t in toks[start:surname_end]), start=toks[start].start, end=toks[surname_end - 1].end
    )
    first = toks[surname_end:end]
    j = end
    # "(par Mr Joseph)", "par. Veuve Gabriel", "après décès de André": skip fillers, then read first names.
    steps = 0
    while j < len(toks) and steps < 8 and not first:
        tok = toks[j]
        title = _title(tok)
        if title:
            person.title = person.title or title
        elif tok.text == "(" or tok.key in _SKIP_IN_PARENS:
            pass
        else:
            break
        used.add(j)
        j += 1
        steps += 1
    if not first:
        first, j2 = _first_names(toks, j, know)
        used.update(range(j, j2))
    person.first_names = " ".join(t.text for t in first)
    return person, used


def _others(toks: list[_Tok], used: set[int], know: NameKnowledge) -> list[Person]:
    """Return the other persons: a title then names, or first names then a surname."""
    people = []
    i = 0
    while i < len(toks):
        if i in used:
            i += 1
            continue
        tok = toks[i]
        title = _title(tok)
        j = i + 1 if title else i
        first, k = _first_names(toks, j, know)
        # "Notre Dame", "St Louis", "rue Jean Jaurès": a first name after a place word names a place.
        after_place = i > 0 and (toks[i - 1].key in _NOT_NAMES or toks[i - 1].key in ("st", "ste", "rue"))
        if not title and (not first or after_place):
            i += 1
            continue
        end = _surname_run(toks, k, know)
        if end == k and first and title and len(first) > 1 and not know.is_firstname(first[-1].text[:1] + "x"):
            # "Made Plon": the last word after a title is the surname even when it is also a first name.
            k -= 1
            first = first[:-1]
            end = _surname_run(toks, k, know) or k + 1
        parts = toks[k:end]
        if (
            end == k
            or all(t.key in PARTICLES for t in parts)
            or (
                # "Veuve de Nicolas": the husband's first name, not a surname.
                parts[0].key in PARTICLES and len(parts) == 2 and know.is_firstname(parts[1].text)
            )
        ):
            i = max(end, i + 1)
            continue
        person = Person(
            " ".join(t.text for t in toks[k:end]),
            " ".join(t.text for t in first),
            title or "",
            start=toks[k].start,
            end=toks[end - 1].end,
            role="other",
        )
        people.append(person)
        i = end
    return people


def _domicile(text: str, person: Person, next_start: int) -> str:
    """Return the place after the person's names (``demt à Paris, rue ...``), up to the next person or 80 chars."""
    tail = text[person.end : min(next_start, person.end + 120)]
    know = load_knowledge()
    # "demt à", "demeurant", "domicilié" say it outright; "à ...", "de ...", "rue ..." only when they do not.
    strong = [m for m in _DOMICILE.finditer(tail) if m.group(0)[:3].lower() in ("dem", "dom")]
    for m in strong or _DOMICILE.finditer(tail):
        if m.start() > 100:
            return ""
        word = re.match(r"[^\s,.;()]+", tail[m.end() :])
        # "à Armand du Peyrat", "de Madelaine": a person follows, not a place.
        w = word.group(0) if word else ""
        if w and ((know.is_firstname(w) and not know.is_common(w)) or fold(w).strip("^.") in TITLES):
            continue
        break
    else:
        return ""
    place = tail[m.end() :]
    place = _DOMICILE_END.split(place)[0]
    return " ".join(place.split()).strip(" ,.&")[:60]


def _words_within(line: RegisterLine, start: int, end: int) -> list[tuple[str, Box, float]]:
    """Return the line's words (text, box, confidence) overlapping characters [start, end); none when the
    words do not spell the line's text (offsets would not map onto them)."""
    if not line.words or " ".join(w[0] for w in line.words) != line.text:
        return []
    out, pos = [], 0
    for word in line.words:
        if pos < end and pos + len(word[0]) > start:
            out.append(word)
        pos += len(word[0]) + 1
    return out


def _box_of(line: RegisterLine, start: int, end: int) -> Box:
    """Return the box of characters [start, end) of a line: its words' boxes, else a share of the line box."""
    x0, y0, x1, y1 = line.box
    boxes = [box for _, box, _ in _words_within(line, start, end)]
    if boxes:
        return (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
    n = max(len(line.text), 1)
    return int(x0 + (x1 - x0) * start / n), y0, int(x0 + (x1 - x0) * end / n), y1


def _word_confidence(line: RegisterLine, start: int, end: int) -> float:
    confs = [conf for _, _, conf in _words_within(line, start, end)]
    return min(confs) if confs else line.confidence


def _nbest(line: RegisterLine, start: int, end: int, surname: str) -> list[str]:
    """Return the other spellings the line's n-best readings give at the surname's place."""
    out: list[str] = []
    for alt in line.nbest:
        best, overlap = None, 0
        for m in re.finditer(r"\S+", alt):
            ov = min(m.end(), end) - max(m.start(), start)
            if ov > overlap:
                best, overlap = m.group(0).strip(".,;:()"), ov
        if best and best != surname and best not in out:
            out.append(best)
    return out[:4]


def find_persons(cell_lines: list[RegisterLine], know: NameKnowledge | None = None) -> list[Person]:
    """Return the persons of a names cell (its lines in reading order), offsets into ``"\\n".join(texts)``."""
    know = know or load_knowledge()
    text = "\n".join(ln.text for ln in cell_lines)
    toks = tokenize(text)
    if not toks:
        return []
    lead, used = _lead(toks, know)
    people = ([lead] if lead else []) + _others(toks, used, know)
    people.sort(key=lambda p: p.start)
    offsets = [0]
    for ln in cell_lines:
        offsets.append(offsets[-1] + len(ln.text) + 1)
    for n, person in enumerate(people):
        # As written ("d'Aubin", "DeNeuilly"), across a line break as one space.
        person.surname = " ".join(text[person.start : person.end].split())
        k = max(i for i in range(len(cell_lines)) if offsets[i] <= person.start)
        line = cell_lines[k]
        s, e = person.start - offsets[k], min(person.end - offsets[k], len(line.text))
        person.line_id = line.id
        person.box = _box_of(line, s, e)
        in_list = 1.0 if all(know.is_surname(p) for p in re.findall(r"[^\s'’-]{3,}", person.surname)) else 0.8
        person.confidence = round(max(0.0, min(1.0, _word_confidence(line, s, e) * in_list)), 4)
        person.nbest = _nbest(line, s, e, person.surname)
        next_start = people[n + 1].start if n + 1 < len(people) else len(text)
        person.domicile = _domicile(text, person, next_start)
    return people
