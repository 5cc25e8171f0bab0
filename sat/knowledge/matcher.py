"""Term index behind ``KnowledgeTree.resolve`` and ``search``: exact, word-bag, typo-tolerant.

Built once when the tree loads. Lookups, in order:
1. exact key (normalised words, see ``sat.knowledge.normalize``);
2. bag key (same words in any order);
3. the same after dropping a leading modality word ("ct liver", "mri_brain");
4. a side word + an unsided concept ("L" + "kidney" -> left kidney), also when the side is glued
   to an unknown word ("rtkidney", "Lkidney", "kidneyleft", "RLung": side words of
   ``sat.knowledge.normalize.LATERALITY``);
5. typo correction: each unknown word longer than 4 letters is replaced by known words within
   edit distance 2, and steps 1-2 are retried. A correction never drops a glued side word: it
   is refused when the word without its side affix is closer to it ("rtkidney" is never "kidney").
Nothing else: a prompt that fails all of them is unknown (never a silent guess).
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections import defaultdict

from sat.knowledge.normalize import LATERALITY, edit_distance, words

INSTRUCTION = re.compile(r"^\s*(please\s+)?(segment|delineate|contour|outline|mask|find|show|label)\s+(the|all|both)\s+",
                         re.IGNORECASE)
PARENTHESES = re.compile(r"\([^)]*\)")
MODALITY_WORDS = frozenset({"ct", "mr", "mri", "pet"})
GENERIC_WORDS = frozenset({"muscle", "gland", "bone", "organ", "proper", "area", "volume", "mask", "segmentation"})
MAX_COMBINATIONS = 32
# side words that can be glued to a word, longest first ("rt" before "r")
SIDE_AFFIXES = tuple(sorted((w for w in LATERALITY if w.isalpha()), key=lambda w: (-len(w), w)))


def glued_sides(token: str, *, single_letter_suffix: bool = False) -> list[tuple[str, str]]:
    """(side, rest) for each way ``token`` is a side word glued to a word of 3+ letters.

    Prefixes may be one letter ("Lkidney"); suffixes need two or more ("kidneyleft", "kidneyrt"),
    unless ``single_letter_suffix`` ("renall" is a typo far more often than "renal, left").

    >>> glued_sides("rtkidney")
    [('right', 'kidney'), ('right', 'tkidney')]
    >>> glued_sides("kidneyleft")[0]
    ('left', 'kidney')
    """
    out = []
    for affix in SIDE_AFFIXES:
        if len(token) - len(affix) < 3:
            continue
        if token.startswith(affix) and token[len(affix):].isalpha():
            out.append((LATERALITY[affix], token[len(affix):]))
        suffix_ok = len(affix) > 1 or single_letter_suffix
        if suffix_ok and token.endswith(affix) and token[: -len(affix)].isalpha():
            out.append((LATERALITY[affix], token[: -len(affix)]))
    return out


def drops_side(token: str, fix: str) -> bool:
    """Whether correcting ``token`` to ``fix`` amounts to deleting a side word glued to it
    (``fix`` is closer to the token without that side word: "rtkidney" -> "kidney", "kidneyl" -> "kidney")."""
    limit = len(token)
    return any(edit_distance(rest, fix, limit) < edit_distance(token, fix, limit)
               for _, rest in glued_sides(token, single_letter_suffix=True))


class TermIndex:
    """Maps normalised terms to concept ids."""

    def __init__(self, terms: dict[str, list[str]], ambiguous: dict[str, dict] | None = None,
                 sided: dict[str, dict[str, str]] | None = None, popular: list[str] | None = None) -> None:
        """``terms``: concept id -> display terms (name first); ``sided``: id -> {"left": id, "right": id};
        ``popular``: keys suggested when nothing is similar."""
        self.sided = sided or {}
        exact: dict[str, set[str]] = defaultdict(set)
        bag: dict[str, set[str]] = defaultdict(set)
        self.display: dict[str, str] = {}
        for cid in sorted(terms):
            for term in terms[cid]:
                toks = words(term)
                if not toks:
                    continue
                key = " ".join(toks)
                exact[key].add(cid)
                bag[" ".join(sorted(toks))].add(cid)
                self.display.setdefault(key, term)
        self.preferred = {k: a["preferred"] for k, a in (ambiguous or {}).items()}
        self.exact = {k: self._pick(k, v) for k, v in exact.items()}
        self.bag = {k: self._pick(k, v) for k, v in bag.items()}
        self.vocabulary = sorted({w for key in exact for w in key.split()})
        self.vocab = set(self.vocabulary)
        self.by_length: dict[int, list[tuple[str, frozenset[str]]]] = defaultdict(list)
        for w in self.vocabulary:
            if len(w) >= 4 and not w.isdigit():
                self.by_length[len(w)].append((w, frozenset(w)))
        self.keys = sorted(self.exact)
        self.short_keys = list(popular or ())[:20]
        self.word_keys: dict[str, list[str]] = defaultdict(list)
        for key in self.keys:
            for w in set(key.split()):
                self.word_keys[w].append(key)

    def _pick(self, key: str, owners: set[str]) -> str | None:
        if len(owners) == 1:
            return next(iter(owners))
        return self.preferred.get(key)  # None: ambiguous and undeclared

    def _direct(self, toks: list[str]) -> str | None:
        if not toks:
            return None
        hit = self.exact.get(" ".join(toks))
        return hit if hit is not None else self.bag.get(" ".join(sorted(toks)))

    def _plain(self, toks: list[str]) -> tuple[str | None, str]:
        """Exact or bag match, also after dropping a modality word or a generic word ("muscle")."""
        if (hit := self.exact.get(" ".join(toks))) is not None:
            return hit, "exact"
        if (hit := self._direct(toks)) is not None:
            return hit, "bag"
        if len(toks) > 1 and toks[0] in MODALITY_WORDS:
            if (hit := self._direct(toks[1:])) is not None:
                return hit, "modality"
            toks = toks[1:]
        kept = [t for t in toks if t not in GENERIC_WORDS]
        if kept and len(kept) < len(toks) and (hit := self._direct(kept)) is not None:
            return hit, "generic"
        return None, "none"

    def _sided(self, toks: list[str], *, strict: bool = False) -> str | None:
        """"left" + an unsided concept -> its left concept (and likewise right)."""
        sides = [t for t in toks if t in ("left", "right")]
        if len(sides) != 1:
            return None
        rest = [t for t in toks if t != sides[0]]
        base = self._direct(rest) if strict else self._plain(rest)[0]
        return self.sided.get(base, {}).get(sides[0]) if base is not None else None

    def lookup(self, text: str) -> tuple[str | None, str]:
        """(concept id or None, how it matched: exact | bag | modality | generic | laterality | typo | none)."""
        text = INSTRUCTION.sub("", text)  # "segment the liver" asks for the liver, not a liver segment
        hit, how = self._lookup(text)
        if hit is None and "(" in text:  # "liver (CT)": retry without the aside
            stripped = PARENTHESES.sub(" ", text)
            if stripped.strip():
                hit, how = self._lookup(stripped)
        return hit, how

    def _lookup(self, text: str) -> tuple[str | None, str]:
        toks = words(text)
        hit, how = self._plain(toks)
        if hit is not None:
            return hit, how
        if (hit := self._sided(toks)) is not None or (hit := self._glued(toks)) is not None:
            return hit, "laterality"
        hits = set()
        for fixed in self._typo_variants(toks):
            hit = self._direct(fixed) or self._sided(fixed, strict=True)
            if hit is not None:
                hits.add(hit)
        return (hits.pop(), "typo") if len(hits) == 1 else (None, "none")

    def _glued(self, toks: list[str]) -> str | None:
        """A side glued to an unknown word: "rtkidney" -> "right kidney" -> the right kidney (one answer only)."""
        hits = set()
        for i, tok in enumerate(toks):
            if tok in self.vocab:
                continue
            for side, rest in glued_sides(tok):
                split = [*toks[:i], side, *words(rest), *toks[i + 1:]]
                hit = self._plain(split)[0] or self._sided(split)
                found = {hit} if hit is not None else {
                    self._direct(fixed) or self._sided(fixed, strict=True) for fixed in self._typo_variants(split)}
                hits |= found - {None}
        return hits.pop() if len(hits) == 1 else None

    def corrections(self, word: str, limit: int = 2) -> list[tuple[int, str]]:
        """Known words (4+ letters) within edit distance ``limit`` of an unknown word longer than 4 letters."""
        if len(word) <= 4 or word in self.vocab or word.isdigit():
            return []
        letters = set(word)
        found = []
        for length in range(len(word) - limit, len(word) + limit + 1):
            for w, w_letters in self.by_length.get(length, ()):
                # each edit changes the letter set by at most 2: a cheap filter before the DP
                if len(letters ^ w_letters) <= 2 * limit and (d := edit_distance(word, w, limit)) <= limit:
                    found.append((d, w))
        return sorted(found)

    def _typo_variants(self, toks: list[str]) -> list[list[str]]:
        options: list[list[str]] = []
        changed = False
        for tok in toks:
            if tok in self.vocab:
                options.append([tok])
                continue
            fixes = [(d, w) for d, w in self.corrections(tok) if not drops_side(tok, w)]
            if not fixes:
                return []
            best = fixes[0][0]
            options.append([w for d, w in fixes if d == best][:4])
            changed = True
        if not changed:
            return []
        return [list(c) for c in itertools.islice(itertools.product(*options), MAX_COMBINATIONS)]

    def nearest(self, text: str, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` nearest terms as (exact key, similarity in [0, 1]), best first."""
        toks = words(text)
        query = " ".join(toks)
        near_words: set[str] = set()
        for tok in toks:
            near_words.add(tok)
            near_words.update(w for _d, w in self.corrections(tok, 3)[:5])
            if len(near_words) < 3 and len(tok) > 2:
                near_words.update(difflib.get_close_matches(tok, self.vocabulary, n=3, cutoff=0.6))
        pool = {key for w in near_words for key in self.word_keys.get(w, ())}
        qset = set(toks)

        def overlap(key: str) -> float:
            kset = set(key.split())
            return len(qset & kset) / max(len(qset | kset), 1)

        ranked = sorted(pool, key=lambda key: (-overlap(key), len(key), key))[:60]
        scored = [(round(0.5 * difflib.SequenceMatcher(None, query, key).ratio() + 0.5 * overlap(key), 4), key)
                  for key in ranked]
        scored.sort(key=lambda s: (-s[0], len(s[1]), s[1]))
        result = [(key, score) for score, key in scored[:k]]
        for key in self.short_keys:  # nothing similar enough: fill with the shortest common terms
            if len(result) >= k:
                break
            if key not in {r[0] for r in result}:
                result.append((key, 0.0))
        return result
