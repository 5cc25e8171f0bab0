"""The ``sat`` command. Each subcommand lives in the module that owns its area.

Registry: subcommand name -> module exposing ``add_parser(subparsers)``; the
parser it adds sets ``func`` to a handler taking the parsed namespace and
returning an exit code. Modules are imported only when needed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from sat.errors import SATError

SUBCOMMANDS: dict[str, str] = {
    "segment": "sat.cli_segment",
    "models": "sat.cli_segment",
    "terms": "sat.knowledge.cli",
    "data": "sat.data.cli",
    "train": "sat.training.cli",
    "evaluate": "sat.evaluation.cli",
    "import-official": "sat.cli_segment",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the argument parser (all subcommands, or only ``only`` for speed)."""
    from sat import __version__

    parser = argparse.ArgumentParser(prog="sat", description="Segment 3D medical images from text prompts.")
    parser.add_argument("--version", action="version", version=f"sat {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    done: set[str] = set()
    for name, module in SUBCOMMANDS.items():
        if (only is not None and name != only) or module in done:
            continue
        done.add(module)
        importlib.import_module(module).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 SAT error, 2 usage error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first if first in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SATError as err:
        print(f"sat {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sat: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
