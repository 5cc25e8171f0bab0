"""Converters: one function per public dataset layout, registered by name in :data:`CONVERTERS`.

A converter ``(root: Path, card: DatasetCard) -> list[CaseSource]`` finds the
image and label files of every labelled case; :func:`load_case` reads a case.
A card names its converter in ``layout``.

Example:
    >>> from sat.data.converters import CONVERTERS, find_cases
    >>> sorted(CONVERTERS)[:3]
    ['abdomenct1k', 'amos22', 'brats']
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sat.data.converters import decathlon, folders, generic
from sat.data.converters.base import CaseSource, LabelPart, load_case
from sat.errors import ConfigError, InputError

Converter = Callable[[Path, "DatasetCard"], list[CaseSource]]  # noqa: F821

CONVERTERS: dict[str, Converter] = {
    "msd": decathlon.msd,
    "nnunet": decathlon.nnunet,
    "amos22": decathlon.amos22,
    "word": decathlon.word,
    "flare22": decathlon.flare22,
    "abdomenct1k": decathlon.abdomenct1k,
    "btcv": decathlon.btcv,
    "totalseg_v2": folders.totalseg_v2,
    "kits": folders.kits,
    "lits": folders.lits,
    "verse": folders.verse,
    "brats": folders.brats,
    "chaos": folders.chaos,
    "freesurfer": folders.freesurfer,
    "files": generic.files,
    "generic": generic.generic,
}

__all__ = ["CONVERTERS", "CaseSource", "LabelPart", "find_cases", "load_case"]


def find_cases(card, root: str | Path) -> list[CaseSource]:
    """Run the card's converter on ``root``; raises InputError when no labelled case is found."""
    if card.layout not in CONVERTERS:
        raise ConfigError(f"layout {card.layout!r} of {card.name!r} is not one of {', '.join(sorted(CONVERTERS))}")
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root} not found: pass the folder of dataset {card.name!r} with --root (or --shared)")
    cases = CONVERTERS[card.layout](root, card)
    if not cases:
        raise InputError(f"no labelled case found in {root} for layout {card.layout!r}: check --root")
    return cases
