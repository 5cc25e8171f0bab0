"""The shipped artifact against the real terminology sources (../shared/terms) and dataset cards."""

from __future__ import annotations

from pathlib import Path

import pytest

from sat.knowledge.build import build_data, dumps
from sat.knowledge.check import run_check
from sat.knowledge.sources import read_totalsegmentator_tasks, read_vista3d
from sat.knowledge.tree import artifact_path, load

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rebuilt(shared_terms: Path) -> dict:
    return build_data(shared_terms, ROOT / "knowledge_tree", cards=ROOT / "datasets")


@pytest.mark.realdata
@pytest.mark.slow
def test_shipped_artifact_is_not_stale(rebuilt: dict) -> None:
    assert artifact_path().read_bytes() == dumps(rebuilt), "artifact is stale: run `sat terms build`"


@pytest.mark.realdata
@pytest.mark.slow
def test_coverage(rebuilt: dict, shared_terms: Path) -> None:
    tree = load()
    tasks = read_totalsegmentator_tasks(shared_terms)
    for task in ("total", "total_mr"):
        missing = [n for n in tasks[task] if n.lower() not in tree]
        assert missing == [], f"{task}: no concept with the TotalSegmentator id {missing}"
    assert rebuilt["coverage"]["vista3d"]["unmatched"] == []
    assert rebuilt["coverage"]["vista3d"]["matched"] == len(read_vista3d(shared_terms).names)
    sat = rebuilt["coverage"]["sat"]
    assert sat["matched"] / sat["total"] >= 0.95


@pytest.mark.realdata
@pytest.mark.slow
def test_check_passes_on_project(shared_terms: Path) -> None:
    report = run_check(shared_terms, ROOT / "knowledge_tree", cards=ROOT / "datasets")
    assert report.ok, report.text()
