"""``sat terms check``: validate the curated sources, the shipped artifact and the dataset cards.

Errors (exit 1): duplicate ids, a parent that does not exist, a cycle, a concept that does not
reach the root, a term two concepts claim without an ``ambiguous.csv`` entry, an alias or mapping
naming an unknown concept, asymmetric left/right links, a dataset-card label whose concept is not
in the tree, a stale artifact (not what ``sat terms build`` produces from the same inputs).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import yaml

from sat.errors import ConfigError
from sat.knowledge.curated import Curated, read_cards, read_curated
from sat.knowledge.terms import TermTable

ROOT = "body"
ID_PATTERN = re.compile(r"[a-z0-9]+(_[a-z0-9]+)*")


@dataclass
class Report:
    """Findings of a check; ``ok`` is False when there is any error."""

    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def text(self) -> str:
        lines = [f"note: {n}" for n in self.notes] + [f"error: {e}" for e in self.errors]
        lines.append(f"{'OK' if self.ok else 'FAILED'}: {len(self.errors)} error(s), {len(self.notes)} note(s)")
        return "\n".join(lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping with the same key twice."""

    def construct_mapping(self, node, deep=False):  # noqa: ANN001, ANN201
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        dupes = sorted({str(k) for k in keys if keys.count(k) > 1})
        if dupes:
            raise ConfigError(f"duplicate id(s) {', '.join(dupes)} at line {node.start_mark.line + 1}; keep one entry")
        return super().construct_mapping(node, deep=deep)


def check_duplicates(path: Path, report: Report) -> None:
    """Duplicate concept ids in ``concepts.yaml``."""
    try:
        yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as err:
        report.errors.append(f"{path.name}: {err}")


def check_structure(cur: Curated, report: Report) -> None:
    """Parents exist, no cycles, every concept reaches the root; aliases/mappings name real concepts."""
    con = cur.concepts
    for cid in con:
        if not ID_PATTERN.fullmatch(cid):
            report.errors.append(f"concept id {cid!r} is not snake_case (lower-case letters, digits, _)")
    graph = nx.DiGraph()
    graph.add_nodes_from(con)
    for cid, c in con.items():
        for parent, rel in c["parents"]:
            if parent not in con:
                report.errors.append(f"concept {cid}: parent {parent!r} ({rel}) does not exist")
            else:
                graph.add_edge(parent, cid)
    cycles = list(nx.simple_cycles(graph))
    for cycle in cycles[:10]:
        report.errors.append(f"cycle in parents: {' -> '.join(cycle + cycle[:1])}")
    if ROOT not in con:
        report.errors.append(f"root concept {ROOT!r} is missing")
    elif not cycles:
        lost = sorted(set(con) - nx.descendants(graph, ROOT) - {ROOT})
        for cid in lost:
            report.errors.append(f"concept {cid} does not reach {ROOT!r} through its parents")
    for row in cur.aliases:
        if row["concept"] not in con:
            report.errors.append(f"aliases.csv: {row['term']!r} -> unknown concept {row['concept']!r}")
    for row in cur.mappings:
        if row["concept"] not in con:
            report.errors.append(f"mappings.csv: unknown concept {row['concept']!r}")
    for term, amb in cur.ambiguous.items():
        for cid in [*amb["concepts"], amb["preferred"]]:
            if cid not in con:
                report.errors.append(f"ambiguous.csv: {term!r} names unknown concept {cid!r}")


def check_terms(cur: Curated, report: Report) -> None:
    """No curated term may name two concepts unless declared ambiguous."""
    table = TermTable(cur)
    table.resolve_conflicts()
    for key, owners in table.conflicts:
        best = min(table.claims[key][o] for o in owners)
        if best == 0:
            report.errors.append(f"term {key!r} names {', '.join(owners)}; keep it on one concept or declare it "
                                 "in ambiguous.csv")


def check_laterality(data: dict, report: Report) -> None:
    """left_id/right_id/unsided_id links point to existing concepts and are symmetric."""
    con = data["concepts"]
    mirror = {"left_id": "right_id", "right_id": "left_id"}
    for cid, c in con.items():
        for key, back in mirror.items():
            other = c.get(key)
            if other is None:
                continue
            if other not in con:
                report.errors.append(f"concept {cid}: {key} {other!r} does not exist")
            elif c.get("laterality") in ("left", "right") and con[other].get(back) != cid:
                report.errors.append(f"concept {cid}: {key} is {other} but {other}.{back} is {con[other].get(back)}")
        unsided = c.get("unsided_id")
        if unsided and con.get(unsided, {}).get(f"{c.get('laterality')}_id") is None:
            report.errors.append(f"concept {cid}: unsided_id {unsided} has no {c.get('laterality')}_id")


def check_cards(cards: dict[str, dict], concepts: dict, report: Report) -> None:
    """Every label of every dataset card maps to a concept of the tree (or says why it is skipped)."""
    n_labels = skipped = 0
    for name, card in sorted(cards.items()):
        labels = card.get("labels") or {}
        if not isinstance(labels, dict):
            report.errors.append(f"card {name}: 'labels' must map label values to {{name, concept}}")
            continue
        for value, label in labels.items():
            n_labels += 1
            if isinstance(label, dict) and label.get("skip") and not label.get("concept"):
                skipped += 1
                continue
            cid = label.get("concept") if isinstance(label, dict) else None
            if not cid:
                report.errors.append(f"card {name}: label {value} has no concept")
            elif cid not in concepts:
                report.errors.append(f"card {name}: label {value} ({label.get('name')}) -> unknown concept {cid!r}")
    report.notes.append(f"{len(cards)} dataset card(s), {n_labels} label(s), {skipped} skipped on purpose")


def run_check(sources: Path, curated: Path, *, cards: Path | None = None, artifact: Path | None = None,
              progress: Callable[[str], None] | None = None) -> Report:
    """Run every check; never raises for a finding (a malformed curated file becomes an error)."""
    from sat.knowledge.build import build_data, dumps
    from sat.knowledge.tree import artifact_path

    report = Report()
    check_duplicates(curated / "concepts.yaml", report)
    try:
        cur = read_curated(curated)
        card_data = read_cards(cards) if cards else {}
    except ConfigError as err:
        report.errors.append(str(err))
        return report
    check_structure(cur, report)
    check_terms(cur, report)
    if not report.ok:
        return report
    data = build_data(sources, curated, cards=cards, progress=progress)
    check_laterality(data, report)
    check_cards(card_data, data["concepts"], report)
    report.notes.append(f"{len(data['concepts'])} concepts; coverage "
                        + ", ".join(f"{k} {v['matched']}/{v['total']}" for k, v in data["coverage"].items()))
    path = artifact or artifact_path()
    if not path.exists() or path.read_bytes() != dumps(data):
        report.errors.append(f"artifact {path} is stale or missing; run `sat terms build`")
    return report
