"""Generic layouts: cases listed in the card (``files``) and an ``images/`` + ``labels/`` folder (``generic``)."""

from __future__ import annotations

from pathlib import Path

from sat.data.cards import DatasetCard
from sat.data.converters.base import CaseSource, LabelPart, pair_folders, require_dir
from sat.errors import InputError


def files(root: Path, card: DatasetCard) -> list[CaseSource]:
    """Cases listed under ``cases`` in the card; image/label paths relative to root.

    A case may have several label files (merged in order, later files win), each
    with an optional ``values`` map from file values to card values.
    """
    if not card.cases:
        raise InputError(f"dataset {card.name!r} uses layout 'files' but its card lists no 'cases'")
    cases = []
    for entry in card.cases:
        image = root / entry.image
        if not image.exists():
            raise InputError(f"{image} not found: check 'cases' of {card.name!r} and --root/--shared")
        parts = tuple(LabelPart(root / p.file, p.values) for p in entry.labels)
        cases.append(CaseSource(entry.id, image, parts, entry.split))
    return cases


def generic(root: Path, card: DatasetCard) -> list[CaseSource]:
    """A folder with ``images/<case>[_0000].nii.gz`` and ``labels/<case>.nii.gz``; names come from the card.

    Option ``image_suffix`` (default ``""``; use ``"_0000"`` for nnU-Net style names).
    """
    require_dir(root / "images", "a folder with images/ and labels/ (same case names)")
    require_dir(root / "labels", "a folder with images/ and labels/ (same case names)")
    return pair_folders(root / "images", root / "labels", image_suffix=str(card.options.get("image_suffix", "")))
