"""sat.text: prompts (and a modality) -> query embeddings that know anatomy.

Example:
    >>> from sat.text import load_encoder
    >>> encoder = load_encoder("default")                        # doctest: +SKIP
    >>> encoder.encode(["left kidney"], modality="ct").shape     # doctest: +SKIP
    torch.Size([1, 384])

Submodules are imported lazily (torch is only imported when an encoder is used).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TextEncoder": "sat.text.encoder",
    "load_encoder": "sat.text.encoder",
    "laterality_of": "sat.text.encoder",
    "MODALITIES": "sat.text.encoder",
    "save_delta": "sat.text.delta",
    "load_delta": "sat.text.delta",
    "build_pairs": "sat.text.pairs",
    "train_text_encoder": "sat.text.train",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sat.text' has no attribute {name!r}")
