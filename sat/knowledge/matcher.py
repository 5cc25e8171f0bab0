"""Term index behind ``KnowledgeTree.resolve`` and ``search``: exact, word-bag, typo-tolerant.

Built once when the tree loads. Lookups, in order:
1. exact key (normalised words, see ``sat.knowledge.normalize``);
2. bag key (same words in any order);
3. the same after dropping a leading modality word ("ct liver", "mri_brain");
4. typo correction: each unknown word longer than 4 letters is replaced by known words within
   edit distance 2, and steps 1-2 are retried.
Nothing else: a prompt that fails all of them is unknown (never a silent guess).
"""

from __future__ import annotations

import difflib
import itertools
from collections import defaultdict

from sat.knowledge.normalize import edit_distance, words

MODALITY_WORDS = frozenset({"ct", "mr", "mri", "pet"})
MAX_COMBINATIONS = 32


class TermIndex:
    """Maps normalised terms to concept ids."""

    def __init__(self, terms: dict[str, list[str]], ambiguous: dict[str, dict] | None = None) -> None:
        """``terms``: concept id -> display terms (name first)."""
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
        self.long_words = [w for w in self.vocabulary if len(w) > 4]
        self.keys = sorted(self.exact)
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

    def lookup(self, text: str) -> tuple[str | None, str]:
        """(concept id or None, how it matched: "exact" | "bag" | "modality" | "typo" | "none")."""
        toks = words(text)
        hit = self._direct(toks)
        if hit is not None:
            return hit, "exact" if " ".join(toks) in self.exact else "bag"
        if len(toks) > 1 and toks[0] in MODALITY_WORDS:
            toks = toks[1:]
            if (hit := self._direct(toks)) is not None:
                return hit, "modality"
        hit = self._typo(toks)
        return (hit, "typo") if hit is not None else (None, "none")

    def corrections(self, word: str) -> list[tuple[int, str]]:
        """Known words within edit distance 2 of an unknown word longer than 4 letters."""
        if len(word) <= 4 or word in self.exact or word.isdigit():
            return []
        found = [(edit_distance(word, w), w) for w in self.long_words if abs(len(w) - len(word)) <= 2]
        return sorted((d, w) for d, w in found if d <= 2)

    def _typo(self, toks: list[str]) -> str | None:
        vocab = set(self.vocabulary)
        options: list[list[str]] = []
        changed = False
        for tok in toks:
            if tok in vocab:
                options.append([tok])
                continue
            fixes = self.corrections(tok)
            if not fixes:
                return None
            best = fixes[0][0]
            options.append([w for d, w in fixes if d == best][:4])
            changed = True
        if not changed:
            return None
        hits = set()
        for combo in itertools.islice(itertools.product(*options), MAX_COMBINATIONS):
            if (hit := self._direct(list(combo))) is not None:
                hits.add(hit)
        return hits.pop() if len(hits) == 1 else None

    def nearest(self, text: str, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` nearest terms as (exact key, similarity in [0, 1]), best first."""
        toks = words(text)
        query = " ".join(toks)
        pool: set[str] = set()
        for tok in toks:
            pool.update(self.word_keys.get(tok, ()))
            for _d, w in self.corrections(tok)[:3]:
                pool.update(self.word_keys.get(w, ()))
        if len(pool) < k:
            pool.update(difflib.get_close_matches(query, self.keys, n=k * 4, cutoff=0.0) if query else self.keys[:k])
        scored = []
        qset = set(toks)
        for key in pool:
            ratio = difflib.SequenceMatcher(None, query, key).ratio()
            overlap = len(qset & set(key.split())) / max(len(qset | set(key.split())), 1)
            scored.append((round(0.5 * ratio + 0.5 * overlap, 4), key))
        scored.sort(key=lambda s: (-s[0], len(s[1]), s[1]))
        return [(key, score) for score, key in scored[:k]]
