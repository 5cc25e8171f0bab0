"""Text normalisation shared by the build and by ``resolve()``.

A term and a prompt are compared through two keys:

- the *exact key*: lower-cased words, punctuation and underscores removed,
  laterality words unified ("L", "lt", "sinister", "links" -> "left"), ordinals as
  digits ("third" -> "3"), plurals reduced to the singular;
- the *bag key*: the same words sorted, so word order does not matter
  ("kidney, left" == "left kidney").

Example:
    >>> exact_key("Kidney, Lt.")
    'kidney left'
    >>> bag_key("third lumbar vertebrae")
    '3 lumbar vertebra'
"""

from __future__ import annotations

import re
import unicodedata

_SPLIT = re.compile(r"[^a-z0-9]+")
_NUM_WORD = re.compile(r"^(\d+)(st|nd|rd|th)$")

# Every word that names a side (English, abbreviations, Latin, German, French), matched whole after
# lower-casing and accent folding. The one list: the term index reads it here, the text encoder's
# laterality feature (``sat.text.encoder.laterality_of``) imports it. "L3" is one word, not "L".
LEFT_WORDS = frozenset({
    "left", "l", "lt", "lft", "lh", "sinister", "sinistra", "sinistrum", "sinistri", "sinistrae", "sinistro",
    "sinistral", "links", "linke", "linker", "linkes", "linken", "gauche",
})
RIGHT_WORDS = frozenset({
    "right", "r", "rt", "rgt", "rh", "dexter", "dextra", "dextrum", "dextri", "dextrae", "dextro",
    "dextral", "rechts", "rechte", "rechter", "rechtes", "rechten", "droit", "droite",
})
LATERALITY = {**{w: "left" for w in LEFT_WORDS}, **{w: "right" for w in RIGHT_WORDS}}
ORDINALS = {
    "first": "1", "second": "2", "third": "3", "fourth": "4", "fifth": "5", "sixth": "6", "seventh": "7",
    "eighth": "8", "eight": "8", "ninth": "9", "tenth": "10", "eleventh": "11", "twelfth": "12",
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
}
IRREGULAR = {
    "vertebrae": "vertebra", "bronchi": "bronchus", "teeth": "tooth", "ganglia": "ganglion",
    "phalanges": "phalanx", "cavities": "cavity", "arteries": "artery", "ovaries": "ovary",
    "bodies": "body", "capsules": "capsule", "nuclei": "nucleus", "gyri": "gyrus", "sulci": "sulcus",
    "foramina": "foramen", "femora": "femur", "vertebras": "vertebra", "fossae": "fossa",
    "lamina": "lamina", "laminae": "lamina", "vasa": "vas", "bronchie": "bronchus", "bronchia": "bronchus",
    "pelves": "pelvis", "testes": "testis", "ileum": "ileum", "venae": "vena", "cavae": "cava",
}
# words ending in "s" that are singular: never strip their final "s"
_KEEP_S = ("ss", "us", "is", "as", "os", "ics")
STOPWORDS = frozenset({"the", "of", "a", "an", "structure", "entire", "both", "bilateral", "whole"})
# British / variant spellings folded to one form
SPELLING = {
    "tumour": "tumor", "tumours": "tumor", "haemorrhage": "hemorrhage", "oedema": "edema", "gray": "grey",
    "oesophagus": "esophagus", "oesophageal": "esophageal", "coeliac": "celiac", "haemorrhagic": "hemorrhagic",
    "foetal": "fetal", "anaemia": "anemia", "oestrogen": "estrogen", "centre": "center", "fibre": "fiber",
}
ROMAN = {"ii": "2", "iii": "3", "iv": "4", "vi": "6", "vii": "7", "viii": "8", "ix": "9", "xi": "11", "xii": "12"}


def singular(word: str) -> str:
    """Reduce an English (or Latin) plural to a stable singular form; idempotent enough for keys."""
    if word in IRREGULAR:
        return IRREGULAR[word]
    if len(word) <= 3 or word.endswith(_KEEP_S) or word.isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """Split ``text`` into normalised words (see module docstring)."""
    text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode().lower()
    out: list[str] = []
    for raw in _SPLIT.split(text):
        if not raw or raw in STOPWORDS:
            continue
        match = _NUM_WORD.match(raw)
        if match:
            out.append(match.group(1))
            continue
        raw = SPELLING.get(raw, raw)
        word = LATERALITY.get(raw) or ORDINALS.get(raw) or ROMAN.get(raw) or singular(raw)
        out.append(word)
    return out


def exact_key(text: str) -> str:
    """Normalised words joined by one space ("Kidney_Left" -> "kidney left")."""
    return " ".join(words(text))


def bag_key(text: str) -> str:
    """Normalised words sorted, so that word order does not matter."""
    return " ".join(sorted(words(text)))


def edit_distance(a: str, b: str, limit: int = 2) -> int:
    """Levenshtein distance of ``a`` and ``b``, or ``limit + 1`` as soon as it exceeds ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        if min(cur) > limit:
            return limit + 1
        prev = cur
    return prev[-1]
