"""`sat data check` / `sat data prepare`: exit codes and one-line errors."""

from __future__ import annotations

import types
from pathlib import Path

import pandas as pd
import pytest
from datafixtures import card, pair

import sat.knowledge
from sat.cli import main
from sat.errors import UnknownTermError

KNOWN = {"liver", "spleen", "kidney_left"}


class FakeTree:
    def __contains__(self, concept_id):
        return concept_id in KNOWN

    def resolve(self, text):
        if text == "left kidney":
            return types.SimpleNamespace(id="kidney_left")
        raise UnknownTermError(f"unknown term {text!r}", ("liver", "spleen"))


@pytest.fixture
def fake_tree(monkeypatch):
    monkeypatch.setattr(sat.knowledge, "load", lambda: FakeTree(), raising=False)


def test_check_passes_on_mapped_cards(fake_tree, write_card, capsys):
    path = write_card(card("good", "files", {1: {"name": "liver", "concept": "liver"},
                                             2: {"name": "junk", "skip": "scribble"}}))
    assert main(["data", "check", str(path)]) == 0
    assert "1/1 card(s) OK" in capsys.readouterr().err


def test_check_lists_unmapped_and_unknown_concepts_and_fails(fake_tree, write_card, capsys):
    path = write_card(card("bad", "files", {1: {"name": "liver", "concept": "livre"},
                                            2: {"name": "left kidney"}, 3: {"name": "blob"}}))
    good = write_card(card("good", "files", {1: {"name": "liver", "concept": "liver"}}))
    assert main(["data", "check", str(path), str(good)]) == 1
    out = capsys.readouterr()
    assert "concept 'livre' is not in the knowledge tree (no match; closest: liver, spleen)" in out.out
    assert "label 2 'left kidney': unmapped (suggestion: concept: kidney_left)" in out.out
    assert "label 3 'blob': unmapped (no match; closest: liver, spleen)" in out.out
    assert "1/2 card(s) OK" in out.err


def test_check_reports_schema_errors_and_needs_cards(fake_tree, write_card, tmp_path, capsys):
    data = card("broken", "files", {1: "liver"})
    data["modality"] = "xray"
    assert main(["data", "check", str(write_card(data))]) == 1
    assert "modality: Input should be 'ct', 'mr' or 'pet' (got 'xray')" in capsys.readouterr().out
    (tmp_path / "none").mkdir()
    assert main(["data", "check", str(tmp_path / "none")]) == 1
    assert "no dataset card given" in capsys.readouterr().err


def test_check_scan_counts_cases(fake_tree, write_card, tmp_path, capsys):
    pair(tmp_path / "shared" / "toy" / "i.nii.gz", tmp_path / "shared" / "toy" / "l.nii.gz")
    path = write_card(card("toy", "files", {1: {"name": "liver", "concept": "liver"}}, root="toy",
                           cases=[{"id": "c", "image": "i.nii.gz", "label": "l.nii.gz", "split": "val"}]))
    assert main(["data", "check", "--scan", "--shared", str(tmp_path / "shared"), str(path)]) == 0
    assert "toy: 1 case(s) {'train': 0, 'val': 1, 'test': 0}" in capsys.readouterr().out


def test_prepare_cli_roots_and_strict(write_card, tmp_path, capsys):
    raw = tmp_path / "raw"
    pair(raw / "i.nii.gz", raw / "l.nii.gz")
    (raw / "bad.nii.gz").write_bytes(b"not an image")
    path = write_card(card("toy", "files", {1: {"name": "liver", "concept": "liver"}}, cases=[
        {"id": "ok", "image": "i.nii.gz", "label": "l.nii.gz"}, {"id": "bad", "image": "bad.nii.gz", "label": "l.nii.gz"}]))
    args = ["data", "prepare", str(path), "--out", str(tmp_path / "cache"), "--workers", "1", "--no-progress",
            "--spacing", "4"]
    assert main([*args, "--root", str(raw)]) == 0
    out = capsys.readouterr()
    assert "prepared 1, up to date 0, failed 1" in out.out and "FAILED toy/bad" in out.err
    assert main([*args, "--root", f"toy={raw}", "--strict"]) == 1
    assert len(pd.read_csv(tmp_path / "cache" / "index.csv")) == 1
    assert main([*args, "--root", f"nope={raw}"]) == 1
    assert "no card named 'nope'" in capsys.readouterr().err
    assert main([*args]) == 1  # no root and no relative root in the card
    assert "pass --root" in capsys.readouterr().err
    assert main([*args, "--root", str(raw), "--spacing", "0"]) == 1


def test_prepare_cli_folder_skips_cards_without_data(write_card, tmp_path, capsys):
    pair(tmp_path / "shared" / "toy" / "i.nii.gz", tmp_path / "shared" / "toy" / "l.nii.gz")
    path = write_card(card("toy", "files", {1: {"name": "liver", "concept": "liver"}}, root="toy",
                           cases=[{"id": "c", "image": "i.nii.gz", "label": "l.nii.gz"}]))
    write_card(card("public", "msd", {1: {"name": "liver", "concept": "liver"}}))
    args = ["data", "prepare", "--out", str(tmp_path / "cache"), "--shared", str(tmp_path / "shared"),
            "--workers", "1", "--no-progress", "--spacing", "4"]
    assert main([*args, str(path.parent)]) == 0
    out = capsys.readouterr()
    assert "skipping 1 card(s) without a data folder (pass --root NAME=DIR): public" in out.err
    assert "prepared 1" in out.out
    assert main([*args, str(path.parent / "public.yaml")]) == 1
    assert "pass --root" in capsys.readouterr().err


def test_prepare_cli_bare_root_needs_a_single_card(write_card, tmp_path, capsys):
    a = write_card(card("a", "files", {1: "liver"}, cases=[{"id": "c", "image": "i", "label": "l"}]))
    b = write_card(card("b", "files", {1: "liver"}, cases=[{"id": "c", "image": "i", "label": "l"}]))
    assert main(["data", "prepare", str(a), str(b), "--out", str(tmp_path), "--root", str(tmp_path)]) == 1
    assert "write --root NAME=DIR" in capsys.readouterr().err


def test_data_without_action_prints_help(capsys):
    assert main(["data"]) == 2
    assert "check" in capsys.readouterr().out


def test_default_shared_is_beside_the_project():
    from sat.data.cli import default_shared

    assert default_shared() == Path(__file__).resolve().parents[2].parent / "shared"


def test_shipped_cards_pass_check_against_the_shipped_tree(capsys):
    datasets = Path(__file__).resolve().parents[2] / "datasets"
    assert main(["data", "check", str(datasets)]) == 0, capsys.readouterr().out
