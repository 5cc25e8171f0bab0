"""Cost of the connected-component rule (``sat.postprocess``) inside ``Segmenter.segment``.

One process, warm: the median of ``--repeats`` calls with every trained concept of the model as
prompts, with the rule (the default) and without it (``largest_component=False``), on the
real CT ``example_ct.nii.gz`` (3 mm) and on a 512x512x300 phantom at 0.8x0.8x1.5 mm (a typical
clinical grid). Prints a markdown table and the ratio rule / no rule.

    python benchmarks/postprocess_cost.py [--shared ../shared] [--repeats 3] [--model sat-tiny]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(shared: Path, repeats: int, model: str = "sat-tiny") -> list[dict]:
    sys.path.insert(0, str(ROOT / "examples"))  # the demo's phantom
    from phantom import make_phantom

    import sat
    from sat.model import allocator

    allocator.tune()  # opt-in (sat segment --tune-allocator); the published figures were measured with it
    segmenter = sat.load_model(model, device="cpu")
    prompts = segmenter.concepts
    one_piece = len(set(prompts) & set(segmenter.config.get("postprocess", {}).get("largest_component", [])))
    volumes = {"example_ct 122x101x112 @3 mm": sat.io.load(shared / "data/ct/totalseg_abdomen/example_ct.nii.gz"),
               "phantom 512x512x300 @0.8x0.8x1.5 mm":
               make_phantom(spacing=(0.8, 0.8, 1.5), shape=(512, 512, 300), seed=0).image}
    rows = []
    for name, volume in volumes.items():
        segmenter.segment(volume, prompts)  # warm-up
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(repeats):
            for rule in (True, False):  # interleaved: the machine's drift hits both alike
                start = time.perf_counter()
                segmenter.segment(volume, prompts, largest_component=rule)
                times[rule].append(time.perf_counter() - start)
        with_rule, without = statistics.median(times[True]), statistics.median(times[False])
        rows.append({"volume": name, "prompts": len(prompts), "one-piece prompts": one_piece,
                     "segment s, rule": round(with_rule, 2), "segment s, no rule": round(without, 2),
                     "ratio": round(with_rule / without, 3)})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="sat-tiny")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    rows = measure(args.shared, args.repeats, args.model)
    import pandas as pd

    from sat.evaluation.report import to_markdown

    print(to_markdown(pd.DataFrame(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
