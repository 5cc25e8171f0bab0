"""Aggregation with bootstrap intervals, markdown/CSV tables, method comparison and its plot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sat.errors import InputError
from sat.evaluation.compare import compare, plot_compare, read_results
from sat.evaluation.report import aggregate, bootstrap_ci, summary_tables, to_markdown, write_tables


def _results(method: str, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for case in range(8):
        for concept, region, kind in (("liver", "abdomen", "organ"), ("liver_tumor", "abdomen", "lesion"),
                                      ("heart", "thorax", "organ")):
            d = float(np.clip(0.8 - shift + 0.05 * rng.standard_normal(), 0, 1))
            rows.append({"method": method, "dataset": "ds", "case": f"c{case}", "concept": concept,
                         "region": region, "kind": kind, "dice": d, "nsd": d - 0.1, "hd95": np.nan})
    return pd.DataFrame(rows)


def test_bootstrap_ci_properties():
    x = np.linspace(0.5, 0.9, 20)
    low, high = bootstrap_ci(x)
    assert low < x.mean() < high and high - low < 0.2
    assert bootstrap_ci(x) == (low, high)  # fixed seed: reproducible
    assert bootstrap_ci([0.7]) == (0.7, 0.7) and bootstrap_ci([0.3, 0.3]) == (0.3, 0.3)
    assert all(np.isnan(bootstrap_ci([np.nan])))
    wide = bootstrap_ci(x, level=0.99)
    assert wide[0] <= low and wide[1] >= high


def test_aggregate_groups():
    df = _results("SAT", 0.0)
    table = aggregate(df, ["concept"])
    liver = table.set_index("concept").loc["liver"]
    vals = df[df.concept == "liver"].dice
    assert liver["n"] == 8 and liver["dice_mean"] == pytest.approx(vals.mean())
    assert liver["dice_std"] == pytest.approx(vals.std(ddof=1))
    assert liver["dice_ci_low"] < liver["dice_mean"] < liver["dice_ci_high"]
    assert "hd95_mean" not in table.columns  # all-NaN metrics are left out
    tables = summary_tables(df)
    assert set(tables) == {"per_case", "per_class", "per_dataset", "per_region", "per_kind"}
    assert set(tables["per_kind"]["kind"]) == {"organ", "lesion"}
    assert tables["per_region"].set_index("region").loc["abdomen", "n"] == 16


def test_markdown_and_files(tmp_path):
    md = to_markdown(pd.DataFrame({"a": ["x|y"], "b": [0.12345], "c": [np.nan]}))
    assert md.splitlines() == ["| a | b | c |", "|---|---|---|", "| x/y | 0.123 |  |"]
    paths = write_tables(summary_tables(_results("SAT", 0.0)), tmp_path, prefix="sat_")
    assert (tmp_path / "sat_per_class.csv").is_file() and (tmp_path / "sat_per_class.md").is_file()
    assert len(paths) == 10 and pd.read_csv(tmp_path / "sat_per_case.csv").shape[0] == 24


def test_compare_table_and_plot(tmp_path):
    both = pd.concat([_results("SAT", 0.0), _results("specialist", 0.1)])
    table = compare(both, a="SAT", b="specialist")
    assert list(table.concept) == ["heart", "liver", "liver_tumor", "mean"]
    assert table["dice_diff"].iloc[:3].to_numpy() == pytest.approx([0.1, 0.1, 0.1], abs=0.02)
    assert (table.dice_diff_ci_low <= table.dice_diff).all() and (table.n.iloc[:3] == 8).all()
    by_kind = compare(both, a="SAT", b="specialist", by="kind")
    assert set(by_kind.kind) == {"organ", "lesion", "mean"}
    png = plot_compare(table[table.concept != "mean"], tmp_path / "cmp.png", a="SAT", b="specialist")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="'nnunet' not in the results"):
        compare(both, a="SAT", b="nnunet")


def test_compare_fills_rows_of_one_method_with_the_empty_convention():
    sat = _results("SAT", 0.0)
    spec = _results("specialist", 0.0)
    extra = sat.iloc[[0]].assign(concept="heart_fp", dice=0.0, nsd=0.0)  # SAT false positive, absent elsewhere
    table = compare(pd.concat([sat, extra, spec]), a="SAT", b="specialist").set_index("concept")
    assert table.loc["heart_fp", "dice_SAT"] == 0.0 and table.loc["heart_fp", "dice_specialist"] == 1.0


def test_read_results_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_results(tmp_path / "nope.csv")
    pd.DataFrame({"x": [1]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match="lacks columns"):
        read_results(tmp_path / "bad.csv")
