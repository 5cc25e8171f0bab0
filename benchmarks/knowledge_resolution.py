"""Measure the knowledge tree: size, class-list coverage, prompt-variant accuracy, resolve() latency.

Usage (from the project root):
    python benchmarks/knowledge_resolution.py                 # print the markdown report
    python benchmarks/knowledge_resolution.py --write-readme  # also update knowledge_tree/README.md

The terminology sources are read from ``../shared/terms`` beside the project (or ``--sources``).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sat.errors import UnknownTermError  # noqa: E402
from sat.knowledge import sources as src  # noqa: E402
from sat.knowledge.curated import read_cards, read_prompt_variants  # noqa: E402
from sat.knowledge.normalize import exact_key  # noqa: E402
from sat.knowledge.tree import KnowledgeTree, load  # noqa: E402

START, END = "<!-- measured:start -->", "<!-- measured:end -->"


def matched(tree: KnowledgeTree, name: str) -> bool:
    """A class name is covered when it matches a term exactly or by word order (no typo fix)."""
    _cid, how = tree.index.lookup(name)
    return how in ("exact", "bag")


def coverage_rows(tree: KnowledgeTree, sources: Path) -> list[tuple[str, list[str], list[str]]]:
    tasks = src.read_totalsegmentator_tasks(sources)
    lists = [
        ("TotalSegmentator `total`", tasks["total"]),
        ("TotalSegmentator `total_mr`", tasks["total_mr"]),
        (f"TotalSegmentator, all {len(tasks)} tasks", sorted({n for names in tasks.values() for n in names})),
        ("VISTA3D classes and dataset labels", sorted(src.read_vista3d(sources).names)),
        ("SAT vocabulary (451 unique names)", sorted(src.read_sat(sources).names)),
    ]
    rows = [(title, names, [n for n in names if not matched(tree, n)]) for title, names in lists]
    cards = read_cards(ROOT / "datasets")
    labels = [(c, lab) for c, card in cards.items() for lab in (card.get("labels") or {}).values()
              if isinstance(lab, dict) and not lab.get("skip")]
    missing = [f"{c}: {lab.get('name')}" for c, lab in labels if lab.get("concept") not in tree]
    rows.append((f"dataset-card labels ({len(cards)} cards in datasets/)", [str(x) for x in labels], missing))
    return rows


def variant_accuracy(tree: KnowledgeTree) -> tuple[int, int, Counter, Counter, list[str]]:
    rows = read_prompt_variants(ROOT / "knowledge_tree")
    import csv

    with open(ROOT / "knowledge_tree" / "prompt_variants.csv", encoding="utf-8") as handle:
        cats = {r["prompt"]: r.get("category", "") for r in csv.DictReader(x for x in handle if not x.startswith("#"))}
    ok, total, wrong = Counter(), Counter(), []
    for prompt, expected in rows:
        try:
            got = tree.resolve(prompt).id
        except UnknownTermError:
            got = "(unknown)"
        total[cats.get(prompt, "")] += 1
        if got == expected:
            ok[cats.get(prompt, "")] += 1
        else:
            wrong.append(f"{prompt!r} -> {got} (expected {expected})")
    return sum(ok.values()), len(rows), ok, total, wrong


def latency(tree: KnowledgeTree, texts: list[str], repeat: int = 200) -> float:
    times = []
    for _ in range(max(1, repeat // len(texts))):
        for text in texts:
            start = time.perf_counter()
            with contextlib.suppress(UnknownTermError):
                tree.resolve(text)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def report(sources: Path) -> str:
    start = time.perf_counter()
    load.cache_clear()
    tree = load()
    load_ms = (time.perf_counter() - start) * 1000
    n_terms = len({t.lower() for c in tree for t in c.terms})
    n_keys = len({exact_key(t) for c in tree for t in c.terms} - {""})
    lines = ["## Measured", "", "Produced by `python benchmarks/knowledge_resolution.py --write-readme`.", "",
             f"- concepts: **{len(tree)}** ({sum(bool(c.datasets) for c in tree)} labelled by some dataset, "
             f"{sum(c.is_lesion for c in tree)} lesion classes)",
             f"- distinct terms (names and synonyms, case-insensitive): **{n_terms}**; distinct after "
             f"normalisation (case, punctuation, plural, laterality words): {n_keys}",
             f"- cross-references: Uberon {sum('uberon' in c.xrefs for c in tree)}, ACR/RadLex "
             f"{sum('acr' in c.xrefs for c in tree)}, FMA {sum('fma' in c.xrefs for c in tree)}, UMLS "
             f"{sum('umls' in c.xrefs for c in tree)}, SNOMED {sum('snomed' in c.xrefs or 'snomed_type' in c.xrefs for c in tree)}"
             f", definitions {sum(bool(c.definition) for c in tree)}", "",
             "| class list | matched | % | unmatched |", "|---|---|---|---|"]
    for title, names, missing in coverage_rows(tree, sources):
        pct = 100 * (len(names) - len(missing)) / max(len(names), 1)
        shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "") if missing else "-"
        lines.append(f"| {title} | {len(names) - len(missing)}/{len(names)} | {pct:.1f} | {shown} |")
    ok, n, per_ok, per_total, wrong = variant_accuracy(tree)
    lines += ["", f"Prompt variants (`prompt_variants.csv`): **{ok}/{n} = {100 * ok / n:.1f}%** resolve to the "
              "expected concept.", "", "| category | correct |", "|---|---|"]
    lines += [f"| {c or '-'} | {per_ok[c]}/{per_total[c]} |" for c in sorted(per_total)]
    if wrong:
        lines += ["", "Misses: " + "; ".join(wrong)]
    exact = latency(tree, ["left kidney", "liver", "L3", "IVC", "kidney, left"])
    typo = latency(tree, ["left kidny", "spleeen", "gallbladdder", "cerebelum", "pancreass"], repeat=50)
    unknown = latency(tree, ["banana", "asdf", "kidney stone"], repeat=15)
    lines += ["", f"- `resolve()` median latency: exact/word-order hit {exact:.3f} ms, typo fallback {typo:.2f} ms, "
              f"unknown term (with 5 suggestions) {unknown:.1f} ms", f"- `load()` (first call, artifact "
              f"{(ROOT / 'sat/resources/knowledge_tree.json.gz').stat().st_size / 1e3:.0f} kB): {load_ms:.0f} ms"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=Path, default=ROOT.parent / "shared" / "terms")
    parser.add_argument("--write-readme", action="store_true", help="replace the measured section of the README")
    args = parser.parse_args(argv)
    text = report(args.sources)
    print(text)
    if args.write_readme:
        readme = ROOT / "knowledge_tree" / "README.md"
        body = readme.read_text(encoding="utf-8")
        if START not in body or END not in body:
            print(f"{readme} lacks the {START} / {END} markers", file=sys.stderr)
            return 1
        head, rest = body.split(START, 1)
        readme.write_text(f"{head}{START}\n{text}{END}{rest.split(END, 1)[1]}", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
