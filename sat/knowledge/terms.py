"""The term table of the build: which display strings name which concept, and their conflicts.

Priorities: curated names, synonyms and aliases (0) beat dataset spellings (1), which beat
source synonyms from the ACR index and Uberon (2). A normalised term claimed by two concepts
keeps only the best-priority claimant; a tie among curated terms is an error unless the term
is declared in ``ambiguous.csv``.
"""

from __future__ import annotations

from sat.knowledge.curated import Curated
from sat.knowledge.normalize import bag_key, exact_key

QUALIFIERS = frozenset({"superior", "inferior", "anterior", "posterior", "middle", "medial", "lateral", "internal",
                        "external", "upper", "lower", "common", "deep", "transverse", "central", "short", "long"})
PRIORITY = {"curated": 0, "variant": 0, "dataset": 1, "acr": 2, "uberon": 2}


def variants(name: str) -> list[str]:
    """Word-order variants of a name: "left kidney" -> "kidney, left", "kidney left", "kidney (left)";
    "upper lobe of left lung" -> "left lung upper lobe", "left lung, upper lobe"."""
    out: list[str] = []
    if "(" not in name and name.count(" of ") == 1:
        part, whole = name.split(" of ")
        whole = whole.removeprefix("the ")
        out += [f"{whole} {part}", f"{whole}, {part}"]
    for side in ("left", "right"):
        if name.startswith(side + " "):
            rest = name[len(side) + 1:]
            return out + [f"{rest}, {side}", f"{rest} {side}", f"{rest} ({side})"]
    first, _, rest = name.partition(" ")
    if first in QUALIFIERS and rest and "(" not in rest and not rest.startswith(("and ", "part ", "segment ")):
        out.append(f"{rest}, {first}")  # index style: "vena cava, inferior"
    return out


class TermTable:
    """Display terms per concept with their origin priority, indexed by exact and bag key."""

    def __init__(self, curated: Curated) -> None:
        self.ambiguous = {exact_key(t): a for t, a in curated.ambiguous.items()}
        self.claims: dict[str, dict[str, int]] = {}  # exact key -> concept -> best priority
        self.display: dict[str, dict[str, dict[str, str]]] = {}  # concept -> exact key -> {lower: display}
        self.conflicts: list[tuple[str, list[str]]] = []
        self.bags: dict[str, set[str]] = {}  # bag key -> exact keys
        for cid, c in sorted(curated.concepts.items()):
            for term in (c["name"], cid.replace("_", " "), *c["synonyms"]):
                self.add(cid, term, "curated")
            for term in variants(c["name"]):
                self.add(cid, term, "variant")
        for row in curated.aliases:
            if row["concept"] in curated.concepts:
                self.add(row["concept"], row["term"], "curated")

    def add(self, cid: str, term: str, origin: str) -> None:
        """Record that ``term`` names ``cid``."""
        key = exact_key(term)
        if not key:
            return
        prio = PRIORITY[origin]
        claims = self.claims.setdefault(key, {})
        self.bags.setdefault(bag_key(term), set()).add(key)
        if prio < claims.get(cid, 99):
            claims[cid] = prio
        self.display.setdefault(cid, {}).setdefault(key, {}).setdefault(term.strip().lower(), term.strip())

    def owner(self, key: str) -> str | None:
        """The concept a key resolves to (declared preference, else the unique best claimant)."""
        claims = self.claims.get(key)
        if not claims:
            return None
        if key in self.ambiguous:
            return self.ambiguous[key]["preferred"]
        best = min(claims.values())
        winners = sorted(c for c, p in claims.items() if p == best)
        return winners[0] if len(winners) == 1 else None

    def lookup(self, text: str) -> str | None:
        """Concept whose term matches ``text`` exactly (after normalisation) or by word bag."""
        key = exact_key(text)
        if (cid := self.owner(key)) is not None:
            return cid
        owners = {self.owner(k) for k in self.bags.get(bag_key(text), ())} - {None}
        return owners.pop() if len(owners) == 1 else None

    def resolve_conflicts(self) -> dict[str, set[str]]:
        """concept -> display terms it keeps; records curated ties in ``self.conflicts``."""
        keep: dict[str, set[str]] = {}
        for key, claims in sorted(self.claims.items()):
            if len(claims) > 1 and key not in self.ambiguous:
                best = min(claims.values())
                winners = sorted(c for c, p in claims.items() if p == best)
                if len(winners) > 1:
                    self.conflicts.append((key, winners))
                    if best > 0:  # a tie among source synonyms: nobody keeps the term
                        continue
                owners = winners[:1] if best > 0 else winners
            else:
                owners = sorted(claims)
            for cid in owners:
                keep.setdefault(cid, set()).update(self.display[cid][key].values())
        return keep
