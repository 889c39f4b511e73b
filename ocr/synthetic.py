"""Synthetic register lines: names, dates, addresses and abbreviations drawn in many fonts on old paper.

The recognizer trains on the lines of three LECTAUREP volumes; synthetic lines
show it hands and words it never saw (issue 3). Text is sampled to look like
register table cells (short numbers and deed types, names with their first
names, addresses, amounts, and real training-line vocabulary), each string is
drawn in a font that has every one of its glyphs (:mod:`ocr.fonts`), then
degraded like ink on a scanned page and cropped to the recognizer's 48-px line
height.

Transcription conventions follow the corpus: a leading ``^`` marks a
superscript run (``dem^t``) and is drawn as raised small letters, not as a
caret.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ocr.charset import FRENCH_BASE
from ocr.corpus import split_of
from ocr.fonts import PLAIN, PRINT, SCRIPT, STYLE_WEIGHTS, FontFace, discover_fonts, load_faces
from ocr.groundtruth import GroundTruthError, read_alto
from segmentation.crop import LINE_HEIGHT, resize_to_height

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# Register vocabulary that the name lists do not hold.

DEED_TYPES = (
    "Vente",
    "Obligation",
    "Quittance",
    "Bail",
    "Inventaire",
    "Testament",
    "Procuration",
    "Mainlevée",
    "Notoriété",
    "Dépôt",
    "Décharge",
    "Donation",
    "Transport",
    "Mariage",
    "Contrat de mariage",
    "Succession",
    "Prorogation",
    "Désistement",
    "Substitution",
    "Procès Verbal",
    "Liquidation",
    "Partage",
    "Cession",
    "Certificat de propriété",
    "Consentement",
    "Acceptation",
    "Renonciation",
    "Réitération",
    "Ratification",
    "Compte",
    "Echange",
    "Société",
    "Dissolution",
    "Constitution de rente",
    "Délivrance de legs",
    "Inventaire après décès",
    "Bail à loyer",
    "Vente de fonds",
    "Quittance subrogative",
    "Dépôt de pièces",
    "Acte de notoriété",
    "Cahier des charges",
    "Adjudication",
    "Révocation",
    "Autre",
)
PROFESSIONS = (
    "propriétaire",
    "rentier",
    "rentière",
    "négociant",
    "marchand de vin",
    "avocat",
    "notaire",
    "boulanger",
    "ferblantier",
    "entrepreneur",
    "Ingénieur civil",
    "employé",
    "cultivateur",
    "tailleur",
    "cordonnier",
    "menuisier",
    "épicier",
    "horloger",
    "bijoutier",
    "boucher",
    "charcutier",
    "serrurier",
    "maçon",
    "peintre",
    "architecte",
    "médecin",
    "docteur en médecine",
    "pharmacien",
    "libraire",
    "imprimeur",
    "fabricant",
    "commis",
    "journalier",
    "domestique",
    "cuisinière",
    "femme de chambre",
    "couturière",
    "blanchisseuse",
    "lingère",
    "modiste",
    "marchand",
    "fruitier",
    "limonadier",
    "traiteur",
    "aubergiste",
    "capitaine",
    "officier",
    "chef de bataillon",
    "Général de Division",
    "chevalier de la Légion d'honneur",
    "Avocat à la Cour",
    "Directeur",
    "Agent de change",
    "banquier",
    "sans profession",
    "veuve",
    "mineur",
)
STREETS = (
    "St Honoré",
    "de la Paix",
    "de Provence",
    "de Rivoli",
    "Vivienne",
    "Richelieu",
    "du Bac",
    "de Grenelle",
    "St Dominique",
    "de Varennes",
    "du Faubourg St Antoine",
    "du Faubourg St Denis",
    "St Martin",
    "St Denis",
    "de Seine",
    "Jacob",
    "Mazarine",
    "Dauphine",
    "des Petits Champs",
    "Neuve des Petits Champs",
    "de Cléry",
    "Montmartre",
    "Montorgueil",
    "du Temple",
    "St Antoine",
    "de la Verrerie",
    "des Lombards",
    "Mouffetard",
    "de Sèvres",
    "du Cherche Midi",
    "de Vaugirard",
    "d'Enfer",
    "de l'Université",
    "Taitbout",
    "Laffitte",
    "Drouot",
    "Le Peletier",
    "de la Chaussée d'Antin",
    "de Clichy",
    "Blanche",
    "Pigalle",
    "de Lorette",
    "Notre Dame des Victoires",
    "des Bons Enfants",
    "Coquillière",
    "de la Monnaie",
    "de Buci",
    "Galande",
    "de l'Arbre Sec",
    "des Fossés St Germain",
    "du Four",
    "de Tournon",
    "Cassette",
    "de Trévise",
    "Bergère",
    "Poissonnière",
    "de Bondy",
    "d'Astorg",
    "de Miromesnil",
    "du Helder",
    "Louis le Grand",
    "de Choiseul",
    "Ste Anne",
    "des Marais",
    "Vieille du Temple",
    "des Francs Bourgeois",
    "de Turenne",
)
AVENUES = (
    ("Bd", "Haussmann"),
    ("Boulevard", "Montmartre"),
    ("Bd", "St Germain"),
    ("Bd", "Voltaire"),
    ("Boulevard", "des Italiens"),
    ("quai", "Voltaire"),
    ("quai", "des Grands Augustins"),
    ("quai", "de la Tournelle"),
    ("place", "Vendôme"),
    ("place", "Royale"),
    ("place", "du Châtelet"),
    ("avenue", "de l'Opéra"),
    ("avenue", "Trudaine"),
    ("av.", "de Tourville"),
    ("passage", "Tivoli"),
    ("passage", "Choiseul"),
    ("Faub.", "St Antoine"),
    ("Faub.", "St Honoré"),
    ("Faubourg", "Montmartre"),
    ("impasse", "Guéménée"),
    ("Cour", "des Petites Ecuries"),
    ("Chaussée", "d'Antin"),
    ("cité", "Trévise"),
    ("quai", "de Béthune"),
)
TOWNS = (
    "Paris",
    "Versailles",
    "Belleville",
    "Batignolles",
    "Neuilly",
    "Passy",
    "Vaugirard",
    "Montmartre",
    "St Denis",
    "Sceaux",
    "Courbevoie",
    "Vincennes",
    "Charenton",
    "Meaux",
    "Melun",
    "Orléans",
    "Rouen",
    "Lyon",
    "Bordeaux",
    "Marseille",
    "Troyes",
    "Arras",
    "Soissons",
    "Chartres",
    "Londres",
    "Bruxelles",
)
DEPARTMENTS = ("Seine", "Seine et Oise", "Seine et Marne", "Oise", "Aube", "Marne", "Loiret", "Yonne", "Eure", "Nord")
MONTHS = (
    ("janvier", ("Janv.", "Jer", "janv.")),
    ("février", ("Fév.", "Fevr.", "fév.")),
    ("mars", ("Mars", "mars")),
    ("avril", ("Avril", "avr.")),
    ("mai", ("Mai",)),
    ("juin", ("Juin",)),
    ("juillet", ("Juillet", "Juil.", "juil.")),
    ("août", ("Août", "aout")),
    ("septembre", ("7bre", "Sept.", "7^bre")),
    ("octobre", ("8bre", "Oct.", "8^bre")),
    ("novembre", ("9bre", "Nov.", "9^bre")),
    ("décembre", ("Xbre", "10bre", "Déc.", "X^bre")),
)
# Abbreviations as the corpus writes them, flat (dufour, riant) or with ^ superscripts (random-set-1).
ABBREVIATIONS = (
    "demt",
    "dem^t",
    "dt",
    "d^t",
    "Mr",
    "M^r",
    "M.",
    "Me",
    "M^e",
    "Made",
    "Mad^e",
    "Mme",
    "M^me",
    "Mlle",
    "Delle",
    "Madelle",
    "Vve",
    "V^e",
    "Ve",
    "Sr",
    "S^r",
    "Ste",
    "S^te",
    "St",
    "S^t",
    "pr",
    "p^r",
    "Cie",
    "C^ie",
    "épx",
    "ép^x",
    "fe",
    "f^e",
    "Bd",
    "B^d",
    "n°",
    "N°",
    "Nos",
    "suivt",
    "suiv^t",
    "devt",
    "dev^t",
    "moyt",
    "moy^t",
    "Substt",
    "Subst^t",
    "concl",
    "conc^t",
    "ancien",
    "nouveau",
    "-do-",
    "_d°_",
    "d°",
    "Rép.re",
    "1er",
    "1^er",
    "2e",
    "2^e",
    "Sté",
    "S^té",
    "insc^on",
    "liq^on",
    "publ^té",
    "&",
    "&c",
)
# Words with the French letters the three volumes hardly show (œ, ù, ï, ë, ÿ ...), so the model sees them.
RARE_WORDS = (
    "sœur",
    "Sœur",
    "bœuf",
    "vœu",
    "cœur",
    "œuvre",
    "Œuvre",
    "où",
    "Noël",
    "Joël",
    "Anaïs",
    "Héloïse",
    "Zoé",
    "aîné",
    "aînée",
    "naïf",
    "Gaëtan",
    "Raphaël",
    "Israël",
    "Haÿ",
    "L'Haÿ",
    "Citroën",
    "Mme Bœuf",
    "maître",
    "Maître",
    "île",
    "Île de la Cité",
    "fidéï commis",
    "goût",
    "dû",
    "dûe",
    "mûr",
    "Moët",
    "Saül",
)
LINKS = ("à", "de", "et", "par", "pour", "à Mr", "deMr", "au profit de", "épouse de", "Vve de")
TITLES = ("Mr", "Mr", "M.", "M^r", "Made", "Mad^e", "Mme", "M^me", "Delle", "Mlle", "Me", "Vve", "V^e", "Sr")
HEADERS = (
    "NOMS, PRÉNOMS ET DOMICILES DES PARTIES.",
    "NATURE ET ESPÈCE",
    "DES ACTES :",
    "DATES",
    "DATES.",
    "RELATION",
    "DE L'ENREGISTREMENT.",
    "EN MINUTES.",
    "EN BREVETS.",
    "DROITS.",
    "INDICATIONS, SITUATIONS",
    "ET PRIX DES BIENS.",
    "REPERTOIRE",
    "Nos",
    "N.os",
    "ACTES.",
    "Dates.",
    "Droits.",
    "NUMÉROS D'ORDRE",
)

# Accents INSEE strips from surnames, put back on common French endings and syllables.
_ACCENT_RULES = (
    (re.compile(r"IERE$"), "IÈRE"),
    (re.compile(r"ERE$"), "ÈRE"),
    (re.compile(r"EVRE$"), "ÈVRE"),
    (re.compile(r"EGE$"), "ÈGE"),
    (re.compile(r"^([BCDFGLMNPRSTV])E([BCDFGLMNPRSTVZ][AIOUY])"), r"\1É\2"),
    (re.compile(r"OE"), "Œ"),
    (re.compile(r"ETE$"), "ÊTE"),
    (re.compile(r"(?<=[^AEIOU])EE$"), "ÉE"),
    (re.compile(r"ESNE"), "ÊNE"),
)
_PARTICLES = ("de", "du", "de la", "d'", "Le", "La", "De")
_PARTICLE_RE = re.compile(r"\b(?:De|Du|Des)\b(?= )|(?<=De )La\b|(?<=de )La\b")
_SUPERSCRIPT = re.compile(r"\^([^\s,.;:()'\"^]+)")
_SPACE_RE = re.compile(r"\s+")


def strip_accents(text: str) -> str:
    """Return ``text`` without combining accents (``Héloïse`` -> ``Heloise``)."""
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def name_case(name: str) -> str:
    """Return an upper-case name in register capitalization (``JEAN-PIERRE`` -> ``Jean-Pierre``)."""
    # Nobiliary particles stay lower case inside a name: "DE LA FONTAINE" -> "de la Fontaine".
    return _PARTICLE_RE.sub(lambda m: m.group(0).lower(), name.title())


@dataclass
class RegisterVocabulary:
    """What synthetic text is drawn from: names, real training-line words and lines, allowed characters."""

    surnames: list[str]
    firstnames: list[str]
    #: First names written in the training pages, with their counts (19th-century usage).
    historical_firstnames: list[str] = field(default_factory=list)
    #: Cumulative sampling weights of ``historical_firstnames`` (square root of their counts).
    historical_cdf: np.ndarray = field(default_factory=lambda: np.zeros(0))
    words: list[str] = field(default_factory=list)
    #: Cumulative sampling weights of ``words`` (square root of their counts).
    word_cdf: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lines: list[str] = field(default_factory=list)
    printed: list[str] = field(default_factory=list)
    #: Upper-case unaccented form -> accented upper-case form (from the first names and real words).
    accents: dict[str, str] = field(default_factory=dict)
    alphabet: frozenset[str] = frozenset(FRENCH_BASE)


def read_training_texts(gt_dir: Path) -> tuple[list[str], list[str]]:
    """Return (lines, printed lines) of the TRAINING pages under ``gt_dir`` (validation pages excluded)."""
    lines: list[str] = []
    printed: list[str] = []
    if not gt_dir.is_dir():
        log.warning("%s: no ground truth, synthetic text uses the built-in vocabulary only", gt_dir)
        return lines, printed
    for xml in sorted(gt_dir.glob("*/*.xml")):
        if split_of(xml) != "train":
            continue
        try:
            page = read_alto(xml)
        except GroundTruthError as exc:
            log.warning("%s", exc)
            continue
        for ln in page.lines:
            if ln.text:
                (printed if ln.type == "printed" else lines).append(ln.text)
    return lines, printed


def _cdf(weights: np.ndarray) -> np.ndarray:
    total = weights.sum()
    return np.cumsum(weights) / total if total > 0 else np.zeros(0)


def _draw(rng: np.random.Generator, cdf: np.ndarray) -> int:
    """Return an index drawn with the weights whose cumulative sum is ``cdf``."""
    return min(int(np.searchsorted(cdf, rng.random(), side="right")), len(cdf) - 1)


def load_vocabulary(names_dir: Path, gt_dir: Path | None = None) -> RegisterVocabulary:
    """Return the vocabulary of ``names_dir`` (surnames.txt, firstnames.txt) and the training pages of ``gt_dir``."""
    names_dir = Path(names_dir)
    gt_dir = Path(gt_dir) if gt_dir is not None else names_dir.parent / "lectaurep" / "train"

    def read_names(name: str) -> list[str]:
        path = names_dir / name
        if not path.exists():
            raise FileNotFoundError(f"{path}: name list missing (see shared/data/README.md)")
        text = unicodedata.normalize("NFC", path.read_text(encoding="utf-8"))
        return [n.strip() for n in text.splitlines() if n.strip()]

    surnames, firstnames = read_names("surnames.txt"), read_names("firstnames.txt")
    lines, printed = read_training_texts(gt_dir)
    lines = [_SPACE_RE.sub(" ", t) for t in lines]
    alphabet = frozenset(FRENCH_BASE) | {c for t in lines + printed for c in t}

    word_counts = Counter(w for t in lines for w in t.split())
    known_firstnames = set(firstnames)
    accents: dict[str, str] = {}
    for f in firstnames:
        plain = strip_accents(f)
        if plain != f:
            accents.setdefault(plain, f)
    historical: Counter[str] = Counter()
    for w, n in word_counts.items():
        core = w.strip(",.;:()")
        up = core.upper()
        if len(core) > 1 and core[0].isupper() and up in known_firstnames:
            historical[core] += n
        plain = strip_accents(up)
        if plain != up and up.isalpha():
            accents.setdefault(plain, up)
    words = list(word_counts)
    wcounts = np.array([word_counts[w] for w in words], np.float64)
    hist = list(historical)
    hcounts = np.array([historical[h] for h in hist], np.float64)
    return RegisterVocabulary(
        surnames=surnames,
        firstnames=firstnames,
        historical_firstnames=hist,
        # Square root: keep Marie and Louis frequent without drowning the rarer names.
        historical_cdf=_cdf(np.sqrt(hcounts)),
        words=words,
        word_cdf=_cdf(np.sqrt(wcounts)),
        lines=lines,
        printed=printed,
        accents=accents,
        alphabet=alphabet,
    )


class TextSampler:
    """Draws register-like strings (NFC) from a :class:`RegisterVocabulary`."""

    # Kinds of line and how often each is drawn; tuned so lengths follow the real
    # lines (median ~11 characters, a quarter ≤ 3, a long tail of 40–60).
    KINDS = (
        ("number", 0.17),
        ("deed", 0.07),
        ("word", 0.05),
        ("name", 0.10),
        ("date", 0.06),
        ("address", 0.05),
        ("amount", 0.04),
        ("real", 0.24),
        ("composite", 0.19),
        ("header", 0.03),
    )

    def __init__(self, vocab: RegisterVocabulary, max_chars: int = 70) -> None:
        self.vocab = vocab
        self.max_chars = max_chars
        self._kinds = [k for k, _ in self.KINDS]
        p = np.array([w for _, w in self.KINDS])
        if not vocab.lines:
            p[self._kinds.index("real")] = 0
        if not vocab.words:
            p[self._kinds.index("word")] = 0
        self._p = p / p.sum()

    def __call__(self, rng: np.random.Generator) -> str:
        """Return one line of text in NFC, characters restricted to the vocabulary's alphabet."""
        return self.sample(rng)[0]

    def sample(self, rng: np.random.Generator) -> tuple[str, str]:
        """Return (text in NFC, kind of line) — the kind lets the renderer print headers in type."""
        for _ in range(20):
            kind = self._kinds[int(rng.choice(len(self._kinds), p=self._p))]
            text = getattr(self, f"_{kind}")(rng)
            text = unicodedata.normalize("NFC", _SPACE_RE.sub(" ", text).strip())
            if len(text) > self.max_chars:
                text = _cut_at_space(text, self.max_chars)
            if text and all(c in self.vocab.alphabet for c in text):
                return text, kind
        return "Procuration", "deed"

    # -- pieces -------------------------------------------------------------

    def surname(self, rng: np.random.Generator) -> str:
        """Return a surname in a register form: capitalized or upper, accents sometimes restored."""
        raw = self.vocab.surnames[int(rng.integers(len(self.vocab.surnames)))]
        if rng.random() < 0.6:
            raw = self.vocab.accents.get(raw, raw)
            if rng.random() < 0.25:
                for pat, rep in _ACCENT_RULES:
                    raw = pat.sub(rep, raw)
        u = rng.random()
        if u < 0.74:
            name = name_case(raw)
        elif u < 0.94:
            name = raw
        else:
            particle = _PARTICLES[int(rng.integers(len(_PARTICLES)))]
            name = particle + ("" if particle.endswith("'") else " ") + name_case(raw)
        return name

    def firstname(self, rng: np.random.Generator) -> str:
        """Return one first name, mostly from those the training pages use."""
        v = self.vocab
        if len(v.historical_firstnames) and rng.random() < 0.65:
            return v.historical_firstnames[_draw(rng, v.historical_cdf)]
        return name_case(v.firstnames[int(rng.integers(len(v.firstnames)))])

    def firstnames(self, rng: np.random.Generator) -> str:
        """Return one to three first names."""
        return " ".join(self.firstname(rng) for _ in range(int(rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15]))))

    def _pick(self, rng: np.random.Generator, seq: Sequence[str]) -> str:
        return seq[int(rng.integers(len(seq)))]

    def _title(self, rng: np.random.Generator) -> str:
        return self._pick(rng, TITLES)

    # -- kinds --------------------------------------------------------------

    def _number(self, rng: np.random.Generator) -> str:
        u = rng.random()
        if u < 0.45:
            return str(int(rng.integers(1, 32)))
        if u < 0.65:
            return str(int(rng.integers(1, 1000))) + ("." if rng.random() < 0.25 else "")
        if u < 0.85:
            a, b = int(rng.integers(0, 12)), self._pick(rng, ("20", "75", "10", "40", "50", "25", "00", "60"))
            return f"{a}{self._pick(rng, ('.', ' ', '.', ','))}{b}"
        return self._pick(rng, ('"', '" "', "-do-", "d°", "S", "M", f"N°{int(rng.integers(1, 400))}", "Nos", "idem"))

    def _deed(self, rng: np.random.Generator) -> str:
        deed = self._pick(rng, DEED_TYPES)
        if rng.random() < 0.15:
            deed += self._pick(rng, (" par", " à", " de", " au profit de", " (Ste du"))
        return deed

    def _word(self, rng: np.random.Generator) -> str:
        v = self.vocab
        n = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
        return " ".join(v.words[_draw(rng, v.word_cdf)] for _ in range(n))

    def _name(self, rng: np.random.Generator) -> str:
        s = self.surname(rng)
        u = rng.random()
        if u < 0.2:
            return s
        if u < 0.32:
            return f"{self._pick(rng, ('Veuve', 'Vve', 'V^e', 'Ve'))} {s}"
        if u < 0.47:
            return f"{self._title(rng)} {s}"
        if u < 0.55:
            return f"{self._pick(rng, ('Me', 'M^e', 'Mr'))} {s} notaire"
        if u < 0.75:
            by = self._pick(rng, ("par", "par", "au profit de", "auProfit de"))
            return f"{s} ({by} {self._title(rng)} {self.firstnames(rng)})"
        if u < 0.9:
            return f"{self.firstnames(rng)} {s}"
        return f"{s}, {self.firstnames(rng)}"

    def date(self, rng: np.random.Generator) -> str:
        """Return a date as registers write it (``12 janvier 1851``, ``1er 7bre``, ``12 Janv.``)."""
        day_n = int(rng.integers(1, 32))
        day = self._pick(rng, ("1er", "1^er")) if day_n == 1 and rng.random() < 0.6 else str(day_n)
        full, abbrevs = MONTHS[int(rng.integers(12))]
        month = full if rng.random() < 0.35 else (full.capitalize() if rng.random() < 0.5 else self._pick(rng, abbrevs))
        year = str(int(rng.integers(1800, 1940)))
        dot = "." if rng.random() < 0.2 else ""
        u = rng.random()
        if u < 0.35:
            return f"{day}{dot} {month} {year}"
        if u < 0.55:
            return f"{day} {month}"
        if u < 0.68:
            return f"du {day}{dot} {month} {year}{dot}"
        if u < 0.8:
            return f"({self._pick(rng, ('Ste', 'S^te'))} du {day} {month} {year})"
        if u < 0.9:
            return f"{self._pick(rng, TOWNS)} le {day} {month} {year}"
        return f"An {year} mois de {full.capitalize()}"

    def address(self, rng: np.random.Generator) -> str:
        """Return a street address (``rue St Honoré 12``, ``r. de la Paix, 3``, ``Faub. St Antoine``)."""
        num = str(int(rng.integers(1, 180)))
        u = rng.random()
        if u < 0.65:
            street = self._pick(rng, STREETS) if rng.random() < 0.75 else name_case(self.surname(rng))
            kind = self._pick(rng, ("rue", "rue", "rue", "r.", "Rue"))
            head = f"{kind} {street}"
        else:
            kind, street = AVENUES[int(rng.integers(len(AVENUES)))]
            head = f"{kind} {street}"
        v = rng.random()
        if v < 0.3:
            addr = f"{head} {num}"
        elif v < 0.55:
            addr = f"{head}, {num}"
        elif v < 0.8:
            addr = f"{head}, {self._pick(rng, ('n°', 'N°', 'n° ', 'no'))}{num}"
        else:
            addr = head
        w = rng.random()
        if w < 0.25:
            where = self._pick(rng, ("demt à Paris,", "dem^t à Paris,", "à Paris,", "dt à Paris,", "à Paris"))
            addr = f"{where} {addr}"
        elif w < 0.35:
            addr = f"à {self._pick(rng, TOWNS)} ({self._pick(rng, DEPARTMENTS)})"
        return addr

    def amount(self, rng: np.random.Generator) -> str:
        """Return a sum of money (``1500f``, ``2.345,50``, ``150 fr``, ``10,062f50c.``)."""
        n = int(rng.choice([rng.integers(1, 100), rng.integers(100, 10000), rng.integers(1000, 200000)]))
        sep = self._pick(rng, (".", ",", " ", ""))
        digits = f"{n:,}".replace(",", sep) if n >= 1000 else str(n)
        cents = f"{int(rng.integers(0, 100)):02d}"
        u = rng.random()
        if u < 0.25:
            return f"{digits}f"
        if u < 0.4:
            return f"{digits}{self._pick(rng, ('.', ','))}{cents}"
        if u < 0.55:
            return f"{digits} {self._pick(rng, ('fr', 'fr.', 'francs', 'f'))}"
        if u < 0.7:
            return f"{digits}f{cents}{self._pick(rng, ('c', 'c.', ''))}"
        if u < 0.8:
            return f"{digits}^f"
        lead = self._pick(rng, ("de", "pour", "moyt", "moy^t", "somme de"))
        return f"{lead} {digits}{self._pick(rng, ('f', ' f', '^f', ' fr.'))}"

    def _date(self, rng: np.random.Generator) -> str:
        return self.date(rng)

    def _address(self, rng: np.random.Generator) -> str:
        return self.address(rng)

    def _amount(self, rng: np.random.Generator) -> str:
        return self.amount(rng)

    def _real(self, rng: np.random.Generator) -> str:
        """Return a real training line or a run of its words (vocabulary, abbreviations, spacing as written)."""
        line = self._pick(rng, self.vocab.lines)
        words = line.split(" ")
        if len(words) <= 2 or rng.random() < 0.65:
            return line
        n = int(rng.integers(1, len(words)))
        start = int(rng.integers(0, len(words) - n + 1))
        return " ".join(words[start : start + n])

    def _header(self, rng: np.random.Generator) -> str:
        if self.vocab.printed and rng.random() < 0.5:
            return self._pick(rng, self.vocab.printed)
        return self._pick(rng, HEADERS)

    def _composite(self, rng: np.random.Generator) -> str:
        """Return a long table-cell line: a party with first names, profession, address, sum or date."""
        target = int(rng.integers(28, self.max_chars))
        pieces = []
        if rng.random() < 0.6:
            pieces.append(self._name(rng))
        while sum(len(p) + 1 for p in pieces) < target:
            u = rng.random()
            if u < 0.22:
                pieces.append(self._pick(rng, PROFESSIONS) + self._pick(rng, ("", ",", "")))
            elif u < 0.45:
                pieces.append(self.address(rng) + self._pick(rng, (",", "", ".")))
            elif u < 0.55:
                link = self._pick(rng, LINKS)
                pieces.append(f"{link} {self.firstnames(rng)}")
            elif u < 0.65:
                pieces.append(self.amount(rng))
            elif u < 0.72:
                pieces.append(self.date(rng))
            elif u < 0.83:
                pieces.append(self._pick(rng, ABBREVIATIONS))
            elif u < 0.86:
                pieces.append(self._pick(rng, RARE_WORDS))
            elif self.vocab.words:
                pieces.append(self._word(rng))
            else:
                pieces.append(self._deed(rng).lower())
        return " ".join(pieces)


def _cut_at_space(text: str, limit: int) -> str:
    cut = text.rfind(" ", 0, limit + 1)
    return text[: cut if cut > limit // 2 else limit].rstrip()


# ---------------------------------------------------------------------------
# Rendering.


def split_superscripts(text: str) -> list[tuple[str, bool]]:
    """Return ``text`` as (run, is_superscript) pieces; the ``^`` markers are dropped."""
    out: list[tuple[str, bool]] = []
    pos = 0
    for m in _SUPERSCRIPT.finditer(text):
        if m.start() > pos:
            out.append((text[pos : m.start()], False))
        out.append((m.group(1), True))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:].replace("^", ""), False))
    return [(s, sup) for s, sup in out if s]


# Abbreviations clerks write with raised endings (``M^r``, ``dem^t``) whatever the transcription says.
RAISED_ENDINGS = {
    "Mr": "M^r",
    "demt": "dem^t",
    "Made": "Ma^de",
    "Mme": "M^me",
    "Vve": "V^ve",
    "Ve": "V^e",
    "St": "S^t",
    "Ste": "S^te",
    "Me": "M^e",
    "dt": "d^t",
    "pr": "p^r",
    "Cie": "C^ie",
    "Sr": "S^r",
    "Delle": "D^elle",
    "Madelle": "Ma^delle",
    "Mlle": "M^lle",
    "moyt": "moy^t",
    "suivt": "suiv^t",
    "Substt": "Subst^t",
    "épx": "ép^x",
    "Bd": "B^d",
    "fe": "f^e",
    "1er": "1^er",
    "2e": "2^e",
    "Coe": "C^oe",
    "Rép.re": "Rép.^re",
}
_RAISED_RE = re.compile(
    r"(?<![A-Za-zÀ-ÿ^])("
    + "|".join(sorted(map(re.escape, RAISED_ENDINGS), key=len, reverse=True))
    + r")(?![A-Za-zÀ-ÿ^])"
)


def superscript_convention(text: str, rng: np.random.Generator) -> tuple[str, str]:
    """Return (label, text to draw) under one of the corpus's two superscript conventions.

    random-set-1 marks raised letters with ``^`` in the transcription; dufour-1
    and riant-4 write them raised but transcribe them flat (``demt``). Drawn
    text keeps ``^`` where letters are raised; the label keeps it only under the
    first convention, so both readings of a raised ending are taught in their
    real proportions.
    """
    u = rng.random()
    if u < 0.12:
        return text, text
    label = text.replace("^", "")
    if u < 0.6:
        raised = _RAISED_RE.sub(lambda m: RAISED_ENDINGS[m.group(1)], text)
        return label, raised
    return label, label


@dataclass(frozen=True)
class _FontMetrics:
    """Per pixel of font size: ascender (``dlbhk``), x-height, descender (``gpq``) and stroke width."""

    ascender: float
    x_height: float
    descender: float
    stroke: float


@dataclass
class _Drawn:
    """Ink coverage (0–1) of a drawn line, its band and baseline rows, and its stroke width in pixels."""

    mask: np.ndarray
    band_top: int
    band_bottom: int
    baseline: int
    stroke: float


def stroke_width(mask: np.ndarray) -> float:
    """Return the mean stroke width in pixels of a 0–1 ink mask (twice ink area over contour length)."""
    binary = (mask > 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    return 2.0 * float(binary.sum()) / perimeter if perimeter > 0 else 0.0


class LineRenderer:
    """Draws text in a font and degrades it like ink on an old scanned register page."""

    #: Font sizes are quantized to this step (pixels) so loaded faces can be cached.
    SIZE_STEP = 3
    #: Loaded (face, size) pairs kept for reuse.
    MAX_CACHED_FONTS = 400
    #: Narrowest output, in pixels per character of the label (real lines: median ~9.5).
    MIN_PX_PER_CHAR = 3.5

    def __init__(self, faces: Sequence[FontFace], height: int = LINE_HEIGHT) -> None:
        self.faces = list(faces)
        self.height = height
        self._fonts: OrderedDict[tuple[Path, int], ImageFont.FreeTypeFont] = OrderedDict()
        self._metrics: dict[Path, _FontMetrics] = {}

    def font(self, face: FontFace, size: int) -> ImageFont.FreeTypeFont:
        """Return the Pillow font of ``face`` at ``size`` px (least-recently-used cache)."""
        key = (face.path, size)
        f = self._fonts.get(key)
        if f is None:
            # BASIC layout: no shaping engine needed for Latin text, and several times faster.
            f = ImageFont.truetype(str(face.path), size, layout_engine=ImageFont.Layout.BASIC)
            self._fonts[key] = f
            # Each loaded size holds ~0.1 MB of FreeType state: bound the cache.
            if len(self._fonts) > self.MAX_CACHED_FONTS:
                self._fonts.popitem(last=False)
        else:
            self._fonts.move_to_end(key)
        return f

    def metrics(self, face: FontFace) -> _FontMetrics:
        """Return the font's vertical metrics, measured on glyphs, per pixel of font size."""
        m = self._metrics.get(face.path)
        if m is None:
            ref = 100
            f = self.font(face, ref)

            # Medians over single letters: one flourished glyph (a looped g, a tall
            # capital) must not shrink every line drawn in the face.
            def top(s: str) -> float:
                return float(np.median([-f.getbbox(c, anchor="ls")[1] for c in s if c in face.chars] or [60])) / ref

            def bottom(s: str) -> float:
                return float(np.median([f.getbbox(c, anchor="ls")[3] for c in s if c in face.chars] or [20])) / ref

            asc, xh, desc = top("dlbhkf"), top("xuvwnm"), max(bottom("gpqyj"), 0.15 * top("dlbhkf"))
            sample = "".join(c for c in "nominations de Paris 1850" if c in face.chars or c == " ")
            img = Image.new("L", (int(f.getlength(sample)) + 40, 2 * ref), 0)
            ImageDraw.Draw(img).text((20, int(1.3 * ref)), sample, font=f, fill=255, anchor="ls")
            stroke = stroke_width(np.asarray(img, dtype=np.float32) / 255.0) / ref
            m = _FontMetrics(max(asc, 0.3), max(xh, 0.2), max(desc, 0.05), max(stroke, 0.005))
            self._metrics[face.path] = m
        return m

    def draw_mask(self, text: str, face: FontFace, rng: np.random.Generator) -> _Drawn:
        """Return ``text`` drawn in ``face``: ink coverage (0–1 float32), band and baseline rows, stroke width.

        The band is the ascender-to-descender zone; the canvas already holds the
        crop's rows: the band plus a random paper margin above and below (real
        line polygons leave the writing ~half the crop height), widened to any ink
        that pokes out of it (accented capitals, long descenders).
        """
        m = self.metrics(face)
        # Band of 28–44 px before the final resize to 48 px crops (band ≈ 25 px
        # there): the downscale anti-aliases strokes like a scan does.
        band = float(rng.uniform(28, 44))
        size = max(9, int(round(band / (m.ascender + m.descender) / self.SIZE_STEP)) * self.SIZE_STEP)
        font = self.font(face, size)
        sup_font = self.font(face, max(6, int(round(size * 0.62 / self.SIZE_STEP)) * self.SIZE_STEP))
        asc, xh, desc = m.ascender * size, m.x_height * size, m.descender * size
        hb = asc + desc
        space = max(2.0, font.getlength(" ") if " " in face.chars else 0.3 * size)
        word_gap = float(rng.uniform(0.6, 1.5)) * space

        # Lay out word by word so spacing varies like a writer's; superscripts sit near x-height.
        pieces: list[tuple[float, str, bool]] = []
        x = 0.0
        for run, sup in split_superscripts(text):
            f = sup_font if sup else font
            for i, word in enumerate(run.split(" ")):
                if i > 0:
                    x += word_gap * float(rng.uniform(0.8, 1.25))
                if word:
                    pieces.append((x, word, sup))
                    x += f.getlength(word)
        margin_top = hb * float(rng.uniform(0.15, 0.9))
        margin_bottom = hb * float(rng.uniform(0.1, 0.6))
        pad = int(size * 0.6) + 4
        width = int(np.ceil(x)) + 2 * pad
        baseline = int(asc + max(margin_top, 0.45 * asc)) + 2
        height = baseline + int(desc + max(margin_bottom, 0.6 * desc)) + 2
        img = Image.new("L", (max(width, 8), height), 0)
        draw = ImageDraw.Draw(img)
        # Each word sits a little off the line, as a pen lifted between words lands again.
        jitter = hb * float(rng.uniform(0.0, 0.04))
        for px, word, sup in pieces:
            y = baseline + float(rng.normal(0.0, jitter)) - (xh * float(rng.uniform(0.75, 1.05)) if sup else 0.0)
            draw.text((pad + px, y), word, font=sup_font if sup else font, fill=255, anchor="ls")
        band_top, band_bottom = baseline - int(round(asc)), baseline + int(round(desc))
        top, bottom = band_top - int(margin_top), band_bottom + int(margin_bottom)
        ink_box = img.getbbox()
        if ink_box is not None:
            top, bottom = min(top, ink_box[1] - 1), max(bottom, ink_box[3] + 1)
        top, bottom = max(top, 0), min(bottom, height)
        # Strokes of the lines above and below leaking into the crop, as real polygons let them.
        if rng.random() < 0.25:
            self._neighbour(draw, font, face, rng, baseline - int(hb * rng.uniform(1.05, 1.35)), width)
        if rng.random() < 0.15:
            self._neighbour(draw, font, face, rng, baseline + int(hb * rng.uniform(1.1, 1.4)), width)
        mask = np.asarray(img, dtype=np.float32)[top:bottom] * (1.0 / 255.0)
        return _Drawn(mask, band_top - top, band_bottom - top, baseline - top, m.stroke * size)

    @staticmethod
    def _neighbour(
        draw: ImageDraw.ImageDraw,
        font: ImageFont.FreeTypeFont,
        face: FontFace,
        rng: np.random.Generator,
        baseline: int,
        width: int,
    ) -> None:
        letters = [c for c in "bdfghjklpqtyfgj" if c in face.chars] or ["l"]
        word = "".join(letters[int(i)] for i in rng.integers(0, len(letters), int(rng.integers(2, 8))))
        x = float(rng.uniform(0, max(1, width - 10)))
        draw.text((x, baseline), word, font=font, fill=255, anchor="ls")

    def render(self, text: str, face: FontFace, rng: np.random.Generator, label_chars: int | None = None) -> np.ndarray:
        """Return ``text`` drawn in ``face``: a degraded uint8 crop of height ``self.height``, dark ink on light paper.

        ``label_chars`` is the length of the label the crop trains (``text`` less
        its ``^`` markers, by default), for the minimum width per character.
        """
        drawn = self.draw_mask(text, face, rng)
        band_top, band_bottom = drawn.band_top, drawn.band_bottom
        # Pen width: whatever the face's own weight, aim at ~1 px at the final 48-px scale
        # before blur and resampling, which gives what real crops measure with
        # stroke_width after binarization (median 2.0 px, 10–90 %: 1.6–3.3).
        scale = self.height / drawn.mask.shape[0]
        target = max(0.75, float(rng.lognormal(np.log(0.95), 0.3))) / scale
        mask = _set_stroke(drawn.mask, target - drawn.stroke)
        mask = _warp(mask, rng, drawn.baseline, band_bottom - band_top)
        # Columns: the ink of the text's own band (not a neighbour's stray strokes) plus a margin.
        hb = band_bottom - band_top
        cols = np.flatnonzero(mask[max(band_top, 0) : band_bottom].max(axis=0) > 0.1)
        if cols.size == 0:
            cols = np.array([0, mask.shape[1] - 1])
        left = cols[0] - int(rng.integers(1, max(2, int(hb * 0.3))))
        right = cols[-1] + int(rng.integers(1, max(2, int(hb * 0.3))))
        crop = _crop_pad(mask, 0, mask.shape[0], left, right)
        # Final geometry: height 48; hands run condensed or wide (real median ~9.5 px per character).
        out = resize_to_height(crop, self.height)
        stretch = float(rng.uniform(0.65, 1.1))
        # Never narrower than MIN_PX_PER_CHAR: the CTC label must fit the frames (stride 2, 0.8x augmentation).
        min_width = int(np.ceil(self.MIN_PX_PER_CHAR * (label_chars or len(text))))
        width = max(8, round(out.shape[1] * stretch), min_width)
        interp = cv2.INTER_AREA if width < out.shape[1] else cv2.INTER_LINEAR
        out = cv2.resize(out, (width, self.height), interpolation=interp)
        # Thin strokes lose coverage in the downscale; a pen still inks them fully dark.
        out = np.clip(out * (1.0 / max(0.3, 0.85 * float(out.max()))), 0, 1)
        out = _rules(out, rng)
        return _ink_on_paper(out, rng)


def _crop_pad(mask: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """Return mask[top:bottom, left:right+1], padded with zeros where the box leaves the mask."""
    h, w = mask.shape
    out = mask[max(top, 0) : min(bottom, h), max(left, 0) : min(right + 1, w)]
    pads = (max(0, -top), max(0, bottom - h), max(0, -left), max(0, right + 1 - w))
    if any(pads):
        out = cv2.copyMakeBorder(out, *pads, cv2.BORDER_CONSTANT, value=0)
    return out


def _set_stroke(mask: np.ndarray, delta: float) -> np.ndarray:
    """Return ``mask`` with strokes about ``delta`` pixels thicker (dilation) or thinner (erosion)."""
    k = int(round(abs(delta)))
    if k < 1:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k + 1, k + 1))
    if delta > 0:
        return cv2.dilate(mask, kernel)
    thin = cv2.erode(mask, kernel)
    # Never erode a face into broken hairlines: keep most of the ink.
    return thin if thin.sum() > 0.35 * mask.sum() else mask


def _smooth_field(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Return a smooth random field in [-1, 1] of shape (h, w) varying over ``cell`` pixels (cheap: upsampled noise)."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    return cv2.resize(rng.uniform(-1, 1, (gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)


def _warp(mask: np.ndarray, rng: np.random.Generator, baseline: int, band: int) -> np.ndarray:
    """Return ``mask`` slanted, with a wandering baseline and elastic wobble, in one remap."""
    h, w = mask.shape
    shear = float(np.clip(rng.normal(0.08, 0.17), -0.3, 0.5))
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    # Inverse map: destination (x, y) samples source (x + shear * (y - baseline), y + wander).
    map_x = xs + shear * (ys - baseline)
    wander = _smooth_field(rng, 1, w, float(rng.uniform(60, 250)))[0] * band * float(rng.uniform(0, 0.08))
    map_y = ys + wander[None, :]
    if rng.random() < 0.7:
        cell = float(rng.uniform(5, 12))
        amp = float(rng.uniform(0.5, 2.5)) * band / 40
        map_x += _smooth_field(rng, h, w, cell) * amp
        map_y += _smooth_field(rng, h, w, cell) * amp
    return cv2.remap(mask, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _rules(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return ``mask`` with the table's ruled lines and cell borders the crop sometimes catches."""
    h, w = mask.shape
    if rng.random() < 0.25:
        # Horizontal rule near the top or bottom edge, sometimes only part of the width.
        y = int(rng.integers(0, 5)) if rng.random() < 0.5 else int(rng.integers(h - 6, h))
        x0 = 0 if rng.random() < 0.7 else int(rng.integers(0, max(1, w // 2)))
        x1 = w if rng.random() < 0.7 else int(rng.integers(x0 + 1, w + 1))
        tilt, ink, thick = int(rng.integers(-1, 2)), float(rng.uniform(0.4, 1.0)), int(rng.integers(1, 3))
        cv2.line(mask, (x0, y), (x1, y + tilt), ink, thick)
    if rng.random() < 0.3:
        # Vertical cell border at one end, mostly the left one (the column rule before the text).
        x = int(rng.integers(0, 4)) if rng.random() < 0.7 else int(rng.integers(max(0, w - 4), w))
        y0, tilt = int(rng.integers(0, h // 3)), int(rng.integers(-1, 2))
        cv2.line(mask, (x, y0), (x + tilt, h), float(rng.uniform(0.5, 1.0)), int(rng.integers(1, 4)))
    return mask


def _ink_on_paper(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return the uint8 image of ink coverage ``mask`` on aged paper: tone, stains, ink fading, blur, grain."""
    h, w = mask.shape
    paper = float(rng.uniform(165, 228))
    tone = paper + _smooth_field(rng, h, w, float(rng.uniform(20, 80))) * float(rng.uniform(2, 14))
    if rng.random() < 0.15:
        # A stain or foxing spot: a soft darker blob.
        cx, cy = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        r = float(rng.uniform(6, 30))
        yy, xx = np.ogrid[:h, :w]
        tone -= float(rng.uniform(10, 45)) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    ink = float(rng.uniform(5, min(95, paper - 90)))
    # Iron-gall ink fades unevenly along the line as the pen runs dry.
    ink_map = ink + _smooth_field(rng, 1, w, float(rng.uniform(30, 150))) * float(rng.uniform(0, 30))
    cover = mask ** float(rng.uniform(0.6, 1.2))
    img = tone * (1 - cover) + ink_map * cover
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.4, 1.0)))
    img = img + rng.standard_normal((h, w), dtype=np.float32) * float(rng.uniform(1.5, 7))
    out = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.2:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 85))])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return out


# ---------------------------------------------------------------------------


class SyntheticLines:
    """Generator of synthetic register lines: ``SyntheticLines(names_dir)(rng, n)`` -> [(crop, text)]."""

    def __init__(self, names_dir: Path, fonts: list[Path] | None = None, gt_dir: Path | None = None) -> None:
        """Load names (and training-page vocabulary beside them) and every usable font (or ``fonts``)."""
        self.vocab = load_vocabulary(Path(names_dir), gt_dir)
        self.sampler = TextSampler(self.vocab)
        paths = discover_fonts() if fonts is None else [Path(f) for f in fonts]
        self.faces = load_faces(paths, sorted(self.vocab.alphabet))
        if not self.faces:
            raise RuntimeError(
                "no usable font found: install the font packages of scripts/apt-packages.txt (fonts-dancingscript ...)"
            )
        self.renderer = LineRenderer(self.faces)
        by_style: dict[str, list[FontFace]] = {}
        for face in self.faces:
            by_style.setdefault(face.style, []).append(face)
        # Draw a style, then a family, then one of its files: Junicode's 38 files weigh as one hand.
        self._styles = [s for s in (SCRIPT, PRINT, PLAIN) if s in by_style]
        p = np.array([STYLE_WEIGHTS[s] for s in self._styles])
        self._style_p = p / p.sum()
        self._families = {s: sorted({f.family for f in by_style[s]}) for s in self._styles}
        self._family_faces = {
            (s, fam): [f for f in by_style[s] if f.family == fam] for s in self._styles for fam in self._families[s]
        }
        log.info(
            "synthetic lines: %d fonts in %d families (%s)",
            len(self.faces),
            sum(len(v) for v in self._families.values()),
            ", ".join(f"{s}: {len(self._families[s])}" for s in self._styles),
        )

    def pick_face(self, rng: np.random.Generator, text: str, style: str | None = None) -> FontFace | None:
        """Return a font that draws every character of ``text`` (style, family, file drawn at random), or None.

        ``style`` forces the style class (when installed) instead of drawing it.
        """
        for _ in range(6):
            st = style if style in self._families else self._styles[int(rng.choice(len(self._styles), p=self._style_p))]
            fams = self._families[st]
            faces = self._family_faces[(st, fams[int(rng.integers(len(fams)))])]
            face = faces[int(rng.integers(len(faces)))]
            if face.covers(text):
                return face
        able = [f for f in self.faces if f.covers(text)]
        return able[int(rng.integers(len(able)))] if able else None

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, str, FontFace]:
        """Return one (crop, text, font) triple."""
        for _ in range(50):
            text, kind = self.sampler.sample(rng)
            label, drawn = superscript_convention(text, rng)
            # Column headers are printed in the real registers.
            style = PRINT if kind == "header" and rng.random() < 0.8 else None
            face = self.pick_face(rng, drawn, style)
            if face is not None:
                break
        else:
            raise RuntimeError("no installed font can draw the sampled texts")
        img = self.renderer.render(drawn, face, rng, label_chars=len(label))
        return img, label, face

    def __call__(self, rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, str]]:
        """Return ``n`` (uint8 crop of height 48, NFC text) synthetic register lines."""
        out = []
        for _ in range(n):
            img, text, _face = self.sample(rng)
            out.append((img, text))
        return out
