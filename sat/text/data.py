"""Training data for contrastive pretraining: cached frozen-layer states and concept batches.

Only the top layer(s) are trained, so the frozen bottom layers are run once per
distinct text and their token states cached (float16, optionally on disk).
A batch is a set of concepts (random seeds plus their hard negatives: the other
side, siblings, parent/child) with several views each; views of the same
concept are positives, everything else in the batch negatives.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from sat.errors import InputError
from sat.text.encoder import MODALITIES, TextEncoder, laterality_of
from sat.text.pairs import PairSet

logger = logging.getLogger(__name__)


class StateCache:
    """Token states after the frozen layers for a fixed list of texts.

    ``states`` is [sum of token counts, H] float16; text ``i`` owns rows
    ``offsets[i]:offsets[i+1]``.
    """

    def __init__(self, texts: Sequence[str], states: torch.Tensor, offsets: torch.Tensor) -> None:
        self.texts = list(texts)
        self.index = {t: i for i, t in enumerate(self.texts)}
        self.states, self.offsets = states, offsets

    @staticmethod
    def key(encoder: TextEncoder, texts: Sequence[str]) -> str:
        digest = hashlib.sha256(json.dumps([encoder.base_fingerprint(), encoder.split, encoder.max_length, list(texts)]).encode())
        return digest.hexdigest()[:20]

    @classmethod
    def build(cls, encoder: TextEncoder, texts: Sequence[str], *, batch_size: int = 256) -> StateCache:
        """Run the frozen layers over ``texts`` (sorted by length, batched, no grad)."""
        texts = list(texts)
        pieces: list[torch.Tensor | None] = [None] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        encoder.eval()
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                tokens = encoder.tokenize([texts[i] for i in idx])
                hidden = encoder.bottom(**tokens)
                for row, i in enumerate(idx):
                    pieces[i] = hidden[row, : int(tokens["attention_mask"][row].sum())].half()
        lengths = torch.tensor([0] + [p.shape[0] for p in pieces])
        return cls(texts, torch.cat(pieces).clone(), lengths.cumsum(0))

    @classmethod
    def load_or_build(cls, encoder: TextEncoder, texts: Sequence[str], path: Path | None) -> StateCache:
        """Reuse ``path`` when it was built for the same base, split and texts; else build and save it."""
        from safetensors.torch import load_file, save_file

        key = cls.key(encoder, texts)
        if path is not None and path.is_file():
            try:
                data = load_file(path)
                if bytes(data["key"].tolist()).decode() == key:
                    logger.info("reusing cached frozen-layer states %s", path)
                    return cls(texts, data["states"], data["offsets"])
            except Exception as err:  # noqa: BLE001 - a stale/corrupt cache is rebuilt
                logger.warning("ignoring unreadable state cache %s (%s)", path, err)
        logger.info("running the frozen layers over %d texts", len(texts))
        cache = cls.build(encoder, texts)
        if path is not None:
            tmp = path.with_suffix(".tmp")
            key_bytes = torch.tensor(list(key.encode()), dtype=torch.uint8)
            save_file({"states": cache.states, "offsets": cache.offsets, "key": key_bytes}, tmp)
            tmp.replace(path)
        return cache

    def collate(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded states [B, T, H] float32 and mask [B, T] int64 of the given texts."""
        rows = [self.states[self.offsets[self.index[t]] : self.offsets[self.index[t] + 1]] for t in texts]
        length = max(r.shape[0] for r in rows)
        hidden = torch.zeros(len(rows), length, self.states.shape[1])
        mask = torch.zeros(len(rows), length, dtype=torch.long)
        for i, r in enumerate(rows):
            hidden[i, : r.shape[0]] = r.float()
            mask[i, : r.shape[0]] = 1
        return hidden, mask


def _pack(cache: StateCache, texts: list[str], labels: list[int], modalities: list[int]) -> dict[str, torch.Tensor]:
    hidden, mask = cache.collate(texts)
    return {
        "hidden": hidden,
        "mask": mask,
        "side": torch.tensor([laterality_of(t) for t in texts], dtype=torch.long),
        "modality": torch.tensor(modalities, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
    }


class ConceptBatches(Dataset):
    """Map-style dataset whose item ``i`` is a whole training batch (use ``batch_size=None``).

    Batch content is a pure function of (seed, epoch, i), so resuming from a
    checkpoint replays the same data. ``epoch`` is set by the LightningModule.
    """

    def __init__(
        self,
        pairs: PairSet,
        cache: StateCache,
        *,
        steps: int,
        concepts: int = 64,
        views: int = 3,
        hard: int = 2,
        modality_p: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.pairs, self.cache, self.steps = pairs, cache, steps
        self.n_concepts, self.n_views, self.hard, self.modality_p, self.seed = concepts, views, hard, modality_p, seed
        self.ids = sorted(cid for cid, v in pairs.views.items() if len(v) >= 2)
        if not self.ids:
            raise InputError("no concept has two training texts (name + synonym/definition/parent); nothing to learn")
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps

    def _concepts(self, rng: random.Random) -> list[str]:
        chosen: list[str] = []
        seen: set[str] = set()
        while len(chosen) < min(self.n_concepts, len(self.ids)):
            seed_id = rng.choice(self.ids)
            negatives = list(self.pairs.hard_negatives.get(seed_id, ())[:4])
            group = [seed_id] + rng.sample(negatives, min(self.hard, len(negatives)))
            for cid in group:
                if cid not in seen and len(chosen) < self.n_concepts:
                    seen.add(cid)
                    chosen.append(cid)
        return chosen

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = random.Random(f"{self.seed}:{self.epoch}:{i}")
        texts, labels, modalities = [], [], []
        for label, cid in enumerate(self._concepts(rng)):
            views = self.pairs.views[cid]
            picked = [views[0]] + rng.sample(views[1:], min(self.n_views - 1, len(views) - 1))
            for view in picked:
                texts.append(view.text)
                labels.append(label)
                modalities.append(rng.randint(1, len(MODALITIES)) if rng.random() < self.modality_p else 0)
        return _pack(self.cache, texts, labels, modalities)


class RetrievalSet(Dataset):
    """One validation item: held-out synonyms (queries) against every concept name."""

    def __init__(self, pairs: PairSet, cache: StateCache) -> None:
        self.ids = sorted(pairs.names)
        position = {cid: i for i, cid in enumerate(self.ids)}
        queries = [(position[cid], text) for cid, text in pairs.held_out]
        self.names = _pack(cache, [pairs.names[c] for c in self.ids], [0] * len(self.ids), [0] * len(self.ids))
        texts = [t for _, t in queries] or [pairs.names[self.ids[0]]]
        labels = [p for p, _ in queries] or [0]
        self.queries = _pack(cache, texts, labels, [0] * len(texts))

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int) -> dict[str, dict[str, torch.Tensor]]:
        return {"names": self.names, "queries": self.queries}
