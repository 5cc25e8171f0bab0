"""Aggregated tables (mean, std, 95% bootstrap interval) written as CSV and markdown.

Grouping is by any columns of the per-case table of :func:`sat.evaluation.evaluate`: per class
(``concept``), per ``dataset``, per body ``region`` and per ``kind`` (organ vs lesion, from
the knowledge tree). The bootstrap resamples the rows of each group (cases for a per-class
table; case x class pairs for coarser groups) with a fixed seed: percentile interval.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"concept": ["liver"] * 3, "dice": [0.9, 0.8, 0.85], "nsd": [0.7, 0.6, 0.65]})
    >>> aggregate(df, by=["concept"])[["concept", "n", "dice_mean"]].round(2).values.tolist()
    [['liver', 3, 0.85]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sat._atomic import atomic_write_bytes

__all__ = ["GROUPINGS", "aggregate", "bootstrap_ci", "over_people", "per_person", "summary_tables", "to_markdown",
           "write_table", "write_tables"]

GROUPINGS: dict[str, list[str]] = {
    "per_class": ["method", "dataset", "concept"],
    "per_dataset": ["method", "dataset"],
    "per_region": ["method", "region"],
    "per_kind": ["method", "kind"],
}


def bootstrap_ci(values: Sequence[float], *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (NaNs dropped; a single value gives a zero-width interval)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1 or np.all(x == x[0]):
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def aggregate(
    df: pd.DataFrame, by: Sequence[str], *, metrics: Sequence[str] = ("dice", "nsd"), n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """One row per group: ``n`` and for each metric ``<m>_mean``, ``<m>_std`` (ddof=1, NaN if n=1),
    ``<m>_ci_low``, ``<m>_ci_high`` (95% percentile bootstrap of the mean)."""
    metrics = [m for m in metrics if m in df.columns and df[m].notna().any()]
    rows = []
    for key, group in df.groupby(list(by), sort=True, dropna=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        row["n"] = len(group)
        for m in metrics:
            vals = group[m].to_numpy(dtype=np.float64)
            low, high = bootstrap_ci(vals, n_boot=n_boot, seed=seed)
            finite = vals[np.isfinite(vals)]
            row[f"{m}_mean"] = float(finite.mean()) if finite.size else float("nan")
            row[f"{m}_std"] = float(finite.std(ddof=1)) if finite.size > 1 else float("nan")
            row[f"{m}_ci_low"], row[f"{m}_ci_high"] = low, high
        rows.append(row)
    return pd.DataFrame(rows)


def per_person(df: pd.DataFrame, targets: Mapping[str, Sequence[str]], *,
               metrics: Sequence[str] = ("dice", "nsd")) -> pd.DataFrame:
    """One row per (method, dataset, case): the mean of each metric over the dataset's ``targets``.

    Only target structures present in the reference count (``gt_voxels > 0`` where that column
    exists); ``n_targets`` says how many. Datasets without targets, and cases a method made no
    prediction for (``status`` "missing"), are left out.

    Example:
        >>> df = pd.DataFrame({"method": "SAT", "dataset": "ct", "case": ["p1", "p1", "p2"],
        ...                    "concept": ["liver", "spleen", "liver"], "dice": [0.9, 0.7, 0.6]})
        >>> per_person(df, {"ct": ["liver", "spleen"]})["dice"].round(2).tolist()
        [0.8, 0.6]
    """
    rows = df[df["dataset"].isin(list(targets))]
    rows = rows[[c in targets[d] for d, c in zip(rows["dataset"], rows["concept"], strict=True)]]
    if "gt_voxels" in rows.columns:
        rows = rows[rows["gt_voxels"] > 0]
    if "status" in rows.columns:
        rows = rows[rows["status"] != "missing"]
    metrics = [m for m in metrics if m in rows.columns]
    keys = [k for k in ("method", "split", "dataset", "case") if k in rows.columns]
    out = rows.groupby(keys, sort=True)[metrics].mean().reset_index()
    return out.merge(rows.groupby(keys).size().rename("n_targets").reset_index(), on=keys)


def over_people(df: pd.DataFrame, targets: Mapping[str, Sequence[str]], *,
                metrics: Sequence[str] = ("dice", "nsd")) -> pd.DataFrame:
    """Per (method, split, dataset): mean over people of :func:`per_person`, with its bootstrap interval
    over people (each person's mean over the targets is one sample; classes are never resampled)."""
    people = per_person(df, targets, metrics=metrics)
    by = [k for k in ("method", "split", "dataset") if k in people.columns]
    return aggregate(people, by, metrics=metrics).rename(columns={"n": "people"})


def summary_tables(df: pd.DataFrame, *, metrics: Sequence[str] = ("dice", "nsd", "hd95")) -> dict[str, pd.DataFrame]:
    """The standard set: ``per_case`` (input) plus every grouping of :data:`GROUPINGS`."""
    tables = {"per_case": df}
    for name, by in GROUPINGS.items():
        tables[name] = aggregate(df, [c for c in by if c in df.columns], metrics=metrics)
    return tables


def _fmt(value: object, digits: int) -> str:
    if isinstance(value, float | np.floating):
        return "" if np.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def to_markdown(df: pd.DataFrame, *, digits: int = 3) -> str:
    """A GitHub markdown table of ``df`` (floats rounded to ``digits``)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v, digits).replace("|", "/") for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, path: str | Path, *, markdown: bool = True) -> list[Path]:
    """Write ``path`` (.csv) and, with ``markdown``, the same table as ``.md`` beside it (atomic)."""
    path = Path(path).with_suffix(".csv")
    atomic_write_bytes(path, df.to_csv(index=False, float_format="%.6g").encode("utf-8"))
    out = [path]
    if markdown:
        atomic_write_bytes(path.with_suffix(".md"), to_markdown(df).encode("utf-8"))
        out.append(path.with_suffix(".md"))
    return out


def write_tables(tables: Mapping[str, pd.DataFrame], directory: str | Path, *, prefix: str = "") -> list[Path]:
    """Write every table as ``<directory>/<prefix><name>.csv`` + ``.md``; returns the paths."""
    out: list[Path] = []
    for name, table in tables.items():
        out += write_table(table, Path(directory) / f"{prefix}{name}.csv", markdown=name != "per_case" or len(table) < 400)
    return out
