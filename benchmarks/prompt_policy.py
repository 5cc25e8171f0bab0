"""What a shipped model answers for every knowledge-tree concept, and why the default refuses the rest.

Usage (from the project root)::

    python benchmarks/prompt_policy.py                 # print the markdown report
    python benchmarks/prompt_policy.py --model sat-tiny --out evaluate/prompt_policy.md

Part 1 plans every concept of the tree (its id as the prompt) with the default
``on_untrained="error"``: a trained concept, a union of trained descendants (complete or
partial), or refused. No inference. Part 2 (needs ``../shared``) segments the abdominal example
CT: prompts the model never learnt, asked with ``on_untrained="text"``, still give masks of
tens of millilitres, which is what the default prevents; and a union equals its members.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXAMPLE_CT = "data/ct/totalseg_abdomen/example_ct.nii.gz"
UNTRAINED = ["brain", "left femur", "zzqx blorp"]


def plan_every_concept(segmenter) -> tuple[Counter, int, list[str]]:
    """Counts of how the default policy answers each tree concept, the total, and a few partial unions."""
    from sat import knowledge
    from sat.errors import UntrainedPromptError
    from sat.knowledge.prompts import plan_prompts

    tree = knowledge.load()
    counts, partial = Counter(), []
    for concept in tree:
        try:
            (plan,) = plan_prompts(tree, [concept.id], segmenter.concepts)
        except UntrainedPromptError:
            counts["refused (on_untrained='error')"] += 1
            continue
        kind = "union, partial" if plan.missing else plan.kind
        counts[{"concept": "trained concept", "union": "union, complete"}.get(kind, kind)] += 1
        if plan.missing and len(partial) < 6:
            partial.append(f"{concept.id} ({len(plan.members)} trained, {len(plan.missing)} left out)")
    return counts, len(tree), partial


def example_ct(segmenter, shared: Path) -> list[str]:
    """Millilitres the model gives untrained prompts as free text, and the kidneys union check."""
    import numpy as np

    import sat

    volume = sat.io.load(shared / EXAMPLE_CT)
    seg = segmenter.segment(volume, [*UNTRAINED, "kidneys", "left kidney", "right kidney"], on_untrained="text")
    lines = [f"- `{p}` with `on_untrained='text'`: **{seg.voxels(p) * seg.voxel_ml:.0f} ml** "
             f"({seg.labels[i + 1].note})" for i, p in enumerate(UNTRAINED)]
    try:
        segmenter.segment(volume, UNTRAINED)
    except sat.errors.UntrainedPromptError as err:
        lines.append(f"- default `on_untrained='error'`: no mask; `{str(err)[:160]}...`")
    both = np.asarray(seg["left kidney"]) | np.asarray(seg["right kidney"])
    lines.append(f"- `kidneys`: {seg.voxels('kidneys')} voxels; left | right: {int(both.sum())} voxels; "
                 f"identical masks: {bool(np.array_equal(np.asarray(seg['kidneys']), both))}")
    return lines


def report(model: str, shared: Path) -> str:
    import sat

    segmenter = sat.load_model(model, device="cpu")
    counts, total, partial = plan_every_concept(segmenter)
    answered = total - counts["refused (on_untrained='error')"]
    lines = ["# Prompts a model was not trained on", "",
             f"Model `{model}` ({len(segmenter.concepts)} trained concepts); every one of the {total} "
             "knowledge-tree concepts asked by id, default policy:", "", "| answer | concepts |", "|---|---|"]
    lines += [f"| {kind} | {n} |" for kind, n in sorted(counts.items())]
    lines += ["", f"**{answered} of {total}** concepts give a mask by default (before the policy: all {total}, "
              "the rest through the free-text encoder).", "", "Partial unions, e.g.: " + "; ".join(partial), ""]
    if (shared / EXAMPLE_CT).is_file():
        lines += [f"Abdominal example CT (`{EXAMPLE_CT}`):", "", *example_ct(segmenter, shared), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sat-tiny", help="shipped model name or folder (default sat-tiny)")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="shared data folder")
    parser.add_argument("--out", type=Path, default=None, help="also write the report to this markdown file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    text = report(args.model, args.shared)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
