"""Regenerate ``tests/known_good_sat_tiny.json``: outputs of the shipped sat-tiny on the seeded phantom.

Run after the shipped weights change, and commit the JSON with them::

    python benchmarks/make_known_good.py

``tests/test_shipped_model.py`` re-runs the same segmentation and compares per-prompt voxel
counts and Dice against the phantom's labels with this file.

Only outputs that overlap their reference are recorded (Dice >= ``MIN_DICE``): a known-good file
must never pin a wrong answer (the single-person sat-tiny of runs 1-15 put "left kidney" on the
patient's right, so it was left out then; run 16 finds it, Dice 0.98). Laterality is also checked
in world coordinates on real people (tests/test_laterality_realdata.py).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "known_good_sat_tiny.json"
MODEL = "sat-tiny"
PROMPTS = ["liver", "spleen", "left kidney", "right kidney", "kidneys", "aorta", "lumbar vertebrae"]
MIN_DICE = 0.1  # an output below this against the phantom's own labels is not "known good"
PHANTOM = {"spacing": [3.0, 3.0, 3.0], "shape": [96, 96, 96], "seed": 0}  # one 96^3 window: fast


def weights_sha256(folder: Path) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def compute(model: str = MODEL) -> dict:
    """Segment the phantom with the shipped model; per prompt: concept, voxels, Dice vs phantom labels."""
    sys.path.insert(0, str(ROOT / "examples"))  # the demo's phantom
    from phantom import make_phantom

    from sat import api
    from sat.evaluation.metrics import dice

    phantom = make_phantom(spacing=tuple(PHANTOM["spacing"]), shape=tuple(PHANTOM["shape"]), seed=PHANTOM["seed"])
    seg = api.load_model(model, device="cpu").segment(phantom.image, PROMPTS)
    results = {}
    for lab in seg.labels.values():
        ref = phantom.reference(lab.concept)
        results[lab.prompt] = {
            "concept": lab.concept,
            "voxels": seg.voxels(lab.prompt),
            "dice": None if ref is None else round(dice(seg[lab.prompt], ref), 4),
        }
    wrong = {p: r["dice"] for p, r in results.items() if r["dice"] is not None and r["dice"] < MIN_DICE}
    if wrong:
        raise ValueError(f"outputs that miss their reference cannot be recorded as known good (Dice < {MIN_DICE}): "
                         f"{wrong}; drop these prompts or fix the model")
    return {"model": model, "weights_sha256": weights_sha256(api.model_dir(model)), "phantom": PHANTOM,
            "threshold": 0.5, "prompts": results}


def main() -> int:
    from sat import api

    if MODEL not in api.shipped_models():
        print(f"the shipped model {MODEL} is missing (sat/resources/models/{MODEL}); nothing to do", file=sys.stderr)
        return 1
    data = compute()
    tmp = OUT.with_name(f".{OUT.name}.part")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(OUT)
    print(json.dumps(data["prompts"], indent=1))
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
