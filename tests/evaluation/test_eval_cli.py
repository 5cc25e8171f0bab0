"""`sat evaluate` and `sat evaluate compare`: outputs and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import box, write_label

from sat.cli import main

SHAPE = (16, 12, 8)


@pytest.fixture
def folders(tmp_path, fake_tree):
    gt = np.zeros(SHAPE, np.uint8)
    gt[box(SHAPE, (2, 2, 2), (8, 8, 6))] = 1
    gt[box(SHAPE, (9, 2, 2), (14, 9, 6))] = 2
    pred = np.roll(gt, 1, axis=0)
    for case in ("a", "b"):
        write_label(tmp_path / "gt" / f"{case}.nii.gz", gt)
    write_label(tmp_path / "pred" / "a.nii.gz", pred)
    write_label(tmp_path / "spec" / "a.nii.gz", gt)
    write_label(tmp_path / "spec" / "b.nii.gz", gt)
    (tmp_path / "labels.json").write_text(json.dumps({"1": "liver", "2": "spleen"}))
    return tmp_path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_evaluate_writes_tables_and_reports_missing(folders, capsys):
    t = folders
    code = main(["evaluate", "--pred", str(t / "pred"), "--gt", str(t / "gt"), "--labels", str(t / "labels.json"),
                 "--method", "SAT", "--dataset", "toy", "--out", str(t / "out_sat"), "--hd95"])
    out = capsys.readouterr().out
    assert code == 0 and "missing predictions (scored empty): b" in out and "| liver |" in out
    df = pd.read_csv(t / "out_sat" / "per_case.csv")
    assert len(df) == 4 and set(df.status) == {"ok", "missing"} and df.hd95.notna().all()
    for name in ("per_class", "per_dataset", "per_region", "per_kind"):
        assert (t / "out_sat" / f"{name}.md").is_file()
    assert main(["evaluate", "--pred", str(t / "spec"), "--gt", str(t / "gt"), "--labels", str(t / "labels.json"),
                 "--method", "specialist", "--dataset", "toy", "--out", str(t / "out_spec")]) == 0
    capsys.readouterr()
    code = main(["evaluate", "compare", str(t / "out_sat" / "per_case.csv"), str(t / "out_spec" / "per_case.csv"),
                 "--out", str(t / "cmp")])
    assert code == 0 and "dice_diff" in capsys.readouterr().out
    table = pd.read_csv(t / "cmp" / "compare.csv")
    assert list(table.concept) == ["liver", "spleen", "mean"] and (table.dice_diff < 0).all()
    assert (t / "cmp" / "compare_dice.png").stat().st_size > 1000 and (t / "cmp" / "compare.md").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pred", "{t}/nope", "--gt", "{t}/gt", "--labels", "{t}/labels.json"], "--pred {t}/nope does not exist"),
        (["--pred", "{t}/pred", "--gt", "{t}/missing", "--labels", "{t}/labels.json"], "--gt {t}/missing does not exist"),
        (["--pred", "{t}/pred", "--gt", "{t}/gt"], "exactly one of --card"),
        (["--gt", "{t}/gt", "--labels", "{t}/labels.json"], "needs --pred DIR and --gt DIR"),
        (["--pred", "{t}/pred", "--gt", "{t}/gt", "--labels", "{t}/none.json"], "label mapping file"),
        (["--pred", "{t}/pred", "--gt", "{t}/gt", "--labels", "{t}/bad.json"], "'kidneyz' is not a concept"),
        (["--pred", "{t}/pred", "--gt", "{t}/gt", "--labels", "{t}/labels.json", "--class-tolerance", "liver"],
         "NAME=MM"),
        (["compare", "{t}/none.csv"], "results file"),
    ],
)
def test_errors_are_one_line(folders, capsys, args, message):
    (folders / "bad.json").write_text(json.dumps({"1": "kidneyz"}))
    argv = ["evaluate", *[a.format(t=folders) for a in args]]
    assert main(argv) == 1
    line = _error_line(capsys)
    assert line.startswith("sat evaluate: error:") and message.format(t=folders) in line


def test_help_lists_compare(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--help"])
    assert exc.value.code == 0 and "compare" in capsys.readouterr().out
