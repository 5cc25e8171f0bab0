"""A tiny hand-made knowledge tree (Concept contract fields only) for the text tests."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.official_fixtures import official_files, official_fixture  # noqa: F401


@dataclass(frozen=True)
class FakeConcept:
    id: str
    name: str
    synonyms: tuple[str, ...] = ()
    definition: str = ""
    parents: tuple[tuple[str, str], ...] = ()
    laterality: str | None = None
    left_id: str | None = None
    right_id: str | None = None
    unsided_id: str | None = None
    region: str = "abdomen"
    modalities: tuple[str, ...] = ("ct", "mr")
    xrefs: dict = field(default_factory=dict)
    datasets: tuple[str, ...] = ()
    is_lesion: bool = False


def _tree() -> dict[str, FakeConcept]:
    items = [
        FakeConcept("urinary_system", "urinary system", ("renal system", "excretory system")),
        FakeConcept(
            "kidney", "kidney", ("ren", "renal organ", "kidneys"), "An organ that filters blood and makes urine.",
            (("urinary_system", "part_of"),), "unsided", "kidney_left", "kidney_right", None,
        ),
        FakeConcept(
            "kidney_left", "left kidney", ("kidney, left", "ren sinister", "lt kidney", "sinistral kidney"),
            "The kidney on the left side of the body.", (("kidney", "is_a"),), "left", None, "kidney_right", "kidney",
            xrefs={"totalsegmentator": "kidney_left"},
        ),
        FakeConcept(
            "kidney_right", "right kidney", ("kidney, right", "ren dexter", "rt kidney", "dextral kidney"),
            "The kidney on the right side of the body.", (("kidney", "is_a"),), "right", "kidney_left", None, "kidney",
            xrefs={"totalsegmentator": "kidney_right"},
        ),
        FakeConcept("liver", "liver", ("hepar", "hepatic organ", "liver organ"), "The largest gland of the abdomen."),
        FakeConcept("spleen", "spleen", ("lien", "splenic organ"), "A lymphoid organ left of the stomach."),
        FakeConcept("lumbar_vertebra", "lumbar vertebra", ("lumbar spine bone",)),
    ]
    for n in range(1, 6):
        items.append(
            FakeConcept(
                f"vertebrae_l{n}", f"L{n} vertebra", (f"lumbar vertebra {n}", f"vertebra L{n}", f"L{n}"),
                f"Lumbar vertebra number {n}.", (("lumbar_vertebra", "is_a"),), region="spine",
            )
        )
    return {c.id: c for c in items}


@pytest.fixture(scope="session")
def tiny_tree() -> dict[str, FakeConcept]:
    """id -> FakeConcept: kidneys (sided), liver, spleen, lumbar vertebrae L1-L5."""
    return _tree()


@pytest.fixture(scope="session")
def base_encoder():
    """The packaged MiniLM without delta (loaded once per session)."""
    from sat.text import load_encoder

    return load_encoder("base")
