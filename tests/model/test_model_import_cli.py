"""``sat import-official`` through sat.cli.main: the folder it writes, one-line errors, nothing partial."""

from __future__ import annotations

import json
import re

import pytest

import sat
from sat.cli import main


def _args(files, out) -> list[str]:
    return ["import-official", "--vision", str(files["vision"]), "--text", str(files["text"]),
            "--tokenizer", str(files["tokenizer"]), "-o", str(out), "--vocabulary", str(files["vocabulary"])]


def test_import_writes_a_model_folder_load_model_opens(official_files, tmp_path, capsys):
    out = tmp_path / "sat-nano-official"
    assert main(_args(official_files, out)) == 0
    assert "wrote" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.json", "text"}
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["patch_size"] == [288, 288, 96]
    assert config["source"]["vision"] == "vision.pth" and "their terms apply" in config["source"]["terms"]
    model = sat.load_model(out, device="cpu")
    assert model.text_encoder.dim == 32 and model.concepts == ["kidney_left", "kidney_right", "liver"]


@pytest.mark.parametrize("change,match", [
    ({"--vision": "text"}, "no U-Net encoder"),
    ({"--text": "vision"}, "text-encoder file"),
    ({"--tokenizer": "missing"}, "tokenizer folder .* does not exist"),
    ({"--vocabulary": "missing"}, "original SAT vocabulary .* does not exist"),
])
def test_bad_inputs_give_one_line_and_write_nothing(official_files, tmp_path, capsys, change, match):
    out = tmp_path / "model"
    args = _args(official_files, out)
    for flag, what in change.items():
        args[args.index(flag) + 1] = str(official_files[what]) if what in official_files else str(tmp_path / what)
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(match, err[0]), err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".model")]


def test_existing_output_is_refused(official_files, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(_args(official_files, out)) == 1
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
