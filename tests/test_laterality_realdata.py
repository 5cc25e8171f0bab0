"""Left and right in world coordinates: the shipped model on every validation person.

For each validation person of the multi-subject cards (split ``test``), the centroid of the
predicted left structure must lie on the patient's left of the midpoint between the two
*reference* structures, and the right one on the right, in world millimetres (RAS+: x grows
towards the patient's right, so "left" is the smaller x). The reference masks and affines come
from the files, never from the pipeline, so a flipped axis anywhere (reader, reorientation,
model, inversion) fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from sat.data.cards import load_card

ROOT = Path(__file__).resolve().parents[1]

# (left concept, right concept) -> (left, right) names in the sets' labels.json
PAIRS = {("kidney_left", "kidney_right"): ("left kidney", "right kidney"),
         ("adrenal_gland_left", "adrenal_gland_right"): ("left adrenal gland", "right adrenal gland")}


def _validation_people() -> list[tuple[str, str, str]]:
    out = []
    for name in ("btcv_abdomen_24", "chaos_t2_16"):
        card = load_card(ROOT / "datasets" / f"{name}.yaml")
        out += [(card.root, e.image, e.labels[0].file) for e in card.cases if e.split == "test"]
    return out


def _world_x(mask: np.ndarray, affine: np.ndarray) -> float:
    centroid = np.argwhere(mask).mean(axis=0)
    return float((affine @ np.append(centroid, 1.0))[0])


@pytest.fixture(scope="module")
def model():
    import sat

    return sat.load_model("sat-tiny", device="cpu")


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("root, image, label", _validation_people())
def test_left_structures_lie_on_the_patients_left(shared_data, model, root, image, label):
    folder = shared_data.parent / root
    names = json.loads((folder / "labels.json").read_text())
    value = {n: int(v) for v, n in names.items()}
    ref_img = nib.load(folder / label)
    ref = np.asarray(ref_img.dataobj)
    checked = 0
    for (left, right), names_lr in PAIRS.items():
        ref_left, ref_right = (value.get(n, -1) for n in names_lr)
        if not (ref == ref_left).any() or not (ref == ref_right).any():
            continue
        if left not in model.concepts or right not in model.concepts:
            continue
        midline = 0.5 * (_world_x(ref == ref_left, ref_img.affine) + _world_x(ref == ref_right, ref_img.affine))
        seg = model.segment(folder / image, [left, right])
        assert np.allclose(seg.affine, nib.load(folder / image).affine)
        for concept, side in ((left, -1.0), (right, 1.0)):
            mask = seg[concept]
            assert mask.any(), f"{concept} empty on {image}"
            x = _world_x(mask, seg.affine)
            assert side * (x - midline) > 0, f"{concept} centroid x={x:.1f} mm on the wrong side of {midline:.1f} mm"
        checked += 1
    assert checked >= 1  # every validation person has both kidneys
