"""``sat evaluate``: score label maps of any tool against references; ``sat evaluate compare``;
``sat evaluate model`` (a SAT model on the cases of dataset cards).

Examples::

    sat evaluate --pred preds/ --gt labels/ --card datasets/my_ct.yaml --out results/sat
    sat evaluate --pred ts_out/ --gt labels/ --labels class_map.json:total --pred-labels ts_map.json
    sat evaluate compare results/sat/per_case.csv results/spec/per_case.csv --a SAT --b specialist --out cmp/
    sat evaluate model --model sat-tiny datasets/totalseg_abdomen.yaml --out sat_tiny.csv
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from sat.errors import InputError

log = logging.getLogger(__name__)


def _tolerances(items: list[str] | None) -> dict[str, float]:
    out = {}
    for item in items or []:
        name, sep, value = item.rpartition("=")
        try:
            out[name] = float(value)
        except ValueError:
            name = ""
        if not sep or not name:
            raise InputError(f"--class-tolerance {item!r} must look like NAME=MM, e.g. liver=2")
    return out


def _card_name(card: str) -> str:
    from sat.data.cards import load_card

    return load_card(card).name


def run_evaluate(args: argparse.Namespace) -> int:
    """Handler of ``sat evaluate``: evaluate, print the per-class table, write tables under --out."""
    from sat.evaluation.evaluator import evaluate
    from sat.evaluation.report import summary_tables, to_markdown, write_tables

    if not args.pred or not args.gt:
        raise InputError("sat evaluate needs --pred DIR and --gt DIR (or use `sat evaluate compare`)")
    if bool(args.card) == bool(args.labels):
        raise InputError("give exactly one of --card CARD.yaml or --labels MAPPING.json for the reference labels")
    for flag, path in (("--pred", args.pred), ("--gt", args.gt)):
        if not Path(path).exists():
            raise InputError(f"{flag} {path} does not exist; pass a folder of label maps")
    dataset = args.dataset or (_card_name(args.card) if args.card else "dataset")
    df = evaluate(
        args.pred, args.gt, labels=args.card or args.labels, pred_labels=args.pred_labels, classes=args.classes,
        tolerance_mm=args.tolerance, class_tolerance_mm=_tolerances(args.class_tolerance), hd95=args.hd95,
        method=args.method, dataset=dataset,
    )
    tables = summary_tables(df)
    cols = ["concept", "n", "dice_mean", "dice_ci_low", "dice_ci_high", "nsd_mean"]
    print(to_markdown(tables["per_class"][[c for c in cols if c in tables["per_class"].columns]]), end="")
    if df.attrs.get("missing_cases"):
        print(f"missing predictions (scored empty): {', '.join(df.attrs['missing_cases'])}")
    if args.out:
        paths = write_tables(tables, args.out)
        print(f"wrote {len(paths)} files to {args.out}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """Handler of ``sat evaluate compare``: side-by-side table (+ PNG) of two methods."""
    from sat.evaluation.compare import compare, plot_compare, read_results
    from sat.evaluation.report import to_markdown, write_table

    results = read_results(*args.results)
    table = compare(results, a=args.a, b=args.b, by=args.by)
    print(to_markdown(table[[c for c in table.columns if "_ci_" not in c]]), end="")
    if args.out:
        out = Path(args.out)
        write_table(table, out / "compare.csv")
        png = plot_compare(table[table[args.by] != "mean"] if args.by in table.columns else table,
                           out / "compare_dice.png", a=args.a, b=args.b, by=args.by)
        print(f"wrote {out / 'compare.csv'}, {out / 'compare.md'}, {png}")
    return 0


def run_model(args: argparse.Namespace) -> int:
    """Handler of ``sat evaluate model``: a markdown table per case and the mean Dice (all / targets)."""
    from sat.data.cards import load_card
    from sat.data.cli import parse_roots
    from sat.evaluation.model_report import evaluate_model, render_report

    cards = [load_card(c) for c in args.cards]
    table = evaluate_model(args.model, cards, shared=args.shared, roots=parse_roots(args.root, cards),
                           splits=args.split, overlap=args.overlap, presence_gating=not args.no_presence_gating,
                           presence_veto=args.presence_veto, largest_component=not args.keep_all_components)
    if args.out:
        table.to_csv(args.out, index=False)
    print(render_report(table))
    return 0


def _add_model_parser(sub: argparse._SubParsersAction) -> None:
    from sat._defaults import PRESENCE_VETO

    m = sub.add_parser("model", help="Dice per structure of a SAT model on the cases of dataset cards",
                       description="Segment every case of the cards with the model (public API, original grid) "
                       "and score each trained structure against the card's reference labels.")
    m.add_argument("cards", nargs="+", help="dataset cards (datasets/*.yaml)")
    m.add_argument("--model", default="sat-tiny", help="shipped model name or folder")
    m.add_argument("--shared", default=None, help="folder the cards' roots are relative to (default ../shared)")
    m.add_argument("--root", action="append", default=[], metavar="NAME=DIR",
                   help="folder of a dataset whose card has no root under --shared (repeatable)")
    m.add_argument("--out", default=None, help="also write the rows as CSV")
    m.add_argument("--split", action="append", default=None, metavar="SPLIT",
                   help="only cases of this split (repeatable; e.g. val: the development people)")
    m.add_argument("--overlap", type=float, default=None, help="sliding-window overlap in [0, 1) (default: the model's)")
    m.add_argument("--no-presence-gating", action="store_true",
                   help="keep the mask logits where the presence head says absent")
    m.add_argument("--presence-veto", type=float, default=PRESENCE_VETO, metavar="P",
                   help="presence probability below which a window vetoes a structure (default %(default)s)")
    m.add_argument("--keep-all-components", action="store_true",
                   help="skip the model's connected-component rule (sat.postprocess)")
    m.set_defaults(func=run_model)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``sat evaluate`` (and its ``compare`` subcommand)."""
    p = subparsers.add_parser(
        "evaluate", help="Dice/NSD of label maps (any tool) vs references; compare methods",
        description="Score predicted label maps against reference label maps per case and class "
        "(Dice, NSD at a tolerance in mm, optional HD95) on the reference grid. Files are matched by case id; "
        "a missing prediction is scored empty and reported.",
    )
    p.add_argument("--pred", help="folder of predictions: <case>.nii.gz files or <case>/ folders (sat segment output)")
    p.add_argument("--gt", help="folder of reference label maps <case>.nii.gz")
    p.add_argument("--card", help="dataset card (YAML) giving the reference label value -> concept")
    p.add_argument("--labels", help="reference label value -> name JSON (FILE.json or FILE.json:KEY)")
    p.add_argument("--pred-labels", help="prediction value -> name JSON when it differs from the reference's")
    p.add_argument("--classes", nargs="+", help="evaluate only these classes (names or concept ids)")
    p.add_argument("--tolerance", type=float, default=1.0, help="NSD tolerance in mm (default 1)")
    p.add_argument("--class-tolerance", action="append", metavar="NAME=MM", help="per-class NSD tolerance (repeatable)")
    p.add_argument("--hd95", action="store_true", help="also compute the 95%% Hausdorff distance (mm)")
    p.add_argument("--method", default="prediction", help="name of the evaluated method (column 'method')")
    p.add_argument("--dataset", help="dataset name (default: the card's name)")
    p.add_argument("--out", help="write per_case / per_class / per_dataset / per_region / per_kind CSV + markdown here")
    p.set_defaults(func=run_evaluate)
    sub = p.add_subparsers(dest="evaluate_command", metavar="{compare,model}")
    c = sub.add_parser("compare", help="side-by-side per-class table of two methods with differences and a PNG",
                       description="Compare two methods on the cases and classes both evaluated.")
    c.add_argument("results", nargs="+", help="per_case.csv files written by `sat evaluate --out`")
    c.add_argument("--a", default="SAT", help="first method name (default SAT)")
    c.add_argument("--b", default="specialist", help="second method name (default specialist)")
    c.add_argument("--by", default="concept", choices=["concept", "region", "kind", "dataset"], help="grouping column")
    c.add_argument("--out", help="write compare.csv, compare.md and compare_dice.png here")
    c.set_defaults(func=run_compare)
    _add_model_parser(sub)
