"""Text-encoder retrieval benchmark: which concept does a prompt name?

Query sets:
  held-out  the 15% of the tree's synonyms the encoder never trained on
            (same seed and fraction as its training, read from the delta's config);
  free-text the curated prompt variants of knowledge_tree/ (text -> expected concept id);
  probes    templated sided prompts ("kidney, left", "lt kidney", ...) for every left/right pair.

Methods: (a) ``tree.resolve`` string matching (for the held-out set with the
held-out synonyms removed from its index, otherwise it would look them up),
(b) the base MiniLM and (c) our encoder, both by the nearest concept-name embedding.
Metrics: Recall@1/@5, laterality accuracy (expected side ranked above its twin),
top-1 left/right swaps, sibling accuracy (above its numbered siblings: L3 vs L2/L4),
encode throughput on 1,000 distinct prompts.

Usage: python benchmarks/text_retrieval.py [--encoder default] [--out evaluate/text_retrieval.md]
"""

from __future__ import annotations

import argparse
import copy
import csv
import datetime
import logging
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from sat.knowledge.tree import KnowledgeTree, load  # noqa: E402
from sat.text import load_encoder  # noqa: E402
from sat.text.pairs import build_pairs, norm  # noqa: E402
from sat.text.retrieval import (  # noqa: E402
    Query,
    held_out_queries,
    laterality_accuracy,
    laterality_probes,
    rank_by_encoder,
    rank_by_tree,
    recall,
    sibling_accuracy,
    side_swaps,
    throughput,
)
from sat.text.train import concepts_fingerprint  # noqa: E402

PROMPT_COLUMNS = (("prompt", "text", "variant"), ("concept", "concept_id", "expected", "id"))


def read_prompt_set(path: Path, concepts: dict) -> list[Query]:
    """CSV/TSV (or YAML list) of free-text prompts with their expected concept id; unknown ids skipped."""
    rows: list[dict] = []
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(path.read_text())
        rows = data if isinstance(data, list) else [{"prompt": k, "concept": v} for k, v in (data or {}).items()]
    else:
        with path.open(newline="") as handle:
            dialect = csv.excel_tab if path.suffix == ".tsv" else csv.excel
            rows = list(csv.DictReader((line for line in handle if not line.startswith("#")), dialect=dialect))
    text_key = next((k for k in PROMPT_COLUMNS[0] if rows and k in rows[0]), None)
    id_key = next((k for k in PROMPT_COLUMNS[1] if rows and k in rows[0]), None)
    if text_key is None or id_key is None:
        raise SystemExit(f"{path}: need a prompt column {PROMPT_COLUMNS[0]} and a concept column {PROMPT_COLUMNS[1]}")
    queries = [Query(str(r[text_key]), frozenset({str(r[id_key]).strip()})) for r in rows if str(r[id_key]).strip() in concepts]
    if len(queries) < len(rows):
        logging.warning("%s: %d of %d prompts name a concept the tree lacks (skipped)", path, len(rows) - len(queries), len(rows))
    return queries


def find_prompt_set() -> Path | None:
    """The knowledge engineers' prompt-variant file in knowledge_tree/ (first match), if any."""
    for pattern in ("*prompt*.csv", "*prompt*.tsv", "*prompt*.yaml", "*variant*.csv", "*variant*.yaml"):
        found = sorted((ROOT / "knowledge_tree").glob(pattern))
        if found:
            return found[0]
    return None


def tree_without(tree: KnowledgeTree, held_out: list[tuple[str, str]]) -> KnowledgeTree:
    """A copy of ``tree`` whose concepts lack the held-out synonyms (fair string-matching baseline)."""
    data = copy.deepcopy(tree.data)
    drop = {(cid, norm(s)) for cid, s in held_out}
    for cid, concept in data["concepts"].items():
        concept["synonyms"] = [s for s in concept.get("synonyms", []) if (cid, norm(s)) not in drop]
    return KnowledgeTree(data)


def throughput_prompts(queries: list[Query], names: list[str], n: int) -> list[str]:
    """``n`` distinct, realistic prompts built from the query texts and concept names."""
    pool = sorted({q.text for q in queries} | set(names))
    out, templates = [], ("{}", "the {}", "{} region", "segment the {}", "{} on this scan")
    for template in templates:
        out += [template.format(t) for t in pool]
    return out[:n] if len(out) >= n else (out * (n // len(out) + 1))[:n]


def evaluate(methods: dict, sets: dict[str, list[Query]], concepts: dict) -> list[dict]:
    rows = []
    for method, rank in methods.items():
        row: dict = {"method": method}
        for set_name, queries in sets.items():
            if not queries:
                continue
            ranking = rank(set_name, queries)
            row[f"{set_name} R@1"] = recall(ranking, queries, 1)
            row[f"{set_name} R@5"] = recall(ranking, queries, 5)
            lat, n_lat = laterality_accuracy(ranking, queries, concepts)
            sib, n_sib = sibling_accuracy(ranking, queries, concepts)
            row[f"{set_name} laterality"] = (lat, n_lat)
            row[f"{set_name} swaps"] = side_swaps(ranking, queries, concepts)
            row[f"{set_name} siblings"] = (sib, n_sib)
        rows.append(row)
    return rows


def _cell(value) -> str:
    if isinstance(value, tuple):
        return "n/a" if value[1] == 0 else f"{value[0]:.3f} (n={value[1]})"
    if isinstance(value, float):
        return f"{value:.3f}" if value <= 1 else f"{value:,.0f}"
    return str(value)


def to_markdown(rows: list[dict], sets: dict[str, list[Query]], facts: dict) -> str:
    lines = ["# Text encoder: concept retrieval", "", "Generated by `python benchmarks/text_retrieval.py`; do not edit by hand.", ""]
    lines += [f"- {k}: {v}" for k, v in facts.items()] + [""]
    for set_name, queries in sets.items():
        if not queries:
            continue
        keys = [k for k in rows[0] if k.startswith(set_name + " ")]
        lines += [f"## {set_name} ({len(queries)} prompts)", "", "| method | " + " | ".join(k.split(" ", 1)[1] for k in keys) + " |"]
        lines += ["|---" * (len(keys) + 1) + "|"]
        lines += ["| " + " | ".join([r["method"], *(_cell(r.get(k, "")) for k in keys)]) + " |" for r in rows]
        lines += [""]
    lines += ["## Encode throughput (1,000 distinct prompts, best of 3)", "", "| method | prompts/s | s per 1,000 |", "|---|---|---|"]
    lines += [f"| {r['method']} | {r['prompts/s']:,.0f} | {1000 / r['prompts/s']:.2f} |" for r in rows if r.get("prompts/s")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="default", help="encoder name or directory (default: default)")
    parser.add_argument("--tree", type=Path, default=None, help="knowledge tree artifact (default: the shipped one)")
    parser.add_argument("--prompts", type=Path, default=None, help="free-text prompt set (default: found in knowledge_tree/)")
    parser.add_argument("--out", type=Path, default=ROOT / "evaluate" / "text_retrieval.md")
    parser.add_argument("-n", "--throughput-prompts", type=int, default=1000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    tree = load(args.tree)
    concepts = tree.concepts
    ours, base = load_encoder(args.encoder), load_encoder("base")
    training = (getattr(ours, "metadata", {}) or {}).get("training", {})
    fraction, seed = training.get("holdout_fraction", 0.15), training.get("holdout_seed", 0)
    pairs = build_pairs(concepts, fraction=fraction, seed=seed)
    prompt_path = args.prompts or find_prompt_set()
    sets = {
        "held-out synonyms": held_out_queries(pairs.held_out, concepts),
        "free-text prompts": read_prompt_set(prompt_path, concepts) if prompt_path else [],
        "laterality probes": laterality_probes(concepts),
    }
    trained_on = training.get("tree_fingerprint")
    if trained_on and trained_on != concepts_fingerprint(concepts):
        logging.warning("the encoder was trained on another version of the tree: new held-out synonyms may have been trained on")
    fair_tree = tree_without(tree, pairs.held_out)
    methods = {
        "(a) tree.resolve string matching": lambda s, q: rank_by_tree(fair_tree if s.startswith("held-out") else tree, q),
        "(b) base all-MiniLM-L6-v2": lambda s, q: rank_by_encoder(base.encode, concepts, q),
        f"(c) ours ({args.encoder})": lambda s, q: rank_by_encoder(ours.encode, concepts, q),
    }
    rows = evaluate(methods, sets, concepts)
    prompts = throughput_prompts([q for qs in sets.values() for q in qs], [c.name for c in concepts.values()], args.throughput_prompts)
    rows[1]["prompts/s"] = throughput(base.encode, prompts)
    rows[2]["prompts/s"] = throughput(ours.encode, prompts)
    facts = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "concepts (candidates)": len(concepts),
        "held-out synonyms": f"{len(pairs.held_out)} ({fraction:.0%} of synonyms, seed {seed}); never in training",
        "free-text prompt set": prompt_path.relative_to(ROOT) if prompt_path and prompt_path.is_relative_to(ROOT) else prompt_path,
        "encoder delta": training or "none",
        "same tree as in training": "unknown" if not trained_on else trained_on == concepts_fingerprint(concepts),
        "CPU": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end",
    }
    text = to_markdown(rows, sets, facts)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
