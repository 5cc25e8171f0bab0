"""Text normalisation used by the build and by resolve()."""

from __future__ import annotations

import pytest

from sat.knowledge.normalize import bag_key, edit_distance, exact_key, singular, words


@pytest.mark.parametrize(("text", "key"), [
    ("Kidney, Lt.", "kidney left"), ("kidney_left", "kidney left"), ("L kidney", "left kidney"),
    ("Third Lumbar Vertebrae", "3 lumbar vertebra"), ("3rd rib", "3 rib"), ("segment IV", "segment 4"),
    ("Liver Tumour", "liver tumor"), ("the head of the femur", "head femur"), ("Rt. lungs", "right lung"),
    ("COVID-19", "covid 19"), ("Left-Hippocampus", "left hippocampus"), ("", ""), ("  ", ""),
    ("café", "cafe"), ("both kidneys", "kidney"), ("L3", "l3"), ("Niere links", "niere left"),
    ("rechte Lunge", "right lunge"), ("lft kidney", "left kidney"),
])
def test_exact_key(text: str, key: str) -> None:
    assert exact_key(text) == key


def test_bag_key_ignores_order() -> None:
    assert bag_key("kidney, left") == bag_key("left kidney") == "kidney left"
    assert bag_key("upper lobe of left lung") == bag_key("left lung upper lobe")


@pytest.mark.parametrize(("word", "single"), [
    ("ribs", "rib"), ("arteries", "artery"), ("vertebrae", "vertebra"), ("gyri", "gyrus"), ("gyrus", "gyrus"),
    ("pancreas", "pancreas"), ("glands", "gland"), ("branches", "branch"), ("bus", "bus"), ("12", "12"),
])
def test_singular(word: str, single: str) -> None:
    assert singular(word) == single


def test_edit_distance() -> None:
    assert edit_distance("kidny", "kidney") == 1
    assert edit_distance("kidney", "kidney") == 0
    assert edit_distance("liver", "river") == 1
    assert edit_distance("abcdef", "ghijkl") == 3  # capped at limit + 1
    assert edit_distance("a", "abcdefgh") == 3
    assert words("Ct_Liver") == ["ct", "liver"]
