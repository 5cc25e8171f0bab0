"""Train the per-dataset DynUNet specialists on the labelled training cases of ../shared/data.

Honest split (the same one SAT's training uses; see protocol.py):
- ``totalseg_abdomen``: trains on subject A (example_ct + its 30-slice crop example_ct_sm);
  subject B (card totalseg_upper_abdomen_dicom, the DICOM series) is held out.
- ``totalseg_abdomen_mr``: a single case, so the specialist trains on it and its numbers are
  training-case numbers (reported as such, never as held-out results).

Usage (from the project root; about ``--minutes`` per dataset)::

    nice -n 5 .venv/bin/python evaluate/train_specialists.py --minutes 20 [--datasets totalseg_ct]

Writes evaluate/specialists/<dataset>/{model.safetensors, plan.json, train_log.json}.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from protocol import SPECIALISTS, class_names, shared_root  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=shared_root(), help="the shared folder holding data/")
    parser.add_argument("--minutes", type=float, default=20.0, help="wall-clock training budget per dataset")
    parser.add_argument("--datasets", nargs="+", default=list(SPECIALISTS), choices=list(SPECIALISTS))
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (peak)")
    parser.add_argument("--resume", action="store_true", help="continue the saved specialist (new LR schedule)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=HERE / "specialists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    from sat.evaluation.specialist_train import train_specialist

    torch.set_num_threads(args.threads)
    data = args.shared / "data"
    for name in args.datasets:
        spec = SPECIALISTS[name]
        cases = [(data / img, data / lab) for img, lab in spec["train"]]
        start, cpu = time.time(), time.process_time()
        log_path = args.out / name / "train_log.json"
        runs = []
        if args.resume and log_path.is_file():
            old = json.loads(log_path.read_text())
            runs = old.get("runs", [{k: v for k, v in old.items() if k != "runs"}])
        _, plan, history = train_specialist(
            cases, names=class_names(data, spec), minutes=args.minutes, target=spec["spacing"],
            modality=spec["modality"], checkpoint=args.out / name, lr=args.lr,
            init=args.out / name if args.resume else None,
        )
        run = {"dataset": name, "train_cases": [str(i) for i, _ in spec["train"]], "minutes": args.minutes,
               "threads": args.threads, "steps": len(history), "seconds": round(time.time() - start, 1),
               "cpu_seconds": round(time.process_time() - cpu, 1),
               "lr": args.lr, "resumed": bool(args.resume), "history": history}
        runs.append(run)
        total = {"dataset": name, "minutes": sum(r["minutes"] for r in runs), "steps": sum(r["steps"] for r in runs),
                 "runs": runs}
        log_path.write_text(json.dumps(total, indent=0))
        print(f"{name}: {len(history)} steps in {time.time() - start:.0f}s, patch {plan.patch_size}, "
              f"{len(plan.labels) - 1} classes -> {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
