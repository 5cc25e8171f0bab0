"""Fixtures of the evaluation tests: a small stand-in knowledge tree and label-map writers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from sat.errors import UnknownTermError


@dataclass(frozen=True)
class FakeConcept:
    id: str
    name: str
    region: str | None
    is_lesion: bool = False


class FakeTree:
    """Resolves a few names the way the knowledge tree does (case/space/word-order insensitive)."""

    def __init__(self) -> None:
        items = [
            FakeConcept("liver", "liver", "abdomen"),
            FakeConcept("spleen", "spleen", "abdomen"),
            FakeConcept("kidney_left", "left kidney", "abdomen"),
            FakeConcept("liver_tumor", "liver tumor", None, True),
            FakeConcept("heart", "heart", "thorax"),
        ]
        self.concepts = {c.id: c for c in items}
        self.synonyms = {"left kidney": "kidney_left", "kidney, left": "kidney_left", "hepatic tumour": "liver_tumor"}

    def __getitem__(self, cid: str) -> FakeConcept:
        return self.concepts[cid]

    def resolve(self, text: str) -> FakeConcept:
        key = text.strip().lower()
        cid = self.synonyms.get(key, key.replace(" ", "_"))
        if cid not in self.concepts:
            raise UnknownTermError(f"unknown term {text!r}", ("liver", "spleen"))
        return self.concepts[cid]

    def ancestors(self, concept: FakeConcept) -> list[str]:
        return ["liver"] if concept.id == "liver_tumor" else []


@pytest.fixture
def fake_tree(monkeypatch: pytest.MonkeyPatch) -> FakeTree:
    """Replace the knowledge tree used by sat.evaluation.labels with :class:`FakeTree`."""
    import sat.evaluation.labels as labels

    tree = FakeTree()
    monkeypatch.setattr(labels, "_tree", lambda: tree)
    return tree


def write_label(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Save an integer label map as NIfTI (default affine: 1 x 1.5 x 2 mm)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([1.0, 1.5, 2.0, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(np.asarray(array, np.uint8), affine), str(path))
    return path


def box(shape: tuple[int, int, int], lo: tuple[int, int, int], hi: tuple[int, int, int]) -> np.ndarray:
    """Boolean array with True on [lo, hi)."""
    out = np.zeros(shape, bool)
    out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return out
