"""`sat segment` and `sat models` through sat.cli.main (exit codes, files, one-line errors)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from phantom import make_phantom

import sat.model
from sat import api, io
from sat.cli import main

CONCEPTS = ["liver", "spleen", "kidney_left", "kidney_right"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_model):
    return tiny_model(tmp_path_factory.mktemp("models") / "tiny-test", CONCEPTS)


@pytest.fixture(scope="module")
def ct_path(tmp_path_factory):
    ph = make_phantom(spacing=(12.0, 12.0, 12.0))
    return io.save(ph.image, tmp_path_factory.mktemp("ct") / "ct.nii.gz")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_segment_writes_outputs(model_dir, ct_path, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["segment", str(ct_path), "-p", "liver", "-p", "left kidney", "-o", str(out),
                 "--model", str(model_dir), "--device", "cpu", "--png", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "left kidney" in printed and "voxels" in printed and "overlay" in printed
    assert {p.name for p in out.iterdir()} == {"labelmap.nii.gz", "liver.nii.gz", "left_kidney.nii.gz",
                                               "labels.json", "overlay.png"}
    ref = nib.load(ct_path)
    lab = nib.load(out / "labelmap.nii.gz")
    assert lab.shape == ref.shape
    np.testing.assert_allclose(lab.affine, ref.affine, atol=1e-4)
    labels = json.loads((out / "labels.json").read_text())["labels"]
    assert [(x["value"], x["prompt"], x["concept"]) for x in labels] == [(1, "liver", "liver"),
                                                                        (2, "left kidney", "kidney_left")]


def test_segment_modality_flag(model_dir, ct_path, tmp_path):
    out = tmp_path / "pet"
    assert main(["segment", str(ct_path), "-p", "liver", "-o", str(out), "--model", str(model_dir), "--modality", "pet",
                 "--no-progress"]) == 0
    assert json.loads((out / "labels.json").read_text())["modality"] == "pet"


def test_allocator_is_tuned_only_when_asked(model_dir, ct_path, tmp_path, monkeypatch):
    from sat.model import allocator

    calls = []
    monkeypatch.setattr(allocator, "tune", lambda: calls.append(1) or True)
    base = ["segment", str(ct_path), "-p", "liver", "--model", str(model_dir), "--no-progress"]
    assert main([*base, "-o", str(tmp_path / "a")]) == 0 and calls == []
    assert main([*base, "-o", str(tmp_path / "b"), "--tune-allocator"]) == 0 and calls == [1]


def test_segment_all_concepts(model_dir, ct_path, tmp_path):
    out = tmp_path / "all"
    assert main(["segment", str(ct_path), "--all", "-o", str(out), "--model", str(model_dir),
                 "--no-progress"]) == 0
    labels = json.loads((out / "labels.json").read_text())["labels"]
    assert [x["concept"] for x in labels] == CONCEPTS
    assert all((out / x["file"]).is_file() for x in labels)


@pytest.mark.parametrize("args,match", [
    (["MISSING", "-p", "liver"], "no such file"),
    (["CT", "-p", ""], "empty prompt"),
    (["CT", "-p", "liver", "--model", "no-such-model"], "unknown model 'no-such-model'; shipped models"),
    (["CT", "-p", "liver", "--threshold", "2"], "threshold"),
    (["CT", "-p", "liver", "--presence-veto", "1.5"], "presence_veto must be a probability"),
    (["CT", "-p", "liver", "--point", "1,2"], "--point '1,2' is not X,Y,Z,SIGN"),
    (["CT", "-p", "liver", "--point", "1,2,3,?"], "is not X,Y,Z,SIGN"),
    (["CT", "-p", "liver", "--box", "1,2,3,4,5"], "--box '1,2,3,4,5' is not X0,Y0,Z0,X1,Y1,Z1"),
    (["CT", "-p", "liver", "-p", "spleen", "--point", "1,2,3,+"], "steer one prompt"),
    (["CT"], "give prompts with -p"),
    (["CT", "--point", "1,2,3,+"], "has no prompt head"),
])
def test_segment_errors(args, match, model_dir, ct_path, tmp_path, capsys):
    args = [str(ct_path) if a == "CT" else str(tmp_path / "nope.nii.gz") if a == "MISSING" else a for a in args]
    if "--model" not in args:
        args += ["--model", str(model_dir)]
    out = tmp_path / "out"
    assert main(["segment", *args, "-o", str(out), "--no-progress"]) == 1
    line = _error_line(capsys)
    assert line.startswith("sat segment: error:") and match in line
    assert not out.exists()  # never a partial output


def test_untrained_prompts_stop_with_suggestions_or_follow_the_flag(model_dir, ct_path, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["segment", str(ct_path), "-p", "liver", "-p", "brain", "-o", str(out), "--model", str(model_dir),
            "--no-progress"]
    assert main(base) == 1
    line = _error_line(capsys)
    assert "'brain' (brain) is not a concept model 'tiny-test' was trained on (nearest trained: " in line
    assert "--on-untrained empty" in line and not out.exists()
    assert main([*base, "--on-untrained", "empty"]) == 0
    assert "not trained: empty" in capsys.readouterr().out
    labels = json.loads((out / "labels.json").read_text())
    assert labels["on_untrained"] == "empty"
    brain = labels["labels"][1]
    assert (brain["kind"], brain["concept"], brain["voxels"]) == ("empty", "brain", 0) and "empty mask" in brain["note"]
    assert not np.asarray(nib.load(out / brain["file"]).dataobj).any()


@pytest.mark.parametrize("overlap", ["0.95", "-0.1"])
def test_segment_overlap_out_of_range(overlap, model_dir, ct_path, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", str(ct_path), "-p", "liver", "-o", str(out), "--model", str(model_dir),
                 "--overlap", overlap]) == 1
    assert "--overlap must be in [0, 0.9]" in _error_line(capsys) and not out.exists()


def test_unwritable_output_fails_before_loading_anything(model_dir, ct_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(api, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    (tmp_path / "file.txt").write_text("x")
    assert main(["segment", str(ct_path), "-p", "liver", "-o", str(tmp_path / "file.txt" / "out"),
                 "--model", str(model_dir)]) == 1
    assert "file.txt is a file" in _error_line(capsys)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main(["segment", str(ct_path), "-p", "liver", "-o", str(locked / "out"), "--model", str(model_dir)]) == 1
        assert "cannot write to" in _error_line(capsys) and list(locked.iterdir()) == []


def test_reused_output_keeps_no_stale_masks(model_dir, ct_path, tmp_path):
    out = tmp_path / "out"
    common = ["-o", str(out), "--model", str(model_dir), "--no-progress"]
    assert main(["segment", str(ct_path), "-p", "liver", "-p", "left kidney", "--png", *common]) == 0
    (out / "notes.txt").write_text("mine")
    assert main(["segment", str(ct_path), "-p", "spleen", *common]) == 0
    assert {p.name for p in out.iterdir()} == {"labelmap.nii.gz", "spleen.nii.gz", "labels.json", "notes.txt"}
    labels = json.loads((out / "labels.json").read_text())
    assert [x["prompt"] for x in labels["labels"]] == ["spleen"] and "overlay" not in labels


def test_segment_output_is_a_file(model_dir, ct_path, tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("keep")
    assert main(["segment", str(ct_path), "-p", "liver", "-o", str(target), "--model", str(model_dir)]) == 1
    assert "is a file" in _error_line(capsys)
    assert target.read_text() == "keep"


def test_segment_corrupt_weights(model_dir, ct_path, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((model_dir / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    assert main(["segment", str(ct_path), "-p", "liver", "-o", str(tmp_path / "o"), "--model", str(broken)]) == 1
    assert "corrupt" in _error_line(capsys)


def test_segment_takes_prompts_or_all_not_both(ct_path, tmp_path):
    with pytest.raises(SystemExit):
        main(["segment", str(ct_path), "-p", "liver", "--all", "-o", str(tmp_path / "o")])


def test_models_lists_shipped(model_dir, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(api, "MODELS_DIR", model_dir.parent)
    assert main(["models", "--concepts"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("tiny-test"))
    params = sum(p.numel() for p in sat.model.load_pretrained(model_dir)[0].state_dict().values())
    assert f"{params / 1e6:.2f}M" in row and " 4 " in row and "12x12x12" in row
    assert "liver, spleen, kidney_left, kidney_right" in out
    monkeypatch.setattr(api, "MODELS_DIR", tmp_path / "empty")
    assert main(["models"]) == 0
    assert "no models" in capsys.readouterr().out


def test_help_through_the_console_entry_point():
    done = subprocess.run([sys.executable, "-m", "sat", "segment", "--help"], capture_output=True, encoding="utf-8", errors="replace",
                          timeout=120)
    assert done.returncode == 0 and "--all" in done.stdout and "--png" in done.stdout and "--on-untrained" in done.stdout


@pytest.mark.slow
def test_demo_runs_and_scores_against_the_phantom(demo, model_dir, tmp_path, capsys):
    out = tmp_path / "demo_out"
    assert demo.main(["-o", str(out), "--model", str(model_dir), "--case", "phantom", "-p", "liver", "-p", "kidneys",
                      "-p", "zzqx blorp", "--on-untrained", "text"]) == 0
    printed = capsys.readouterr().out
    assert "dice" in printed and "kidneys" in printed
    assert {p.name for p in out.iterdir()} == {"phantom_ct.nii.gz", "phantom_labels.nii.gz", "segmentation",
                                               "overlay.png", "summary.csv"}
    import pandas as pd

    table = pd.read_csv(out / "summary.csv")
    assert table["prompt"].tolist() == ["liver", "kidneys", "zzqx blorp"]
    ph = make_phantom(spacing=(3.0, 3.0, 3.0))
    kidneys_ml = ph.mask(["kidney_left", "kidney_right"]).sum() * 27 / 1000
    assert table["reference_ml"][1] == pytest.approx(kidneys_ml, abs=0.1)  # parent = union of its parts
    assert np.isnan(table["reference_ml"][2]) and np.isnan(table["dice"][2])  # free text: no reference
    assert demo.main(["-o", str(tmp_path / "x"), "--model", "no-such-model", "--case", "phantom"]) == 1
    assert "unknown model" in capsys.readouterr().err
    assert demo.main(["-o", str(tmp_path / "y"), "--model", str(model_dir), "--case", "phantom", "-p", "brain"]) == 1
    assert "not a concept model" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_on_the_held_out_real_people(demo, shared_data, tmp_path, capsys):
    """The default demo with ../shared present: subject B and a validation person, never trained on."""

    assert demo.held_out_available()
    out = tmp_path / "demo_out"
    assert demo.main(["-o", str(out), "-p", "liver", "-p", "spleen"]) == 0
    printed = capsys.readouterr().out
    assert "subject B" in printed and "validation person btcv_03" in printed
    assert {p.name for p in out.iterdir()} == {"subject_b", "btcv_03"}
    import pandas as pd

    for case, shape in (("subject_b", (512, 512, 20)), ("btcv_03", None)):
        assert {p.name for p in (out / case).iterdir()} == {"ct.nii.gz", "segmentation", "overlay.png", "summary.csv"}
        table = pd.read_csv(out / case / "summary.csv")
        assert table["prompt"].tolist() == ["liver", "spleen"]
        assert table["reference_ml"][0] > 500 and table["dice"][0] > 0.7  # a real liver, found by the shipped model
        if shape:
            assert nib.load(out / case / "ct.nii.gz").shape == shape  # the series' own grid


def test_point_and_box_flags_parse_signs_and_numbers():
    from sat.cli_segment import parse_point

    assert parse_point("12.5,-40,88,+") == (12.5, -40.0, 88.0, 1)
    assert parse_point("1,2,3,-") == (1.0, 2.0, 3.0, 0)
    assert parse_point("1, 2, 3") == (1.0, 2.0, 3.0, 1)
    assert parse_point("1,2,0") == (1.0, 2.0, 0.0, 1)  # three numbers: a positive click at z = 0
