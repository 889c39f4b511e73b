"""Fonts for synthetic register lines: discovery, style class and per-font glyph coverage.

A font is only handed a string it can draw: coverage comes from the font's
cmap (fontTools) and is confirmed by Pillow, because some faces map a code
point to an empty glyph (a missing ``œ`` would teach the model that a blank
gap reads ``œ``).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fontTools.ttLib import TTFont, TTLibError
from PIL import ImageFont

log = logging.getLogger(__name__)
# Several Debian faces carry a padded 'post' table; fontTools warns about each on load, harmlessly.
logging.getLogger("fontTools.ttLib.tables._p_o_s_t").setLevel(logging.ERROR)

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts")
FONT_SUFFIXES = (".ttf", ".otf")

#: Style classes, drawn with these weights: registers are handwritten, with printed headers.
SCRIPT, PRINT, PLAIN = "script", "print", "plain"
STYLE_WEIGHTS = {SCRIPT: 0.8, PRINT: 0.16, PLAIN: 0.04}

# File-name fragments (case-insensitive) of the Debian script/handwriting faces
# listed in scripts/apt-packages.txt; anything else is print or plain.
_SCRIPT_NAMES = re.compile(
    r"BecauseWe|DancingScript|Joscelyn|KaushanScript|TypoScript|lobster|Z003|Ecolier|femkeklaver"
    r"|^dkg|Kristi|Leckerli|Rufscript|Delphine|SteveHand|KleeOne|Chancery|Script|Hand",
    re.IGNORECASE,
)
_PLAIN_NAMES = re.compile(r"Sans|Gothic|Mono|Biolinum|Courier|Helvet|Arial", re.IGNORECASE)
# Symbol, dingbat, keyboard-cap and decorative-initial faces draw pictures, not letters;
# Ecolier-lignes draws school ruling (Seyès) into every glyph, which registers never have;
# femkeklaver draws its capitals and digits as hollow sketched outlines.
_EXCLUDED_NAMES = re.compile(
    r"Symbol|Ecolier-lignes|femkeklaver|D050000L|Dingbat|Math|LinBiolinum_K|LinLibertine_I\."
    r"|ExtraLight|Emoji|Black|ExtraBold|Heavy",
    re.IGNORECASE,
)

# Characters that need no glyph: the space is layout, ``^`` marks a superscript run.
_NO_GLYPH = frozenset(" ^")


@dataclass(frozen=True)
class FontFace:
    """One font file: its path, family name, style class and the characters it can draw."""

    path: Path
    family: str
    style: str
    chars: frozenset[str]
    #: Lower case drawn as small capitals: such a face may only draw text without lower-case letters.
    caps_only: bool = False

    def covers(self, text: str) -> bool:
        """Return True when every character of ``text`` has a drawable glyph in this font (in its true case)."""
        if self.caps_only and any(c.islower() for c in text):
            return False
        return all(c in self.chars or c in _NO_GLYPH for c in text)

    def missing(self, text: str) -> set[str]:
        """Return the characters of ``text`` this font cannot draw."""
        return {c for c in text if c not in self.chars and c not in _NO_GLYPH}


def discover_fonts(dirs: Sequence[Path] | None = None) -> list[Path]:
    """Return the installed TrueType/OpenType font files, sorted (fc-list, else a scan of ``dirs``)."""
    found: set[Path] = set()
    if dirs is None and shutil.which("fc-list"):
        try:
            out = subprocess.run(
                ["fc-list", "--format", "%{file}\n"], capture_output=True, text=True, timeout=30, check=True
            ).stdout
            found = {Path(p) for p in out.splitlines() if p.lower().endswith(FONT_SUFFIXES)}
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("fc-list failed (%s): scanning font folders instead", exc)
    if not found:
        for d in dirs if dirs is not None else FONT_DIRS:
            if d.is_dir():
                found |= {p for p in d.rglob("*") if p.suffix.lower() in FONT_SUFFIXES and p.is_file()}
    return sorted(found)


def style_of(path: Path) -> str | None:
    """Return the style class of a font file from its name (None for symbol/decorative faces)."""
    name = path.name
    if _EXCLUDED_NAMES.search(name):
        return None
    if _SCRIPT_NAMES.search(name):
        return SCRIPT
    if _PLAIN_NAMES.search(name):
        return PLAIN
    return PRINT


def _family(font: TTFont, path: Path) -> str:
    names = font["name"] if "name" in font else None
    if names is not None:
        for name_id in (16, 1):  # typographic family first, then the legacy family
            rec = names.getName(name_id, 3, 1) or names.getName(name_id, 1, 0)
            if rec is not None:
                # The six "Because We ..." faces are one project's hands: weigh them as one family.
                return re.sub(r"^(Because We)\b.*", r"\1", rec.toUnicode().strip())
    return path.stem.split("-")[0]


def cmap_chars(path: Path) -> frozenset[str]:
    """Return the characters a font file maps to a glyph in its cmap (empty when unreadable)."""
    try:
        with TTFont(path, lazy=True, fontNumber=0) as font:
            return frozenset(chr(cp) for cp in (font.getBestCmap() or {}))
    except (TTLibError, OSError, ValueError, KeyError, AssertionError) as exc:
        log.warning("%s: unreadable font (%s)", path, exc)
        return frozenset()


def small_caps_lowercase(path: Path, size: int = 100) -> bool:
    """Return True when the font's lower case is small capitals: ``bdhkl`` no taller than ``aceo`` (no ascenders)."""
    try:
        font = ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)
    except OSError:
        return False

    def height(chars: str) -> float:
        tops = [-font.getbbox(c, anchor="ls")[1] for c in chars]
        return sorted(tops)[len(tops) // 2]

    return height("bdhkl") < 1.2 * height("xuvwnmaceo")


def drawable_chars(path: Path, wanted: Iterable[str], size: int = 32) -> frozenset[str]:
    """Return the characters of ``wanted`` that the font maps in its cmap AND draws with visible ink."""
    mapped = cmap_chars(path)
    candidates = [c for c in dict.fromkeys(wanted) if c in mapped]
    if not candidates:
        return frozenset()
    try:
        font = ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)
    except OSError as exc:
        log.warning("%s: Pillow cannot load it (%s)", path, exc)
        return frozenset()
    ok = set()
    for c in candidates:
        x0, y0, x1, y1 = font.getbbox(c)
        if x1 > x0 and y1 > y0:
            ok.add(c)
    return frozenset(ok)


def load_faces(paths: Iterable[Path], wanted: Iterable[str]) -> list[FontFace]:
    """Return a :class:`FontFace` for every usable font of ``paths``, coverage restricted to ``wanted``."""
    wanted = "".join(dict.fromkeys(c for c in wanted if c not in _NO_GLYPH))
    faces = []
    for path in paths:
        path = Path(path)
        style = style_of(path)
        if style is None:
            log.debug("%s: symbol or decorative face, not used", path.name)
            continue
        chars = drawable_chars(path, wanted)
        # A face without the lower-case alphabet and digits would only ever draw a few strings.
        if sum(c in chars for c in "abcdefghijklmnopqrstuvwxyz0123456789") < 30:
            log.info("%s: too few letters and digits (%d wanted characters drawn), not used", path.name, len(chars))
            continue
        try:
            with TTFont(path, lazy=True, fontNumber=0) as font:
                family = _family(font, path)
        except (TTLibError, OSError, ValueError, KeyError, AssertionError):
            family = path.stem
        faces.append(FontFace(path, family, style, chars, caps_only=small_caps_lowercase(path)))
    return faces
