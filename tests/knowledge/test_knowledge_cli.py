"""``sat terms {search,show,build,check}`` through the real CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from sat.cli import main
from sat.knowledge import cli as kcli


def test_search(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["terms", "search", "left kidny", "-k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and "kidney_left" in lines[0] and lines[0].startswith("0.900")


def test_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["terms", "show", "kidney_left"]) == 0
    out = capsys.readouterr().out
    for part in ("kidney_left: left kidney", "synonyms", "definition", "parents", "kidney (is_a)",
                 "children", "codes", "uberon=UBERON:", "datasets", "TotalSegmentator/total"):
        assert part in out
    assert main(["terms", "show", "lumbar vertebrae"]) == 0
    assert "vertebrae_l3" in capsys.readouterr().out


def test_show_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["terms", "show", "banana"]) == 1
    err = capsys.readouterr().err
    assert "unknown anatomical term 'banana'" in err and len(err.strip().splitlines()) == 1


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["terms"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["terms", "--help"])
    assert "build" in capsys.readouterr().out


def test_build_and_check(mini_sources: Path, mini_curated: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "kt.json.gz"
    args = ["--sources", str(mini_sources), "--curated", str(mini_curated), "--cards", str(tmp_path / "none")]
    assert main(["terms", "build", *args, "--out", str(out)]) == 0
    assert out.exists() and "7 concepts" in capsys.readouterr().out
    assert main(["terms", "check", *args, "--artifact", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith("OK: 0 error(s), 2 note(s)")
    (mini_curated / "aliases.csv").write_text("term,concept,kind,note\nlien,spleen,latin,\n")
    assert main(["terms", "check", *args, "--artifact", str(out)]) == 1
    assert "unknown concept 'spleen'" in capsys.readouterr().out


def test_build_missing_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["terms", "build", "--sources", str(tmp_path / "nope"), "--out", str(tmp_path / "x.gz")]) == 1
    assert "not found; pass --sources" in capsys.readouterr().err


def test_default_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "proj" / "knowledge_tree").mkdir(parents=True)
    (tmp_path / "proj" / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "proj" / "sub")
    assert kcli.project_root() == tmp_path / "proj"
    assert kcli.default_sources() == tmp_path / "shared" / "terms"
