"""`prepare`: cache format, resumability, skipping up-to-date cases, corrupt cases reported not fatal."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datafixtures import card, image, label, nifti, pair

from sat.data.cache import INDEX_COLUMNS, dataset_concepts, prepare
from sat.data.cards import card_from_dict, load_card
from sat.preprocess import CT_SCALE

LABELS = {1: {"name": "liver", "concept": "liver"}, 2: {"name": "spleen", "concept": "spleen"},
          5: {"name": "liver part", "concept": "liver"}, 7: {"name": "scribble", "skip": "demo"}}


def _dataset(root: Path, *, corrupt: bool = True):
    pair(root / "a_img.nii.gz", root / "a_lab.nii.gz", values=(1, 2))
    pair(root / "b_img.nii.gz", root / "b_lab.nii.gz", values=(5, 7), seed=1)
    cases = [{"id": "a", "image": "a_img.nii.gz", "label": "a_lab.nii.gz"},
             {"id": "b", "image": "b_img.nii.gz", "label": "b_lab.nii.gz", "split": "val"}]
    if corrupt:
        (root / "c_img.nii.gz").write_bytes(b"\x1f\x8b\x08 this is not a gzip stream")
        nifti(root / "c_lab.nii.gz", label())
        cases.append({"id": "c", "image": "c_img.nii.gz", "label": "c_lab.nii.gz"})
    return card_from_dict(card("toy", "files", LABELS, cases=cases, splits={"test": ["a"]}))


def test_prepare_writes_the_documented_cache(tmp_path):
    c = _dataset(tmp_path / "raw")
    report = prepare([c], tmp_path / "cache", roots={"toy": tmp_path / "raw"}, spacing=4.0, workers=1,
                     progress=False)
    assert sorted(report.prepared) == ["toy/a", "toy/b"]
    assert list(report.failed) == ["toy/c"] and "\n" not in report.failed["toy/c"]
    index = pd.read_csv(tmp_path / "cache" / "index.csv", dtype=str, keep_default_na=False)
    assert tuple(index.columns) == INDEX_COLUMNS
    rows = index.set_index("case")
    assert rows.loc["a", "split"] == "test" and rows.loc["b", "split"] == "val"
    assert rows.loc["a", "concepts"] == "liver;spleen" and rows.loc["b", "concepts"] == "liver"
    assert rows.loc["a", "labelled"] == "liver;spleen" and rows.loc["a", "modality"] == "ct"
    assert rows.loc["a", "spacing"] == "4,3.5,3.75" and rows.loc["a", "shape"] == "4x4x4"
    data = np.load(tmp_path / "cache" / rows.loc["a", "file"])
    assert data["image"].dtype == np.float16 and data["label"].dtype == np.uint16
    assert data["image"].shape == data["label"].shape == (4, 4, 4)
    assert list(data["values"]) == [1, 2] and list(data["concepts"]) == ["liver", "spleen"]
    assert (float(data["intensity_mean"]), float(data["intensity_std"])) == CT_SCALE  # HU = mean + std * value
    b = np.load(tmp_path / "cache" / "toy" / "b.npz")
    assert set(np.unique(b["label"]).tolist()) <= {0, 1}  # 5 -> liver (1); skipped 7 -> background
    report_json = json.loads((tmp_path / "cache" / "report.json").read_text())
    assert list(report_json["failed"]) == ["toy/c"]
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_rerun_skips_up_to_date_and_redoes_changed_cases(tmp_path):
    raw, cache = tmp_path / "raw", tmp_path / "cache"
    c = _dataset(raw)
    kwargs = {"roots": {"toy": raw}, "spacing": 4.0, "workers": 1, "progress": False}
    prepare([c], cache, **kwargs)
    stamp = (cache / "toy" / "a.npz").stat().st_mtime_ns
    again = prepare([c], cache, **kwargs)
    assert sorted(again.up_to_date) == ["toy/a", "toy/b"] and again.prepared == [] and list(again.failed) == ["toy/c"]
    assert (cache / "toy" / "a.npz").stat().st_mtime_ns == stamp
    assert len(again.index) == 2
    sidecar = cache / "toy" / "a.json"  # a CT case made with another intensity scale is redone
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "ct_scale": [0.0, 1.0]}))
    assert prepare([c], cache, **kwargs).prepared == ["toy/a"]
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "format": 1}))  # an older npz format
    assert prepare([c], cache, **kwargs).prepared == ["toy/a"]
    future = time.time() + 5
    os.utime(raw / "b_lab.nii.gz", (future, future))
    third = prepare([c], cache, **kwargs)
    assert third.prepared == ["toy/b"] and third.up_to_date == ["toy/a"]
    fourth = prepare([c], cache, **{**kwargs, "spacing": 5.0})
    assert sorted(fourth.prepared) == ["toy/a", "toy/b"]
    assert sorted(prepare([c], cache, **{**kwargs, "spacing": 5.0}, force=True).prepared) == ["toy/a", "toy/b"]


def test_index_keeps_other_datasets_and_an_interrupted_run_resumes(tmp_path):
    raw, cache = tmp_path / "raw", tmp_path / "cache"
    c = _dataset(raw, corrupt=False)
    other = card_from_dict(card("other", "files", LABELS, cases=[{"id": "z", "image": "a_img.nii.gz",
                                                                  "label": "a_lab.nii.gz"}]))
    prepare([c], cache, roots={"toy": raw}, spacing=4.0, workers=1, progress=False)
    (cache / "index.csv").unlink()  # as if the run was killed before writing the index
    report = prepare([other], cache, roots={"other": raw}, spacing=4.0, workers=1, progress=False)
    assert report.index["dataset"].tolist() == ["other"]
    report = prepare([c, other], cache, roots={"toy": raw, "other": raw}, spacing=4.0, workers=1, progress=False)
    assert sorted(report.up_to_date) == ["other/z", "toy/a", "toy/b"]
    assert sorted(report.index["dataset"].unique()) == ["other", "toy"]
    report = prepare([c], cache, roots={"toy": raw}, spacing=4.0, workers=1, progress=False)
    assert sorted(report.index["dataset"].unique()) == ["other", "toy"]


def test_parallel_workers_give_the_same_cache(tmp_path):
    raw = tmp_path / "raw"
    c = _dataset(raw)
    report = prepare([c], tmp_path / "cache", roots={"toy": raw}, spacing=4.0, workers=2, progress=False)
    assert sorted(report.prepared) == ["toy/a", "toy/b"] and list(report.failed) == ["toy/c"]


def test_dataset_concepts_are_unique_and_ordered():
    c = card_from_dict(card("toy", "files", LABELS))
    assert dataset_concepts(c) == ["liver", "spleen"]


def test_image_fixture_is_ct_like():
    assert image().min() == -1000


@pytest.mark.realdata
def test_prepare_one_small_real_case(shared_data, tmp_path):
    c = load_card(Path(__file__).resolve().parents[2] / "datasets" / "tumor_rois_breast.yaml")
    report = prepare([c], tmp_path, shared=shared_data.parent, workers=1, progress=False)
    assert report.prepared == ["tumor_rois_breast/breast1"] and not report.failed
    row = report.index.iloc[0]
    assert row["concepts"] == "breast_tumor" and row["split"] == "train"
    data = np.load(tmp_path / row["file"])
    assert data["label"].shape == tuple(int(s) for s in row["shape"].split("x"))
    assert int((data["label"] == 1).sum()) > 0
    assert abs(float(data["image"].astype(np.float32).mean())) < 5
