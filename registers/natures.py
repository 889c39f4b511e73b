"""The nature of an act, read from the nature column into the register's own vocabulary.

The words are those of the nature column of the LECTAUREP training pages
(1830–1939), most frequent first; abbreviations the clerks use (``Substt``,
``Certif``, ``Requison``, ``Déclon``) are listed with their word. Matching is
rapidfuzz's ratio on folded words, so a misread letter still finds the word;
the first word of the cell that is a nature decides (``Dépôt de testament``
is a dépôt), and a few natures take the word after them (``Contrat de
mariage``, ``Certificat de propriété``).
"""

from __future__ import annotations

import re

from rapidfuzz import fuzz

from registers.keys import fold

#: Nature → folded spellings and abbreviations seen in the training transcriptions.
NATURES: dict[str, tuple[str, ...]] = {
    "procuration": ("procuration", "procon", "procurat"),
    "dépôt": ("depot", "depotde"),
    "mainlevée": ("mainlevee", "mainleve"),
    "notoriété": ("notoriete", "notoriet", "notoriètérectifve"),
    "quittance": ("quittance", "quittce", "quitt"),
    "vente": ("vente",),
    "certificat": ("certificat", "certifat", "certif", "certificatde", "certification", "certifon", "cion"),
    "substitution": ("substitution", "substt", "subst", "subt"),
    "obligation": ("obligation", "oblig", "obligon"),
    "décharge": ("decharge",),
    "inventaire": ("inventaire", "invent"),
    "donation": ("donation",),
    "procès-verbal": ("proces", "verbal", "proces-verbal"),
    "bail": ("bail",),
    "transport": ("transport",),
    "prorogation": ("prorogation",),
    "désistement": ("desistement",),
    "contrat": ("contrat", "contratde"),
    "cession": ("cession",),
    "testament": ("testament", "olographe"),
    "mandat": ("mandat",),
    "délivrance de legs": ("delivrance", "legs"),
    "ratification": ("ratification",),
    "consentement": ("consentement",),
    "déclaration": ("declaration", "declon", "decl"),
    "réquisition": ("requisition", "requison"),
    "autorisation": ("autorisation",),
    "notification": ("notification",),
    "partage": ("partage",),
    "compte": ("compte",),
    "cahier des charges": ("cahier",),
    "statuts": ("statuts",),
    "renonciation": ("renonciation",),
    "révocation": ("revocation",),
    "récépissé": ("recepisse",),
    "prêt": ("pret",),
    "acte respectueux": ("respectueux",),
    "envoi en possession": ("envoi",),
    "acceptation": ("acceptation",),
    "transaction": ("transaction",),
    "liquidation": ("liquidation", "liquidon"),
    "règlement": ("reglement",),
    "échange": ("echange",),
    "reconnaissance": ("reconnaissance",),
    "confirmation": ("confirmation",),
    "approbation": ("approbation", "d'approbation"),
    "ouverture": ("ouverture",),
    "délibération": ("deliberation", "dèlibèraton"),
    "apport": ("apport",),
    "remploi": ("remploi",),
}
#: A nature and the next word that makes it a nature of its own.
QUALIFIED: dict[tuple[str, str], str] = {
    ("contrat", "mariage"): "contrat de mariage",
    ("certificat", "propriete"): "certificat de propriété",
    ("certificat", "vie"): "certificat de vie",
    ("certificat", "signature"): "certificat de signature",
    ("compte", "tutelle"): "compte de tutelle",
    ("dépôt", "pieces"): "dépôt de pièces",
    ("dépôt", "testament"): "dépôt de testament",
}
_WORDS = {spelling: nature for nature, spellings in NATURES.items() for spelling in spellings}
_TOKEN = re.compile(r"[a-z][a-z'^-]+")


def _word_nature(word: str) -> str | None:
    if word in _WORDS:
        return _WORDS[word]
    if len(word) < 5:
        return None
    best, score = None, 0.0
    for spelling, nature in _WORDS.items():
        if len(spelling) >= 5:
            s = fuzz.ratio(word, spelling)
            if s > score:
                best, score = nature, s
    return best if score >= 85 else None


def act_nature(text: str) -> str | None:
    """Return the nature of an act from its nature cell (``Contrat de Mariage`` → ``contrat de mariage``), or None."""
    words = [w.strip("'^-") for w in _TOKEN.findall(fold(text).replace("^", ""))]
    for i, word in enumerate(words):
        nature = _word_nature(word)
        if nature is None:
            continue
        for later in words[i + 1 : i + 3]:
            qualified = QUALIFIED.get((nature, later))
            if qualified:
                return qualified
        return nature
    return None
