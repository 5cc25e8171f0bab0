"""Refresh the result tables of evaluate/README.md (between the results markers)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pandas as pd

START, END = "<!-- results:start (written by run_comparison.py) -->", "<!-- results:end -->"


def _compact(table: pd.DataFrame, a: str | None) -> pd.DataFrame:
    keep = [c for c in table.columns if ("_ci_" not in c and not c.endswith("_std")) or c.startswith("dice")]
    return table[keep]


def _specialists_only(tables: dict[str, pd.DataFrame]) -> list[str]:
    from sat.evaluation.report import to_markdown

    per_class = tables["specialist_per_class"]
    cols = ["dataset", "concept", "n", "dice_mean", "nsd_mean"]
    parts = ["**No SAT model was evaluated in this run** (`--specialists-only`): the tables show the",
             "specialist baseline alone. Run `evaluate/run_comparison.py` to add SAT.", "",
             "### Specialists per split (Dice / NSD at 1 mm; `train` = the specialist's own training case)", "",
             to_markdown(tables["specialist_per_split"]), "",
             "### Specialists per class", "", to_markdown(per_class[[c for c in cols if c in per_class.columns]]), ""]
    return parts


def render(tables: dict[str, pd.DataFrame], *, a: str | None, model: str | None) -> str:
    """Markdown of the comparison tables (``tables`` as returned by run_comparison.write_results)."""
    from sat.evaluation.report import to_markdown

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"Generated {stamp} by `evaluate/run_comparison.py` ({a or 'specialists only'}"
             f"{f' = {model}' if a else ''}).", ""]
    if a is None:
        parts += _specialists_only(tables)
        parts += ["### Cost", "", to_markdown(tables["cost"]), ""]
        return "\n".join(parts)
    titles = {
        "people": "Mean over each dataset's target structures, per person, then over people (95 % bootstrap "
                  "interval over people); `train` rows are training cases",
        "compare_people": "Validation people: SAT - specialist, mean over the targets, interval over people",
        "compare_validation": "Validation people, per class: Dice / NSD at 1 mm",
        "compare_held-out": "Held-out case (subject B), per class: Dice / NSD at 1 mm",
        "compare_train": "Training cases (subject A CT, the MR case): NOT held out, shown for reference",
        "cost": "Parameters and inference time (CPU, same threads; seconds per case incl. loading the image)",
    }
    for key, title in titles.items():
        if key in tables:
            parts += [f"### {title}", "", to_markdown(_compact(tables[key], a)), ""]
    parts += ["Plots: `results/compare_dice_validation.png`, `results/compare_dice_held-out.png`, "
              "`results/compare_dice_train.png`.", ""]
    return "\n".join(parts)


def update_readme(path: Path, tables: dict[str, pd.DataFrame], *, a: str | None, model: str | None) -> None:
    """Replace the block between the markers of ``path`` with freshly rendered tables (atomic)."""
    text = path.read_text()
    if START not in text or END not in text:
        text = text.rstrip() + f"\n\n## Current results\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"{head}{START}\n{render(tables, a=a, model=model)}{END}{tail}")
    tmp.replace(path)
