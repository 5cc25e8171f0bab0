"""Precomputed text embeddings of the training concepts (:class:`QueryTable`).

Example:
    >>> import torch
    >>> from sat.data.queries import QueryTable
    >>> table = QueryTable({("ct", "liver"): torch.ones(2, 8)})
    >>> table.dim, ("ct", "liver") in table, sorted(table.to_flat())
    (8, True, ['ct/liver'])
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from sat.errors import ConfigError

__all__ = ["QueryTable"]


class QueryTable:
    """Precomputed text embeddings: (modality, concept) -> [S, D] (name + synonyms).

    Built once with the frozen text encoder; training samples one row per query (synonym
    augmentation) and never runs the encoder.
    """

    def __init__(self, embeddings: Mapping[tuple[str, str], torch.Tensor]) -> None:
        if not embeddings:
            raise ConfigError("the query table is empty; the training cache lists no concepts")
        dims = {v.shape[-1] for v in embeddings.values()}
        if len(dims) != 1 or any(v.ndim != 2 or len(v) == 0 for v in embeddings.values()):
            raise ConfigError("query embeddings must all be non-empty [S, D] tensors of one width D")
        self.embeddings = {k: v.float().contiguous() for k, v in embeddings.items()}
        self.dim = dims.pop()

    @classmethod
    def from_embeddings(cls, embeddings: Mapping[tuple[str, str], torch.Tensor]) -> QueryTable:
        """Same as the constructor (reads better in examples)."""
        return cls(embeddings)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self.embeddings

    def get(self, modality: str, concept: str, rng: np.random.Generator | None = None) -> torch.Tensor:
        """[D] embedding: the name (row 0) without ``rng``, a random synonym row with it."""
        rows = self.embeddings.get((modality, concept))
        if rows is None:
            raise ConfigError(f"no text embedding for {concept!r} ({modality}); rebuild the query table")
        return rows[0 if rng is None else int(rng.integers(len(rows)))]

    def to_flat(self) -> dict[str, torch.Tensor]:
        """{"modality/concept": [S, D]} (safetensors-friendly)."""
        return {f"{m}/{c}": v for (m, c), v in self.embeddings.items()}

    @classmethod
    def from_flat(cls, flat: Mapping[str, torch.Tensor]) -> QueryTable:
        """Inverse of :meth:`to_flat`."""
        return cls({tuple(k.split("/", 1)): v for k, v in flat.items()})
