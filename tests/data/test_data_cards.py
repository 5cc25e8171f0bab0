"""Card schema: valid cards load, every schema error is a one-line ConfigError naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from datafixtures import card

from sat.data.cards import load_card, load_cards
from sat.errors import ConfigError

LABELS = {1: {"name": "liver", "concept": "liver"}, 2: {"name": "scribble", "skip": "not anatomy"},
          3: {"name": "blob"}}


def test_valid_card_loads(write_card):
    path = write_card(card("toy", "generic", LABELS, splits={"val": ["c2"]}, root="data/toy"))
    c = load_card(path)
    assert (c.name, c.modality, c.layout, c.path) == ("toy", "ct", "generic", path)
    assert c.labels[1].concept == "liver" and c.labels[2].skip == "not anatomy"
    assert c.concept_of() == {1: "liver"}
    assert [s.value for s in c.unmapped()] == [3]
    assert c.split_of("c2") == "val" and c.split_of("c1") == "train" and c.split_of("c1", "test") == "test"
    assert c.resolve_root(shared=Path("/s")) == Path("/s/data/toy")
    assert c.resolve_root("/elsewhere") == Path("/elsewhere")


BAD = [
    ({"modality": "xray"}, "modality: Input should be 'ct', 'mr' or 'pet' (got 'xray')"),
    ({"region": "knee"}, "region: Input should be 'abdomen'"),
    ({"labels": {}}, "labels: Dictionary should have at least 1 item"),
    ({"labels": {0: {"name": "bg"}}}, "labels.0.value: Input should be greater than or equal to 1"),
    ({"labels": {"x": {"name": "a"}}}, "labels.x.[key]: Input should be a valid integer"),
    ({"labels": {1: {"concept": "liver"}}}, "missing required field 'labels.1.name'"),
    ({"labels": {1: {"name": "a", "concept": "Left Kidney"}}}, "'Left Kidney' must be lower-case snake_case"),
    ({"labels": {1: {"name": "a", "colour": "red"}}}, "labels.1: unknown key 'colour'"),
    ({"root": "/abs/path"}, "must be a relative path"),
    ({"root": "$DATA/x"}, "must be a relative path"),
    ({"owner": "me"}, "unknown field 'owner'; allowed: name, modality"),
    ({"license": ""}, "license: String should have at least 1 character"),
    ({"default_split": "dev"}, "default_split: Input should be 'train', 'val' or 'test' (got 'dev')"),
    ({"splits": {"dev": ["a"]}}, "splits.dev.[key]: Input should be 'train', 'val' or 'test'"),
    ({"cases": [{"id": "A b", "image": "x"}]}, "cases.0.id: 'A b' must be lower-case snake_case"),
    ({"cases": [{"id": "a", "image": "x", "split": "holdout"}]}, "cases.0.split: Input should be 'train'"),
    ({"cases": [{"id": "a", "image": "x"}, {"id": "a", "image": "y"}]}, "toy.yaml: case ids must be unique"),
    ({"cases": [{"id": "a", "image": "x", "labels": [{"file": "l", "values": {1: 9}}]}]}, "undeclared label"),
    ({"cases": "all"}, "cases: Input should be a valid tuple (got 'all')"),
    ({"options": [1]}, "options: Input should be a valid dictionary"),
    ({"path": "x"}, "unknown field 'path'"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_schema_errors_are_one_line(change, message, write_card):
    data = card("toy", "files", {1: {"name": "liver", "concept": "liver"}})
    data.update(change)
    with pytest.raises(ConfigError) as err:
        load_card(write_card(data))
    text = str(err.value)
    assert "\n" not in text and "toy.yaml" in text
    assert any(part in text for part in message.split("|")), text


def test_missing_field_name_mismatch_layout_yaml_and_file(write_card, tmp_path):
    data = card("toy", "files", {1: "liver"})
    del data["citation"]
    with pytest.raises(ConfigError, match="missing required field 'citation'"):
        load_card(write_card(data))
    path = write_card(card("toy", "files", {1: "liver"}))
    path.rename(path.with_name("other.yaml"))
    with pytest.raises(ConfigError, match="must equal the file name 'other'"):
        load_card(path.with_name("other.yaml"))
    with pytest.raises(ConfigError, match="layout 'zip' is not one of"):
        load_card(write_card(card("toy", "zip", {1: "liver"})))
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        load_card(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="not found"):
        load_card(tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_card(tmp_path / "list.yaml")


def test_load_cards_expands_folders_and_rejects_duplicates(write_card):
    p1 = write_card(card("one", "files", {1: "liver"}))
    write_card(card("two", "files", {1: "liver"}))
    assert [c.name for c in load_cards([p1.parent])] == ["one", "two"]
    with pytest.raises(ConfigError, match="given twice: one"):
        load_cards([p1, p1])


def test_root_required_when_card_has_none(write_card):
    c = load_card(write_card(card("toy", "files", {1: "liver"})))
    with pytest.raises(ConfigError, match="pass --root"):
        c.resolve_root()
    c.root = "data/x"
    with pytest.raises(ConfigError, match="pass --shared"):
        c.resolve_root()


SHIPPED = sorted((Path(__file__).resolve().parents[2] / "datasets").glob("*.yaml"))


def test_every_shipped_card_loads():
    assert len(SHIPPED) >= 35
    cards = load_cards(SHIPPED)
    for c in cards:
        assert c.labels and not c.unmapped(), f"{c.name} has unmapped labels"
        assert c.root is None or not Path(c.root).is_absolute()
