"""Side-by-side comparison of two methods (e.g. SAT vs per-dataset specialists) and its Dice plot.

Example:
    >>> import pandas as pd
    >>> a = pd.DataFrame({"method": "SAT", "dataset": "ct", "case": "b", "concept": ["liver"], "dice": [0.9], "nsd": [0.8]})
    >>> b = a.assign(method="specialist", dice=[0.8], nsd=[0.7])
    >>> compare(pd.concat([a, b]), a="SAT", b="specialist")[["concept", "dice_diff"]].round(2).values.tolist()
    [['liver', 0.1]]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sat.errors import InputError
from sat.evaluation.report import bootstrap_ci, per_person

__all__ = ["compare", "compare_people", "plot_compare", "read_results"]

KEYS = ["dataset", "case", "concept"]


def read_results(*paths: str | Path) -> pd.DataFrame:
    """Concatenate per-case result CSVs written by ``sat evaluate`` (error if a file is missing)."""
    frames = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"results file {path} not found; run `sat evaluate ... --out DIR` first")
        frame = pd.read_csv(path)
        missing = {"method", *KEYS, "dice"} - set(frame.columns)
        if missing:
            raise InputError(f"{path} lacks columns {sorted(missing)}; pass per_case.csv written by `sat evaluate`")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def compare(
    results: pd.DataFrame,
    *,
    a: str,
    b: str,
    metrics: tuple[str, ...] = ("dice", "nsd"),
    by: str = "concept",
    reference_present: bool = True,
) -> pd.DataFrame:
    """Per-``by`` table of method ``a`` vs ``b`` on the (dataset, case, class) rows both evaluated.

    Rows of one method only (the other produced nothing where the reference is empty, so
    ``evaluate`` skipped them) are scored 1 for the other method, the empty-mask convention.
    Columns: dataset, ``by``, n (paired cases), ``<m>_<a>``, ``<m>_<b>``, ``<m>_diff`` (a - b, mean
    of paired differences), ``<m>_diff_ci_low/high`` (95% bootstrap), and a final "mean" row over classes.
    With ``reference_present`` (default) only classes present in the reference are compared, so
    structures outside a case's field of view neither inflate nor deflate the means.
    """
    if reference_present and "gt_voxels" in results.columns:
        results = results.loc[results["gt_voxels"] > 0]
    methods = set(results["method"])
    for name in (a, b):
        if name not in methods:
            raise InputError(f"method {name!r} not in the results (have: {', '.join(sorted(methods))})")
    metrics = tuple(m for m in metrics if m in results.columns)
    cols = [*KEYS, *metrics]
    left = results.loc[results["method"] == a, cols]
    right = results.loc[results["method"] == b, cols]
    paired = left.merge(right, on=KEYS, how="outer", suffixes=(f"_{a}", f"_{b}"))
    if paired.empty or not set(left["case"]) & set(right["case"]):
        raise InputError(f"{a!r} and {b!r} share no evaluated case; did they use the same reference?")
    # a row only one method has: the other predicted nothing where the reference is empty -> 1 (convention)
    paired = paired.fillna({f"{m}_{s}": 0.0 if m == "hd95" else 1.0 for m in metrics for s in (a, b)})
    if by not in KEYS:
        if by not in results.columns:
            raise InputError(f"results have no column {by!r} to group by")
        paired[by] = paired["concept"].map(results.drop_duplicates("concept").set_index("concept")[by])
    group_keys = ["dataset", by] if by != "dataset" else ["dataset"]
    rows = []
    for key, group in paired.groupby(group_keys, sort=True):
        row = dict(zip(group_keys, key if isinstance(key, tuple) else (key,), strict=True))
        row["n"] = len(group)
        for m in metrics:
            diff = group[f"{m}_{a}"] - group[f"{m}_{b}"]
            row[f"{m}_{a}"], row[f"{m}_{b}"] = group[f"{m}_{a}"].mean(), group[f"{m}_{b}"].mean()
            row[f"{m}_diff"] = float(diff.mean())
            row[f"{m}_diff_ci_low"], row[f"{m}_diff_ci_high"] = bootstrap_ci(diff.to_numpy())
        rows.append(row)
    table = pd.DataFrame(rows)
    mean = {c: "mean" if c in group_keys else table[c].mean() for c in table.columns if c != "n"}
    mean["n"] = int(table["n"].sum())
    for m in metrics:  # interval of the mean over classes (classes resampled)
        mean[f"{m}_diff_ci_low"], mean[f"{m}_diff_ci_high"] = bootstrap_ci(table[f"{m}_diff"].to_numpy())
    return pd.concat([table, pd.DataFrame([mean])], ignore_index=True)[list(table.columns)]


def compare_people(results: pd.DataFrame, *, a: str, b: str, targets: dict[str, tuple[str, ...]],
                   metrics: tuple[str, ...] = ("dice", "nsd")) -> pd.DataFrame:
    """Per dataset: each person's mean over the targets for ``a`` and ``b``, the mean paired
    difference (a - b) and its 95 % bootstrap interval over people (people resampled, not classes).

    A target present in the reference that one method did not evaluate scores 0 for it.
    """
    people = per_person(results, targets, metrics=metrics).drop(columns=["split"], errors="ignore")
    paired = people[people["method"] == a].merge(people[people["method"] == b], on=["dataset", "case"],
                                                 suffixes=(f"_{a}", f"_{b}"))
    if paired.empty:
        raise InputError(f"{a!r} and {b!r} share no person with targets; did they use the same references?")
    rows = []
    for dataset, group in paired.groupby("dataset", sort=True):
        row: dict = {"dataset": dataset, "people": len(group)}
        for m in metrics:
            if f"{m}_{a}" not in group:
                continue
            diff = (group[f"{m}_{a}"] - group[f"{m}_{b}"]).to_numpy()
            row[f"{m}_{a}"], row[f"{m}_{b}"] = group[f"{m}_{a}"].mean(), group[f"{m}_{b}"].mean()
            row[f"{m}_diff"] = float(diff.mean())
            row[f"{m}_diff_ci_low"], row[f"{m}_diff_ci_high"] = bootstrap_ci(diff)
        rows.append(row)
    return pd.DataFrame(rows)


def plot_compare(
    table: pd.DataFrame, path: str | Path, *, a: str, b: str, metric: str = "dice", by: str = "concept", title: str = ""
) -> Path:
    """Grouped horizontal bars of ``<metric>_<a>`` vs ``<metric>_<b>`` per class; writes a PNG, returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [f"{metric}_{a}", f"{metric}_{b}"]
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise InputError(f"comparison table lacks {missing}; build it with compare(..., a={a!r}, b={b!r})")
    if by in table.columns and by != "dataset":
        labels = [f"{r['dataset']}: {r[by]}" if "dataset" in table.columns else str(r[by]) for _, r in table.iterrows()]
    else:
        labels = [str(r["dataset"]) for _, r in table.iterrows()]
    y = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.22 * len(table)))
    ax.barh(y - 0.2, table[cols[0]].to_numpy(dtype=float), height=0.4, label=a, color="#1f77b4")
    ax.barh(y + 0.2, table[cols[1]].to_numpy(dtype=float), height=0.4, label=b, color="#ff7f0e")
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(metric.upper() if metric != "dice" else "Dice")
    ax.set_title(title or f"{a} vs {b}: per-class {metric}", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
