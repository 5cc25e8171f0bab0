"""Mean CT intensity (HU) inside labelled structures, per case of the given cards.

Shows whether a case is unenhanced or contrast-enhanced (the gap the contrast simulation of
``sat/data/contrast.py`` addresses): e.g. aorta about 40 HU unenhanced, 150-350 HU enhanced.

    python benchmarks/intensity_by_structure.py [CARD ...] [--concepts liver aorta ...] [--shared ../shared]

(default cards: subject A and subject B, ``datasets/totalseg_abdomen.yaml`` and
``datasets/totalseg_upper_abdomen_dicom.yaml``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CARDS = ["totalseg_abdomen", "totalseg_upper_abdomen_dicom"]
DEFAULT = ["liver", "spleen", "aorta", "inferior_vena_cava", "portal_vein_and_splenic_vein", "kidney_left",
           "stomach", "vertebrae_t12", "spinal_cord", "autochthon_left"]


def main() -> int:
    import numpy as np
    import pandas as pd

    from sat.data.cards import load_card
    from sat.data.converters import find_cases, load_case

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cards", nargs="*", default=[str(ROOT / "datasets" / f"{name}.yaml") for name in CARDS])
    parser.add_argument("--concepts", nargs="+", default=DEFAULT)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args()
    rows = []
    for path in args.cards:
        card = load_card(path)
        value_of = {spec.concept: v for v, spec in card.labels.items() if spec.concept}
        for source in find_cases(card, card.resolve_root(shared=args.shared)):
            image, label = load_case(source, modality=card.modality)
            array = np.asarray(image.array)
            for concept in args.concepts:
                inside = np.asarray(label) == value_of.get(concept, -1)
                if inside.any():
                    rows.append({"case": f"{card.name}/{source.case}", "concept": concept,
                                 "mean_hu": float(array[inside].mean())})
    table = pd.DataFrame(rows)
    print(table.pivot_table(index="concept", columns="case", values="mean_hu").round(1).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
