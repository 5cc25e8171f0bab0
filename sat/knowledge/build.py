"""``sat terms build``: compile ``knowledge_tree/`` + the terminology sources into one json.gz.

The output is deterministic: sorted keys, sorted lists, gzip with a fixed timestamp, so the same
input gives the same bytes.

Example:
    >>> from pathlib import Path
    >>> from sat.knowledge.build import build
    >>> data = build(Path("../shared/terms"), Path("knowledge_tree"),
    ...              out=Path("sat/resources/knowledge_tree.json.gz"))  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Callable
from pathlib import Path

from sat._atomic import atomic_write_bytes
from sat.errors import ConfigError
from sat.knowledge import sources as src
from sat.knowledge.curated import Curated, read_cards, read_curated
from sat.knowledge.normalize import bag_key, exact_key
from sat.knowledge.terms import TermTable

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
ACR_CODES = {"FMA": "fma", "SNOMED": "snomed", "UMLS": "umls", "MESH": "mesh"}


def _match_index(entries: dict[str, dict], label: str, synonyms: str) -> tuple[dict, ...]:
    """Indexes of a source by exact key and by bag key, of labels and of synonyms."""
    indexes: tuple[dict[str, list[str]], ...] = ({}, {}, {}, {})
    for eid, entry in entries.items():
        for i, text in [(0, entry[label])] + [(1, s) for s in entry.get(synonyms) or []]:
            indexes[i].setdefault(exact_key(text), []).append(eid)
            indexes[i + 2].setdefault(bag_key(text), []).append(eid)
    return indexes[0], indexes[1], indexes[2], indexes[3]


def _auto_match(keys: list[str], *indexes: dict) -> str | None:
    """The one source entry whose label (else synonym) equals a key, exactly or as a word bag."""
    bags = [" ".join(sorted(k.split())) for k in keys]
    for index, probe in zip(indexes, (keys, keys, bags, bags), strict=False):
        for key in probe:
            hits = sorted(set(index.get(key, ())))
            if len(hits) == 1:
                return hits[0]
    return None


def _keys(cid: str, c: dict) -> list[str]:
    """Match keys of a concept: its names, then the same with/without "muscle" / "bone"."""
    keys = [exact_key(t) for t in (c["name"], cid.replace("_", " "), *c["synonyms"])]
    extra = [f"{k} {w}" for k in keys[:1] for w in ("muscle", "bone", "muscle group")]
    extra += [k.rsplit(" ", 1)[0] for k in keys[:1] if k.endswith((" muscle", " bone"))]
    return [k for k in dict.fromkeys(keys + extra) if k]


def _matches(cur: Curated, uberon: dict, acr: dict) -> dict[str, dict[str, str]]:
    """concept id -> {"uberon": id, "acr": rid} from mappings.csv, else by exact name.

    A sided concept without a match of its own takes the ACR node that its unsided parent's
    node names as its leftId / rightId (a link the ACR index states).
    """
    u_idx = _match_index(uberon, "label", "synonyms")
    a_idx = _match_index(acr, "description", "synonyms")
    explicit: dict[str, dict[str, str]] = {}
    for row in cur.mappings:
        explicit.setdefault(row["concept"], {})[row["source"]] = row["id"]
    out: dict[str, dict[str, str]] = {}
    for cid, c in cur.concepts.items():
        keys = _keys(cid, c)
        found = {}
        for source, idx, table in (("uberon", u_idx, uberon), ("acr", a_idx, acr)):
            given = explicit.get(cid, {}).get(source)
            if given == "-":
                continue
            if given:
                if given not in table:
                    raise ConfigError(f"mappings.csv: {source} id {given} of {cid} is not in the source; fix or remove it")
                found[source] = given
                continue
            hit = _auto_match(keys, *idx)
            if hit:
                found[source] = hit
        out[cid] = found
    used = {f["acr"] for f in out.values() if "acr" in f}
    for cid, c in cur.concepts.items():
        side = "left" if "left" in cid.split("_") else "right" if "right" in cid.split("_") else None
        if side is None or "acr" in out[cid] or explicit.get(cid, {}).get("acr") == "-":
            continue
        for parent, rel in c["parents"]:
            node = acr.get(out.get(parent, {}).get("acr", ""))
            sided = node.get(f"{side}Id") if rel == "is_a" and node else None
            if sided in acr and sided not in used:
                out[cid]["acr"] = sided
                used.add(sided)
                break
    return out


def _laterality(cur: Curated) -> dict[str, dict]:
    """Laterality and left/right/unsided links from ids and is_a parents."""
    con = cur.concepts
    info: dict[str, dict] = {cid: {"laterality": c["laterality"]} for cid, c in con.items()}
    for cid, c in con.items():
        if c["laterality"] == "none":  # named "left ..." but not one of a left/right pair
            info[cid]["laterality"] = None
            continue
        tokens = cid.split("_")
        side = c["laterality"] or ("left" if "left" in tokens else "right" if "right" in tokens else None)
        if side not in ("left", "right"):
            continue
        info[cid]["laterality"] = side
        other = "_".join({"left": "right", "right": "left"}[t] if t in ("left", "right") else t for t in tokens)
        if other in con:
            info[cid]["right_id" if side == "left" else "left_id"] = other
        same = "_".join(t for t in tokens if t not in ("left", "right"))
        unsided = [p for p, rel in c["parents"] if rel == "is_a" and p == same and p in con]
        if unsided:
            info[cid]["unsided_id"] = unsided[0]
            base = info[unsided[0]]
            base["laterality"] = base["laterality"] or "unsided"
            base.setdefault(f"{side}_id", cid)
    return info


def _class_lists(root: Path) -> list[src.ClassList]:
    return [src.read_totalsegmentator(root), src.read_vista3d(root), src.read_sat(root)]


def _add_source_terms(table: TermTable, matches: dict, uberon: dict, acr: dict) -> None:
    """Labels and exact synonyms of the matched Uberon terms and ACR nodes."""
    for cid, found in sorted(matches.items()):
        if "acr" in found:
            node = acr[found["acr"]]
            for term in [node["description"], *(node.get("synonyms") or [])]:
                table.add(cid, term, "acr")
        if "uberon" in found:
            entry = uberon[found["uberon"]]
            for term in [entry["label"], *(entry.get("synonyms") or [])]:
                table.add(cid, term, "uberon")


class _Labels:
    """Which datasets and modalities label each concept (class lists and dataset cards)."""

    def __init__(self, concepts: dict) -> None:
        self.datasets: dict[str, set[str]] = {cid: set() for cid in concepts}
        self.modalities: dict[str, set[str]] = {cid: set() for cid in concepts}
        self.coverage: dict[str, dict] = {}

    def class_lists(self, table: TermTable, lists: list[src.ClassList]) -> None:
        for clist in lists:
            self.coverage[clist.source] = cov = {"matched": {}, "unmatched": []}
            for name, where in sorted(clist.names.items()):
                cid = table.lookup(name)
                if cid is None:
                    cov["unmatched"].append(name)
                    continue
                cov["matched"][name] = cid
                table.add(cid, name, "dataset")
                for dataset, modality in where:
                    self.datasets[cid].add(dataset)
                    self.modalities[cid].add(modality)

    def cards(self, table: TermTable, cards: dict[str, dict]) -> None:
        for card, data in cards.items():
            labels = data.get("labels") or {}
            for label in labels.values() if isinstance(labels, dict) else ():
                cid = label.get("concept") if isinstance(label, dict) else None
                if cid not in self.datasets:
                    continue
                self.datasets[cid].add(card)
                name = str(label.get("name") or "")
                if table.lookup(name) == cid:  # the card's spelling, where it already means this concept
                    table.add(cid, name, "dataset")
                if data.get("modality"):
                    self.modalities[cid].add(str(data["modality"]).lower())


def _xrefs(cid: str, c: dict, found: dict, sources: tuple[dict, dict, dict],
           ts_names: list[str]) -> tuple[dict[str, str], str, str | None]:
    """(codes, definition, region) of one concept, from the files that state them."""
    uberon, acr, ts_snomed = sources
    xrefs: dict[str, str] = {}
    definition, region = c["definition"] or "", c["region"]
    if "uberon" in found:
        xrefs["uberon"] = found["uberon"]
        definition = definition or uberon[found["uberon"]].get("description") or ""
    if "acr" in found:
        node = acr[found["acr"]]
        xrefs["acr"] = node["radlexId"]
        if node["radlexId"].startswith("RID") and "_" not in node["radlexId"]:
            xrefs["radlex"] = node["radlexId"]
        for code in node.get("codes") or []:
            if code["system"] in ACR_CODES:
                xrefs[ACR_CODES[code["system"]]] = code["code"]
        region = region or src.acr_region(acr, found["acr"])
    if ts_names:
        xrefs["totalsegmentator"] = cid if cid in ts_names else sorted(ts_names)[0]
        for name in ts_names:
            for key, value in ts_snomed.get(name, {}).items():
                xrefs.setdefault(key, value)
    return dict(sorted(xrefs.items())), definition, region


BUILD_STEPS = 4


def build_data(sources: Path, curated: Path, *, cards: Path | None = None,
               progress: Callable[[str], None] | None = None) -> dict:
    """Compile everything into the artifact's dict (see ``write``); ``progress(step)`` is
    called before each of the ``BUILD_STEPS`` steps."""
    step = progress or (lambda _name: None)
    step("reading sources")
    cur = read_curated(curated)
    uberon, acr = src.read_uberon(sources), src.read_acr(sources)
    step("matching Uberon and ACR")
    matches = _matches(cur, uberon, acr)
    table = TermTable(cur)
    _add_source_terms(table, matches, uberon, acr)
    step("matching class lists and dataset cards")
    labels = _Labels(cur.concepts)
    labels.class_lists(table, _class_lists(sources))
    card_data = read_cards(cards) if cards else {}
    labels.cards(table, card_data)
    step("assembling concepts")
    terms = table.resolve_conflicts()
    lat = _laterality(cur)
    ts_of: dict[str, list[str]] = {}
    for name, cid in labels.coverage["totalsegmentator"]["matched"].items():
        ts_of.setdefault(cid, []).append(name)
    refs = (uberon, acr, src.read_ts_snomed(sources))
    concepts = {}
    for cid, c in cur.concepts.items():
        xrefs, definition, region = _xrefs(cid, c, matches[cid], refs, ts_of.get(cid, []))
        concepts[cid] = {
            "id": cid, "name": c["name"], "synonyms": sorted(terms.get(cid, set()) - {c["name"]}),
            "definition": definition, "parents": [list(p) for p in c["parents"]], "region": region,
            "modalities": sorted(labels.modalities[cid]), "xrefs": xrefs,
            "datasets": sorted(labels.datasets[cid]), "is_lesion": c["lesion"], **lat[cid],
        }
    _inherit_regions(concepts)
    return {
        "format_version": FORMAT_VERSION,
        "concepts": dict(sorted(concepts.items())),
        "ambiguous": {exact_key(t): a for t, a in sorted(cur.ambiguous.items())},
        "coverage": {k: {"matched": len(v["matched"]), "total": len(v["matched"]) + len(v["unmatched"]),
                         "unmatched": sorted(v["unmatched"])} for k, v in labels.coverage.items()},
        "cards": sorted(card_data),
    }


def _inherit_regions(concepts: dict[str, dict]) -> None:
    """Concepts without a region take the first region found up their parents."""
    def region_of(cid: str, seen: set[str]) -> str | None:
        c = concepts[cid]
        if c["region"] or cid in seen:
            return c["region"]
        seen.add(cid)
        for parent, _rel in c["parents"]:
            if parent in concepts and (r := region_of(parent, seen)):
                return r
        return None
    for cid in sorted(concepts):
        concepts[cid]["region"] = region_of(cid, set())


def dumps(data: dict) -> bytes:
    """Deterministic gzip'd JSON bytes of ``data``."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def write(data: dict, out: Path) -> Path:
    """Write the artifact atomically."""
    atomic_write_bytes(out, dumps(data))
    return out


def build(sources: Path, curated: Path, *, out: Path, cards: Path | None = None,
          progress: Callable[[str], None] | None = None) -> dict:
    """Build and write the artifact; returns its data."""
    data = build_data(sources, curated, cards=cards, progress=progress)
    write(data, out)
    log.info("wrote %s: %d concepts", out, len(data["concepts"]))
    return data


__all__ = ["build", "build_data", "dumps", "write"]
