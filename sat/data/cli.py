"""``sat data check`` (validate cards against the knowledge tree) and ``sat data prepare`` (build the cache)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sat.errors import InputError, SATError

log = logging.getLogger(__name__)


def default_shared() -> Path:
    """The ``shared`` folder beside the project root (where relative card roots point)."""
    return Path(__file__).resolve().parents[2].parent / "shared"


def parse_roots(values: list[str], cards) -> dict[str, Path]:
    """``--root NAME=DIR`` (or a bare ``DIR`` when exactly one card is given)."""
    roots: dict[str, Path] = {}
    names = {c.name for c in cards}
    for value in values or []:
        name, sep, folder = value.partition("=")
        if not sep:
            if len(cards) != 1:
                raise InputError(f"--root {value}: with several cards write --root NAME=DIR")
            name, folder = cards[0].name, value
        if name not in names:
            raise InputError(f"--root {value}: no card named {name!r} among {', '.join(sorted(names))}")
        roots[name] = Path(folder)
    return roots


def _check_card(card, tree) -> list[str]:
    """Problems of one card: unknown concept ids, unmapped labels (with the tree's suggestion)."""
    from sat.errors import UnknownTermError

    def hint(name: str) -> str:
        try:
            return f"suggestion: concept: {tree.resolve(name).id}"
        except UnknownTermError as err:
            return f"no match; closest: {', '.join(err.suggestions[:3]) or 'none'}"

    problems = []
    for value, spec in sorted(card.labels.items()):
        if spec.skip is not None or (spec.concept is not None and spec.concept in tree):
            continue
        if spec.concept is not None:
            problems.append(f"label {value} {spec.name!r}: concept {spec.concept!r} is not in the knowledge tree "
                            f"({hint(spec.name)})")
        else:
            problems.append(f"label {value} {spec.name!r}: unmapped ({hint(spec.name)})")
    return problems


def run_check(args: argparse.Namespace) -> int:
    """Validate cards; print one line per problem; exit 1 when any card has a problem."""
    from sat import knowledge
    from sat.data.cards import load_card
    from sat.data.converters import find_cases

    files = [f for p in args.cards for f in (sorted(Path(p).glob("*.yaml")) if Path(p).is_dir() else [Path(p)])]
    if not files:
        raise InputError("no dataset card given: pass datasets/*.yaml or the datasets/ folder")
    tree = knowledge.load()
    bad = 0
    for path in files:
        try:
            card = load_card(path)
            problems = _check_card(card, tree)
            if args.scan:
                root = card.resolve_root(None, shared=args.shared) if card.root else None
                if root is not None:
                    cases = find_cases(card, root)
                    splits = {s: sum(card.split_of(c.case, c.split) == s for c in cases) for s in ("train", "val", "test")}
                    print(f"{card.name}: {len(cases)} case(s) {splits}")
        except SATError as err:
            problems = [str(err)]
        for problem in problems:
            print(f"{path}: {problem}")
        bad += bool(problems)
    print(f"{len(files) - bad}/{len(files)} card(s) OK", file=sys.stderr)
    return 1 if bad else 0


def run_prepare(args: argparse.Namespace) -> int:
    """Build/refresh the standardized cache from cards."""
    from sat.data.cache import prepare
    from sat.data.cards import load_cards

    spacing = tuple(float(v) for v in str(args.spacing).split(",") if v.strip())
    if len(spacing) not in (1, 3) or min(spacing) <= 0 or args.workers < 1:
        raise InputError("--spacing must be one or three sizes > 0 mm (e.g. 3 or 2,2,3) and --workers >= 1")
    cards = load_cards(args.cards)
    roots = parse_roots(args.root, cards)
    # a folder of cards means "every dataset whose files can be found": skip cards with no root at all
    listed = {Path(p).resolve() for p in args.cards if not Path(p).is_dir()}
    skipped = [c.name for c in cards if c.root is None and c.name not in roots and c.path.resolve() not in listed]
    if skipped:
        print(f"skipping {len(skipped)} card(s) without a data folder (pass --root NAME=DIR): {', '.join(skipped)}",
              file=sys.stderr)
    cards = [c for c in cards if c.name not in skipped]
    if not cards:
        raise InputError("no dataset to prepare: give card files and --root NAME=DIR for each")
    report = prepare(cards, args.out, roots=roots, shared=args.shared, spacing=spacing * (3 // len(spacing)),
                     workers=args.workers, force=args.force, progress=not args.no_progress)
    print(f"prepared {len(report.prepared)}, up to date {len(report.up_to_date)}, failed {len(report.failed)} "
          f"case(s) in {report.seconds:.1f} s -> {Path(args.out) / 'index.csv'} ({len(report.index)} rows)")
    for key, reason in report.failed.items():
        print(f"FAILED {key}: {reason}", file=sys.stderr)
    return 1 if (report.failed and args.strict) else 0


def add_parser(subparsers) -> None:
    """Add ``sat data {check,prepare}`` to the ``sat`` command."""
    data = subparsers.add_parser("data", help="dataset cards and the standardized training cache")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])

    check = sub.add_parser("check", help="validate dataset cards against the knowledge tree")
    check.add_argument("cards", nargs="+", help="card files (datasets/*.yaml) or the datasets/ folder")
    check.add_argument("--scan", action="store_true", help="also find the cases of cards with a relative root")
    check.add_argument("--shared", type=Path, default=default_shared(),
                       help="folder the cards' relative roots are resolved against (default: ../shared)")
    check.set_defaults(func=run_check)

    prep = sub.add_parser("prepare", help="standardize every case into a cache (npz per case + index.csv)")
    prep.add_argument("cards", nargs="+", help="card files (datasets/*.yaml) or the datasets/ folder")
    prep.add_argument("--out", required=True, type=Path, help="cache folder")
    prep.add_argument("--root", action="append", default=[], metavar="[NAME=]DIR",
                      help="dataset folder (repeatable: NAME=DIR per card; a bare DIR for a single card)")
    prep.add_argument("--shared", type=Path, default=default_shared(),
                      help="folder the cards' relative roots are resolved against (default: ../shared)")
    prep.add_argument("--spacing", default="3.0",
                      help="voxel size in mm: one number (isotropic) or x,y,z in RAS order (default 3.0)")
    prep.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    prep.add_argument("--force", action="store_true", help="re-do cases even when up to date")
    prep.add_argument("--strict", action="store_true", help="exit 1 when any case failed")
    prep.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    prep.set_defaults(func=run_prepare)


__all__ = ["add_parser", "run_check", "run_prepare"]
