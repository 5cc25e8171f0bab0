"""``sat segment`` (volume + prompts -> masks, labelmap, labels.json), ``sat models`` and
``sat import-official`` (the original SAT checkpoints into a model folder).

Examples::

    sat segment ct.nii.gz -p liver -p "left kidney" -o out/ --png
    sat segment ct.nii.gz --all -o out/          # every concept the model was trained on
    sat segment ct.nii.gz -p liver --point 12.5,-40,88,+ --point 30,-20,90,- -o out/
    sat segment ct.nii.gz --box 40,-80,60,120,10,140 -o out/       # a box alone, no text
    sat segment ct.nii.gz -p pancreas --zoom -o out/              # zoom-out-zoom-in
    sat models                                   # shipped models: params, concepts, spacing
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from sat._defaults import PRESENCE_VETO
from sat.errors import InputError, WeightsError
from sat.knowledge.prompts import check_prompts

MAX_OVERLAP = 0.9  # 0.9 already runs ~1000x the windows of no overlap in 3D


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``segment`` and ``models`` subcommands."""
    seg = subparsers.add_parser(
        "segment", help="segment a 3D volume from text prompts",
        description="Segment a 3D volume (NIfTI, MGZ, NRRD or a DICOM folder) from text prompts. "
        "Writes labelmap.nii.gz, one mask per prompt and labels.json to OUTDIR.",
    )
    seg.add_argument("input", metavar="INPUT", help="image file or DICOM folder")
    which = seg.add_mutually_exclusive_group()
    which.add_argument("-p", "--prompt", action="append", metavar="PROMPT",
                       help="structure to segment, e.g. 'left kidney' (repeat for several)")
    which.add_argument("--all", action="store_true", help="segment every concept the model was trained on")
    seg.add_argument("--point", action="append", default=[], metavar="X,Y,Z,SIGN",
                     help="a click steering the prompt: world mm (RAS) and + (the structure is here) or - (it "
                     "is not); repeat for several; with no -p, points (and --box) alone define the structure")
    seg.add_argument("--box", metavar="X0,Y0,Z0,X1,Y1,Z1", help="two opposite corners around the structure (world mm)")
    seg.add_argument("--voxel", action="store_true", help="--point and --box are input voxel indices, not mm")
    seg.add_argument("--zoom", action="store_true",
                     help="zoom-out-zoom-in: segment each structure's region again on the model's finer grid (slower)")
    seg.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder (created)")
    seg.add_argument("--model", default=None, metavar="NAME|DIR",
                     help="shipped model name (see `sat models`) or a model folder (default: sat-tiny)")
    seg.add_argument("--modality", choices=["ct", "mr", "pet"],
                     help="default: the DICOM Modality tag or NIfTI description, else a CT/MR guess from "
                     "intensities (logged); PET is never guessed from intensities: pass --modality pet")
    seg.add_argument("--on-untrained", choices=["error", "empty", "text"], default="error",
                     help="a prompt the model was not trained on (or the knowledge tree does not know): "
                     "error (default: stop and suggest trained structures), empty (empty mask, meaning "
                     "'not segmented'), or text (free-text query, unvalidated)")
    seg.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto")
    seg.add_argument("--threshold", type=float, default=0.5, help="mask probability threshold (default 0.5)")
    seg.add_argument("--overlap", type=float, default=None,
                     help=f"sliding-window overlap in [0, {MAX_OVERLAP}] (default: the model's: 0.5 for sat-tiny, else 0.25)")
    seg.add_argument("--no-presence-gating", action="store_true",
                     help="keep mask logits where the presence head judges a prompt absent")
    seg.add_argument("--presence-veto", type=float, default=PRESENCE_VETO, metavar="P",
                     help="presence probability below which a window vetoes a prompt (default %(default)s)")
    seg.add_argument("--keep-all-components", action="store_true",
                     help="keep every connected component (default: one piece for the structures the model "
                     "learnt as one piece, see sat.postprocess)")
    seg.add_argument("--png", action="store_true", help="also write overlay.png (axial, coronal, sagittal)")
    seg.add_argument("--probabilities", action="store_true",
                     help="also write probabilities/<prompt>.nii.gz (float32 probabilities on the input grid)")
    seg.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    seg.add_argument("--tune-allocator", action="store_true",
                     help="glibc: keep freed memory for reuse between windows (faster on CPU; up to 1 GiB more "
                     "resident memory; see sat.model.allocator)")
    seg.set_defaults(func=run_segment)

    models = subparsers.add_parser("models", help="list the shipped models",
                                   description="List the shipped models: parameters, concepts, spacing.")
    models.add_argument("--concepts", action="store_true", help="also list each model's concept ids")
    models.set_defaults(func=run_models)
    add_import_parser(subparsers)


def run_segment(args: argparse.Namespace) -> int:
    """Handler of ``sat segment``."""
    from sat import api, io
    from sat._atomic import check_writable

    out = Path(args.output).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is a file; give a folder path with -o")
    if args.overlap is not None and not 0.0 <= args.overlap <= MAX_OVERLAP:
        raise InputError(f"--overlap must be in [0, {MAX_OVERLAP}], got {args.overlap}; 0.25 or 0.5 is usual")
    points = [parse_point(p) for p in args.point]
    box = parse_numbers(args.box, 6, "--box", "X0,Y0,Z0,X1,Y1,Z1") if args.box else None
    if not (args.all or args.prompt or points or box):
        raise InputError("give prompts with -p (or --all), or a structure by --point/--box")
    if (points or box) and (args.all or len(args.prompt or []) > 1):
        raise InputError("--point and --box steer one prompt; give a single -p (or none), or use the Python API "
                         "with a dict prompt -> points")
    if args.prompt:
        check_prompts(args.prompt)  # fail before anything is loaded
    check_writable(out)  # before minutes of inference, not after
    if args.tune_allocator:
        from sat.model import allocator

        allocator.tune()
    volume = io.load(args.input, modality=args.modality, keep_dtype=True)  # e.g. int16 CT: no float32 copy
    segmenter = api.load_model(args.model or api.DEFAULT_MODEL, device=args.device)
    if args.all:
        prompts = segmenter.concepts
        if not prompts:
            raise InputError(f"model {segmenter.name!r} does not list its concepts; give prompts with -p")
    else:
        prompts = args.prompt
    seg = segmenter.segment(volume, prompts, points=points or None, box=box, space="voxel" if args.voxel else "world",
                            zoom=args.zoom, on_untrained=args.on_untrained, overlap=args.overlap,
                            threshold=args.threshold, presence_gating=not args.no_presence_gating,
                            presence_veto=args.presence_veto, largest_component=not args.keep_all_components,
                            progress=not args.no_progress, probabilities=args.probabilities)
    seg.save(out, overlay=args.png, probabilities=args.probabilities)
    table = seg.volumes_ml()
    table["concept"] = table["concept"].fillna("-")
    table.insert(3, "as", [_how(lab) for lab in seg.labels.values()])
    print(table.drop(columns=["name"]).to_string(index=False))
    if args.png:
        print(f"overlay: {out / 'overlay.png'}")
    print(f"wrote {len(seg)} masks, labelmap.nii.gz and labels.json to {out}")
    return 0


def parse_numbers(text: str, n: int, what: str, form: str) -> tuple[float, ...]:
    """``n`` comma-separated finite numbers (InputError naming ``what`` and its ``form`` otherwise)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != n or not all(math.isfinite(v) for v in values):
        raise InputError(f"{what} {text!r} is not {form} ({n} numbers separated by commas)")
    return values


def parse_point(text: str) -> tuple[float, float, float, int]:
    """``"x,y,z,+"`` or ``"x,y,z,-"`` (also 1/0; no sign: +) -> ``(x, y, z, label)``."""
    head, _, sign = str(text).rpartition(",")
    labels = {"+": 1, "1": 1, "-": 0, "0": 0}
    if sign.strip() in labels and head.count(",") == 2:
        return (*parse_numbers(head, 3, "--point", "X,Y,Z,SIGN"), labels[sign.strip()])  # type: ignore[return-value]
    return (*parse_numbers(text, 3, "--point", "X,Y,Z,SIGN with SIGN + or -"), 1)  # type: ignore[return-value]


def _how(label) -> str:
    """How a prompt was segmented, for the summary table."""
    if label.kind == "union":
        return f"union of {len(label.members)}" + (" (partial)" if label.missing else "")
    return {"concept": "trained class", "text": "free text", "empty": "not trained: empty",
            "region": "points/box"}.get(label.kind, label.kind)


def model_summary(folder: Path) -> dict:
    """Name, parameter count, concepts, spacing and text encoder of a model folder (no weights loaded)."""
    from safetensors import safe_open

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    try:
        with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
            params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118
    except Exception as exc:  # corrupt or missing weights: still list the model
        raise WeightsError(f"{folder / 'model.safetensors'} cannot be read ({exc}); re-install sat") from exc
    model = config.get("model", {})
    return {
        "name": folder.name,
        "params": params,
        "concepts": list(config.get("concepts") or []),
        "spacing": "x".join(f"{s:g}" for s in model.get("spacing", [])),
        "window": "x".join(str(s) for s in model.get("patch_size", [])),
        "text_encoder": config.get("text_encoder", "default"),
    }


def run_models(args: argparse.Namespace) -> int:
    """Handler of ``sat models``."""
    from sat import api

    shipped = api.shipped_models()
    if not shipped:
        print("no models are shipped with this installation (sat/resources/models is empty)")
        return 0
    rows = []
    for name, folder in shipped.items():
        try:
            info = model_summary(folder)
        except (WeightsError, OSError, ValueError) as exc:
            print(f"{name}: unreadable ({exc})")
            continue
        rows.append(info)
    header = f"{'name':<16} {'params':>10} {'concepts':>8}  {'spacing (mm)':<13} {'window':<10} text encoder"
    print(header)
    for r in rows:
        params = f"{r['params'] / 1e6:.2f}M"
        print(f"{r['name']:<16} {params:>10} {len(r['concepts']):>8}  {r['spacing']:<13} {r['window']:<10} "
              f"{r['text_encoder']}")
    if args.concepts:
        for r in rows:
            print(f"\n{r['name']}: {', '.join(r['concepts']) or '(not listed)'}")
    return 0


def add_import_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``import-official`` subcommand."""
    cmd = subparsers.add_parser(
        "import-official", help="import the original SAT-Nano / SAT-Pro weights",
        description="Convert the original SAT checkpoints (HuggingFace zzh99/SAT) into a SAT model folder "
        "usable with `sat segment --model DIR`. The files are read without unpickling code.",
    )
    cmd.add_argument("--vision", required=True, metavar="CKPT", help="vision checkpoint (nano.pth or SAT_Pro.pth)")
    cmd.add_argument("--text", required=True, metavar="CKPT",
                     help="text-encoder checkpoint (nano_text_encoder.pth or text_encoder.pth)")
    cmd.add_argument("--tokenizer", required=True, metavar="DIR",
                     help="folder with the BioLORD-2023-C (MPNet) tokenizer files: vocab.txt / tokenizer.json")
    cmd.add_argument("-o", "--output", required=True, metavar="MODEL_DIR", help="model folder to create")
    cmd.add_argument("--vocabulary", metavar="JSON",
                     help="the authors' terminology_list.json (default: ../shared/terms/sat/ beside the project)")
    cmd.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    """Handler of ``sat import-official``."""
    from sat.model.import_official import import_official

    out = import_official(args.vision, args.text, tokenizer=args.tokenizer, output=args.output,
                          vocabulary=args.vocabulary)
    print(f"wrote {out}; use it with: sat segment IMAGE -p 'left kidney' --model {out} -o OUTDIR")
    return 0
