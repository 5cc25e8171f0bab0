"""The original SAT vocabulary mapped onto knowledge-tree concepts, per modality.

The original networks were trained on 498 class names written ``"<modality>_<name>"``
(``ct_left kidney``, ``mri_liver``; the authors' ``terminology_list.json``, key ``all``). Each
name is resolved on the knowledge tree; several names of one modality may resolve to one
concept ("kidney tumor", "kidney tumour"), and the name that the most of the authors'
datasets use is kept (ties: the first listed), so the network is always queried with the
text it saw most.

Example:
    >>> vocab = official_vocabulary("terminology_list.json")       # doctest: +SKIP
    >>> vocab["ct"]["kidney_left"]                                 # doctest: +SKIP
    'left kidney'
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path

from sat.errors import ConfigError, UnknownTermError

log = logging.getLogger(__name__)

__all__ = ["official_vocabulary", "default_vocabulary_file", "MODALITIES"]

MODALITIES = {"ct": "ct", "mri": "mr", "mr": "mr", "pet": "pet"}
_RELATIVE = Path("..") / "shared" / "terms" / "sat" / "terminology_list.json"


def default_vocabulary_file() -> Path:
    """Where a source checkout finds the list: ``../shared/terms/sat/terminology_list.json`` beside the project."""
    return (Path(__file__).resolve().parents[2] / _RELATIVE).resolve()


def _read(path: Path) -> tuple[list[str], Counter]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        names = list(data["all"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not the original SAT terminology_list.json (a JSON object with the key 'all'); "
                          "pass the authors' file with --vocabulary") from exc
    uses = Counter(n for items in (data.get("dataset_based") or {}).values() for n in items)
    return names, uses


def official_vocabulary(path: str | os.PathLike, tree=None) -> dict[str, dict[str, str]]:
    """``{modality: {concept id: original class name}}`` for ``"ct"``, ``"mr"``, ``"pet"``.

    Names the tree cannot resolve, or of another modality, are skipped with a warning.

    Raises:
        ConfigError: the file is missing or not the original list.
    """
    from sat import knowledge

    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"the original SAT vocabulary {path} does not exist; pass --vocabulary with the authors' "
                          "terminology_list.json")
    tree = tree or knowledge.load()
    names, uses = _read(path)
    chosen: dict[str, dict[str, str]] = {m: {} for m in ("ct", "mr", "pet")}
    skipped = []
    for item in names:
        prefix, _, name = str(item).partition("_")
        modality = MODALITIES.get(prefix.lower())
        if modality is None or not name:
            skipped.append(item)
            continue
        try:
            concept = tree.resolve(name)
        except UnknownTermError:
            skipped.append(item)
            continue
        known = chosen[modality].get(concept.id)
        if known is None or uses[item] > uses[f"{prefix}_{known}"]:
            chosen[modality][concept.id] = name
    if skipped:
        log.warning("%d original class name(s) not mapped to a concept: %s", len(skipped), ", ".join(skipped[:10]))
    log.info("original vocabulary: %s", ", ".join(f"{len(v)} {m}" for m, v in chosen.items()))
    return {m: dict(sorted(v.items())) for m, v in chosen.items()}
