"""``sat terms build`` / ``check`` on synthetic sources: determinism, content, every failure path."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml
from kt_helpers import CONCEPTS, write_curated

from sat.errors import ConfigError
from sat.knowledge.build import build, build_data, dumps
from sat.knowledge.check import check_laterality, run_check
from sat.knowledge.tree import KnowledgeTree, load


def test_build_is_deterministic(mini_sources: Path, mini_curated: Path, tmp_path: Path) -> None:
    a = build(mini_sources, mini_curated, out=tmp_path / "a.json.gz")
    build(mini_sources, mini_curated, out=tmp_path / "b.json.gz")
    assert (tmp_path / "a.json.gz").read_bytes() == (tmp_path / "b.json.gz").read_bytes()
    assert json.loads(gzip.decompress((tmp_path / "a.json.gz").read_bytes())) == a


def test_build_content(mini_sources: Path, mini_curated: Path) -> None:
    data = build_data(mini_sources, mini_curated)
    kidney_left = data["concepts"]["kidney_left"]
    assert kidney_left["xrefs"]["uberon"] == "UBERON:0004538"
    assert kidney_left["xrefs"]["acr"] == "RID205_RID5824" and "radlex" not in kidney_left["xrefs"]
    assert kidney_left["xrefs"]["snomed_type"] == "64033007"
    assert kidney_left["xrefs"]["snomed_modifier"] == "7771000"
    assert kidney_left["laterality"] == "left" and kidney_left["right_id"] == "kidney_right"
    assert kidney_left["unsided_id"] == "kidney"
    assert "ren sinister" in kidney_left["synonyms"] and "kidney, left" in kidney_left["synonyms"]
    assert "kidney_left" in kidney_left["synonyms"]  # dataset spelling
    assert kidney_left["region"] == "abdomen"
    kidney = data["concepts"]["kidney"]
    assert kidney["xrefs"] == {"acr": "RID205", "fma": "7203", "radlex": "RID205", "uberon": "UBERON:0002113",
                               "umls": "C0022646"}
    assert kidney["laterality"] == "unsided" and kidney["left_id"] == "kidney_left"
    assert kidney["definition"] == "A paired organ that makes urine."
    liver = data["concepts"]["liver"]
    assert liver["modalities"] == ["ct", "mr"]
    assert "TotalSegmentator/total_mr" in liver["datasets"] and "SAT/LiTS" in liver["datasets"]
    assert data["concepts"]["liver_tumor"]["is_lesion"] is True
    assert data["concepts"]["body"]["xrefs"] == {"acr": "RID39569", "radlex": "RID39569"}
    assert data["concepts"]["liver_tumor"]["xrefs"] == {}  # never invent a code
    assert data["coverage"]["sat"]["unmatched"] == ["banana split"]
    assert data["coverage"]["totalsegmentator"] == {"matched": 3, "total": 3, "unmatched": []}


def test_tree_from_built_artifact(mini_sources: Path, mini_curated: Path, tmp_path: Path) -> None:
    out = tmp_path / "kt.json.gz"
    build(mini_sources, mini_curated, out=out)
    tree = load(out)
    assert tree.resolve("ren sinister").id == "kidney_left"
    assert tree.resolve("hepatic tumour").id == "liver_tumor"
    assert [c.id for c in tree.labelled_descendants("kidney")] == ["kidney_left", "kidney_right"]


def test_mapping_override_and_block(mini_sources: Path, mini_curated: Path) -> None:
    (mini_curated / "mappings.csv").write_text("concept,source,id\nkidney,uberon,-\nliver,acr,RID205\n")
    data = build_data(mini_sources, mini_curated)
    assert "uberon" not in data["concepts"]["kidney"]["xrefs"]
    assert data["concepts"]["liver"]["xrefs"]["acr"] == "RID205"
    (mini_curated / "mappings.csv").write_text("concept,source,id\nliver,uberon,UBERON:9999999\n")
    with pytest.raises(ConfigError, match="not in the source"):
        build_data(mini_sources, mini_curated)


def test_missing_source_and_bad_yaml(mini_sources: Path, mini_curated: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing"):
        build_data(tmp_path / "nowhere", mini_curated)
    with pytest.raises(ConfigError, match="missing"):
        build_data(mini_sources, tmp_path / "no_curated")
    (mini_curated / "concepts.yaml").write_text("kidney: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_data(mini_sources, mini_curated)
    (mini_curated / "concepts.yaml").write_text("- a list\n")
    with pytest.raises(ConfigError, match="map concept ids"):
        build_data(mini_sources, mini_curated)


@pytest.mark.parametrize(("entry", "message"), [
    ({"parents": ["body:part_of"]}, "needs a mapping"),
    ({"name": "x", "parents": ["body:contains"]}, "relation"),
    ({"name": "x", "laterality": "middle"}, "laterality"),
])
def test_bad_concept_entries(mini_sources: Path, tmp_path: Path, entry: dict, message: str) -> None:
    curated = write_curated(tmp_path / "kt", {**CONCEPTS, "bad": entry})
    with pytest.raises(ConfigError, match=message):
        build_data(mini_sources, curated)


def test_bad_csv_row(mini_sources: Path, tmp_path: Path) -> None:
    curated = write_curated(tmp_path / "kt", aliases="term,concept,kind,note\nfoo,,jargon,\n")
    with pytest.raises(ConfigError, match="lacks concept"):
        build_data(mini_sources, curated)


def _check(sources: Path, curated: Path, tmp_path: Path, *, cards: Path | None = None, fresh: bool = True):
    artifact = tmp_path / "artifact.json.gz"
    if fresh:
        build(sources, curated, out=artifact, cards=cards)
    return run_check(sources, curated, cards=cards, artifact=artifact)


def test_check_passes_and_reports_zero_cards(mini_sources: Path, mini_curated: Path, tmp_path: Path) -> None:
    report = _check(mini_sources, mini_curated, tmp_path, cards=tmp_path / "no_cards")
    assert report.ok, report.text()
    assert "0 dataset card(s)" in report.text() and report.text().endswith("0 error(s), 2 note(s)")


def test_check_stale_artifact(mini_sources: Path, mini_curated: Path, tmp_path: Path) -> None:
    report = _check(mini_sources, mini_curated, tmp_path, fresh=False)
    assert not report.ok and "stale or missing" in report.text()
    build(mini_sources, mini_curated, out=tmp_path / "artifact.json.gz")
    (mini_curated / "aliases.csv").write_text("term,concept,kind,note\nren dexter,kidney_right,latin,\n")
    report = run_check(mini_sources, mini_curated, artifact=tmp_path / "artifact.json.gz")
    assert not report.ok and "stale" in report.errors[0]


@pytest.mark.parametrize(("change", "message"), [
    ({"kidney": {"name": "kidney", "parents": ["organ:part_of"]}}, "parent 'organ' (part_of) does not exist"),
    ({"kidney": {"name": "kidney", "parents": ["kidney_left:part_of"]}}, "cycle in parents"),
    ({"liver": {"name": "liver"}}, "does not reach 'body'"),
    ({"liver": {"name": "liver", "parents": ["abdomen:part_of"], "synonyms": ["left kidney"]}}, "names kidney_left, liver"),
    ({"Liver-X": {"name": "liver x", "parents": ["liver:part_of"]}}, "'Liver-X' is not snake_case"),
])
def test_check_structure_errors(mini_sources: Path, tmp_path: Path, change: dict, message: str) -> None:
    curated = write_curated(tmp_path / "kt", {**CONCEPTS, **change})
    report = _check(mini_sources, curated, tmp_path, fresh=False)
    assert not report.ok
    assert message in report.text()


def test_check_declared_ambiguity_passes(mini_sources: Path, tmp_path: Path) -> None:
    concepts = {**CONCEPTS, "liver": {"name": "liver", "parents": ["abdomen:part_of"], "synonyms": ["organ x"]},
                "kidney": {"name": "kidney", "parents": ["abdomen:part_of"], "synonyms": ["organ x"]}}
    curated = write_curated(tmp_path / "kt", concepts, ambiguous="term,concepts,preferred\norgan x,kidney;liver,liver\n")
    report = _check(mini_sources, curated, tmp_path)
    assert report.ok, report.text()
    assert load(tmp_path / "artifact.json.gz").resolve("Organ X").id == "liver"
    curated = write_curated(tmp_path / "kt2", concepts, ambiguous="term,concepts,preferred\norgan x,kidney;liver,spleen\n")
    assert "unknown concept 'spleen'" in _check(mini_sources, curated, tmp_path, fresh=False).text()


def test_check_duplicate_ids(mini_sources: Path, mini_curated: Path, tmp_path: Path) -> None:
    path = mini_curated / "concepts.yaml"
    path.write_text(path.read_text() + "liver:\n  name: liver again\n")
    report = run_check(mini_sources, mini_curated, artifact=tmp_path / "none.json.gz")
    assert "duplicate id(s) liver" in report.text()


def test_check_alias_and_mapping_unknown_concept(mini_sources: Path, tmp_path: Path) -> None:
    curated = write_curated(tmp_path / "kt", aliases="term,concept,kind,note\nlien,spleen,latin,\n")
    (curated / "mappings.csv").write_text("concept,source,id\nspleen,uberon,UBERON:0002106\n")
    text = _check(mini_sources, curated, tmp_path, fresh=False).text()
    assert "'lien' -> unknown concept 'spleen'" in text and "mappings.csv: unknown concept 'spleen'" in text


def test_check_cards(mini_sources: Path, mini_curated: Path, tmp_path: Path) -> None:
    cards = tmp_path / "datasets"
    cards.mkdir()
    card = {"name": "demo", "modality": "CT", "labels": {
        1: {"name": "liver", "concept": "liver"}, 2: {"name": "kidney", "concept": "kidneys_both"},
        3: {"name": "scribble", "skip": "not anatomy"}, 4: {"name": "no concept"}}}
    (cards / "demo.yaml").write_text(yaml.safe_dump(card))
    report = _check(mini_sources, mini_curated, tmp_path, cards=cards)
    text = report.text()
    assert "label 2 (kidney) -> unknown concept 'kidneys_both'" in text
    assert "label 4 has no concept" in text and "1 skipped on purpose" in text
    data = json.loads(gzip.decompress((tmp_path / "artifact.json.gz").read_bytes()))
    assert "demo" in data["concepts"]["liver"]["datasets"] and data["cards"] == ["demo"]
    (cards / "broken.yaml").write_text("labels: [unclosed\n")
    assert "not valid YAML" in run_check(mini_sources, mini_curated, cards=cards).text()
    (cards / "broken.yaml").write_text("labels: [1, 2]\nname: broken\n")
    report = run_check(mini_sources, mini_curated, cards=cards, artifact=tmp_path / "artifact.json.gz")
    assert "card broken: 'labels' must map" in report.text()


def test_check_laterality_asymmetric() -> None:
    from sat.knowledge.check import Report

    data = {"concepts": {
        "a_left": {"laterality": "left", "right_id": "a_right", "unsided_id": "a"},
        "a_right": {"laterality": "right", "left_id": "b_left"},
        "a": {"laterality": "unsided"},
        "b_left": {"laterality": "left", "right_id": "ghost"}}}
    report = Report()
    check_laterality(data, report)
    text = "\n".join(report.errors)
    assert "a_left: right_id is a_right but a_right.left_id is b_left" in text
    assert "b_left: right_id 'ghost' does not exist" in text
    assert "unsided_id a has no left_id" in text


def test_dumps_is_stable() -> None:
    assert dumps({"b": 1, "a": [1, 2]}) == dumps({"a": [1, 2], "b": 1})


def test_tree_rejects_bad_artifact(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(ConfigError, match="corrupt"):
        load(bad)
    with pytest.raises(ConfigError, match="missing"):
        load(tmp_path / "absent.json.gz")
    assert isinstance(KnowledgeTree({"concepts": {}}), KnowledgeTree)


def test_check_missing_root(mini_sources: Path, tmp_path: Path) -> None:
    concepts = {k: v for k, v in CONCEPTS.items() if k != "body"}
    concepts["abdomen"] = {"name": "abdomen"}
    curated = write_curated(tmp_path / "kt", concepts)
    text = _check(mini_sources, curated, tmp_path, fresh=False).text()
    assert "parent 'body' (part_of) does not exist" in text or "root concept 'body' is missing" in text
    assert "root concept 'body' is missing" in text
