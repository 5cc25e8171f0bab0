"""LightningDataModule over the standardized cache (``sat data prepare``).

Reads ``CACHE/index.csv`` and the per-case ``.npz`` files, precomputes the text
embeddings of every concept (name + synonyms, per modality) ONCE with the frozen text
encoder, and serves augmented patches (:mod:`sat.data.sampling`) for training and whole
volumes for validation.

Example:
    >>> from sat.data.module import SATDataModule
    >>> dm = SATDataModule("cache/ct-3mm", patch_size=(64, 64, 32), batch_size=2)  # doctest: +SKIP
    >>> dm.setup("fit"); batch = next(iter(dm.train_dataloader()))                # doctest: +SKIP
    >>> batch["image"].shape, batch["queries"].shape                                # doctest: +SKIP
    (torch.Size([2, 1, 64, 64, 32]), torch.Size([2, 16, 384]))
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from sat.data.augment import ROTATE, ZOOM
from sat.data.case import Case
from sat.data.contrast import tissue_of
from sat.data.queries import QueryTable
from sat.data.sampling import EpochSampler, PatchDataset
from sat.errors import ConfigError, InputError

__all__ = ["SATDataModule", "load_cases", "build_query_table", "concept_texts"]

log = logging.getLogger(__name__)


def _split_ids(text: Any) -> tuple[str, ...]:
    return tuple(t for t in str(text).split(";") if t and t != "nan") if isinstance(text, str) else ()


def load_cases(
    cache: str | Path,
    *,
    split: str,
    datasets: Sequence[str] | None = None,
    modalities: Sequence[str] | None = None,
    move_to_val: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> list[Case]:
    """Cases of one split from ``CACHE/index.csv`` (``"dataset/case"`` keys can be moved or excluded).

    Raises:
        InputError: the cache or one of its files is missing.
    """
    cache = Path(cache)
    index_path = cache / "index.csv"
    if not index_path.is_file():
        raise InputError(f"no index.csv in {cache}; build the cache first with `sat data prepare`")
    index = pd.read_csv(index_path, dtype=str, keep_default_na=False)
    index["key"] = index["dataset"] + "/" + index["case"]
    index.loc[index["key"].isin(list(move_to_val)), "split"] = "val"
    rows = index[(index["split"] == split) & ~index["key"].isin(list(exclude))]
    if datasets:
        rows = rows[rows["dataset"].isin(list(datasets))]
    if modalities:
        rows = rows[rows["modality"].isin(list(modalities))]
    return [_load_case(cache, row) for row in rows.to_dict("records")]


def _load_case(cache: Path, row: dict) -> Case:
    path = cache / row["file"]
    if not path.is_file():
        raise InputError(f"cache file {path} is missing; re-run `sat data prepare`")
    with np.load(path, allow_pickle=False) as npz:
        image, label = npz["image"], npz["label"]
        values = [int(v) for v in npz["values"]]
        concepts = [str(c) for c in npz["concepts"]]
        std = float(npz["intensity_std"]) if "intensity_std" in npz.files else None
        mean = float(npz["intensity_mean"]) if "intensity_mean" in npz.files else None
    mapping: dict[str, tuple[int, ...]] = {}
    for value, concept in zip(values, concepts, strict=True):
        mapping[concept] = (*mapping.get(concept, ()), value)
    present = set(np.unique(label).tolist())
    mapping = {c: v for c, v in mapping.items() if present.intersection(v)}
    tissues = {v: t for v, c in zip(values, concepts, strict=True) if v in present and (t := tissue_of(c))}
    return Case(row["dataset"], row["case"], row["modality"] or "ct", image, label, mapping,
                _split_ids(row.get("labelled", "")), tissues=tissues, intensity_std=std,
                intensity_mean=mean)


def concept_texts(concept: str, *, synonyms: int = 4) -> list[str]:
    """The concept's preferred name followed by up to ``synonyms`` synonyms (knowledge tree)."""
    from sat import knowledge

    try:
        node = knowledge.load()[concept]
    except KeyError as err:
        raise ConfigError(f"concept {concept!r} is not in the knowledge tree; fix the dataset card") from err
    seen = dict.fromkeys([node.name, *node.synonyms[: max(0, synonyms)]])
    return list(seen)


def build_query_table(
    pairs: Sequence[tuple[str, str]],
    encoder: Any,
    *,
    synonyms: int = 4,
    texts: Callable[[str], list[str]] | None = None,
) -> QueryTable:
    """Encode every (modality, concept) once: rows = name + synonyms, [S, D] each.

    Args:
        pairs: (modality, concept id) pairs to encode.
        encoder: object with ``encode(texts, modality=...) -> [N, D]`` (a frozen TextEncoder).
        synonyms: synonyms per concept besides the name.
        texts: concept id -> texts (default: :func:`concept_texts`).
    """
    texts = texts or (lambda c: concept_texts(c, synonyms=synonyms))
    table = {}
    by_modality: dict[str, list[str]] = {}
    for modality, concept in sorted(set(pairs)):
        by_modality.setdefault(modality, []).append(concept)
    for modality, concepts in by_modality.items():
        lists = [texts(c) for c in concepts]
        flat = [t for lst in lists for t in lst]
        with torch.no_grad():
            emb = torch.as_tensor(encoder.encode(flat, modality=modality)).float()
        start = 0
        for concept, lst in zip(concepts, lists, strict=True):
            table[(modality, concept)] = emb[start:start + len(lst)].clone()
            start += len(lst)
    return QueryTable(table)


def collate_one(batch: list[dict]) -> dict:
    """Validation collate: batches hold exactly one whole volume."""
    return batch[0]


class _Volumes(torch.utils.data.Dataset):
    """Whole validation volumes with the name embedding of each concept they contain."""

    def __init__(self, cases: Sequence[Case], table: QueryTable, concepts: Sequence[str]) -> None:
        self.cases, self.table, self.concepts = list(cases), table, set(concepts)

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, i: int) -> dict:
        case = self.cases[i]
        names = [c for c in case.values if c in self.concepts and (case.modality, c) in self.table]
        label = torch.from_numpy(case.label.astype(np.int64))
        return {
            "image": torch.from_numpy(case.image.astype(np.float32))[None],
            "queries": torch.stack([self.table.get(case.modality, c) for c in names]) if names else torch.zeros(0),
            "target": torch.stack([torch.from_numpy(case.mask(case.label, c)) for c in names]) if names else label[None] < 0,
            "concepts": names,
            "key": f"{case.dataset}/{case.case}",
        }


class SATDataModule(L.LightningDataModule):
    """Patches from the standardized cache, text queries from a precomputed table.

    One epoch is ``steps_per_epoch`` optimizer steps (the checkpoint interval of the recipes):
    every rank draws ``steps_per_epoch * batch_size`` fresh samples per epoch, a pure function of
    ``(seed, epoch, rank, i)`` (exact resume, different samples on each DDP rank).

    Args:
        cache: folder written by ``sat data prepare`` (``index.csv`` + ``.npz``).
        text_encoder: name or folder for :func:`sat.text.load_encoder` (recorded in exports).
        patch_size: training patch in voxels (model space).
        batch_size, queries_per_sample, steps_per_epoch, num_workers: loader settings.
        datasets: dataset name -> sampling knob (only these datasets when given).
        modalities: restrict to these modalities.
        concepts: restrict the trained concepts (positives) to these ids (default: all).
        val_cases / exclude: ``"dataset/case"`` keys moved to validation / dropped.
        p_foreground, foreground_offset, p_thin, min_thin, augment, structure_shift, p_contrast,
            p_elastic, p_lumen: see :mod:`sat.data.sampling`.
        zoom, rotate: spatial augmentation ranges (magnification (low, high); radians about x, y,
            z), see :class:`sat.data.augment.Augmentation`.
        ct_window: clip every CT case to this HU range (e.g. :data:`sat.preprocess.ABDOMEN_WINDOW`,
            the range of sets stored windowed); recorded in the export, so inference clips alike.
        ct_window_jitter: HU; when > 0, training CT cases keep their full range and each patch is
            clipped to ``ct_window`` with each bound moved by up to this much (random windowing;
            validation cases are clipped to ``ct_window`` exactly, as inference clips).
        synonyms: synonyms per concept in the query table (augmentation).
        concept_weights: concept id -> relative sampling weight (patch centres and queries).
        query_cache: optional safetensors file keeping the query table between runs.
        seed: sampling seed.
    """

    def __init__(
        self,
        cache: str,
        *,
        text_encoder: str = "default",
        patch_size: tuple[int, int, int] = (64, 64, 32),
        batch_size: int = 2,
        queries_per_sample: int = 16,
        steps_per_epoch: int = 100,
        num_workers: int = 0,
        datasets: dict[str, float] | None = None,
        modalities: list[str] | None = None,
        concepts: list[str] | None = None,
        val_cases: list[str] | None = None,
        exclude: list[str] | None = None,
        p_foreground: float = 0.7,
        foreground_offset: float = 0.5,
        p_thin: float = 0.2,
        min_thin: int = 8,
        augment: bool = True,
        structure_shift: float = 0.0,
        p_contrast: float = 0.0,
        p_elastic: float = 0.0,
        p_lumen: float = 0.0,
        zoom: tuple[float, float] = ZOOM,
        rotate: tuple[float, float, float] = ROTATE,
        ct_window: tuple[float, float] | None = None,
        ct_window_jitter: float = 0.0,
        synonyms: int = 4,
        concept_weights: dict[str, float] | None = None,
        query_cache: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or steps_per_epoch < 1 or num_workers < 0:
            raise ConfigError("batch_size and steps_per_epoch must be >= 1 and num_workers >= 0")
        self.save_hyperparameters()
        self.train_cases: list[Case] = []
        self.val_cases: list[Case] = []
        self.table: QueryTable | None = None
        self.concepts: list[str] = []

    # -- setup ---------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Load the cases and build (or read) the query table; idempotent."""
        if self.table is not None:
            return
        h = self.hparams
        kw = {"datasets": list(h.datasets) if h.datasets else None, "modalities": h.modalities,
              "move_to_val": h.val_cases or (), "exclude": h.exclude or ()}
        self.train_cases = load_cases(h.cache, split="train", **kw)
        self.val_cases = load_cases(h.cache, split="val", **kw)
        if h.ct_window is not None:
            clipped = self.val_cases if h.ct_window_jitter > 0 else (*self.train_cases, *self.val_cases)
            for case in clipped:
                if case.modality == "ct":
                    case.clip_to(*h.ct_window)
        if not self.train_cases:
            raise ConfigError(f"no training cases in {h.cache} for datasets={h.datasets} modalities={h.modalities}")
        trained = sorted({c for case in self.train_cases for c in case.values})
        if h.concepts:
            unknown = sorted(set(h.concepts) - set(trained))
            if unknown:
                raise ConfigError(f"concepts {unknown[:5]} have no labelled voxels in the training cases; drop them")
            trained = sorted(h.concepts)
            for case in self.train_cases:
                case.values = {c: v for c, v in case.values.items() if c in trained}
                case.points = {c: p for c, p in case.points.items() if c in trained}
                case.labelled = tuple(c for c in case.labelled if c in trained)
        self.concepts = trained
        pairs = {(c.modality, x) for c in (*self.train_cases, *self.val_cases) for x in (*c.labelled, *c.values)}
        self.table = self._query_table(sorted(pairs))
        log.info("data: %d train / %d val cases, %d concepts", len(self.train_cases), len(self.val_cases),
                 len(self.concepts))

    def _query_table(self, pairs: list[tuple[str, str]]) -> QueryTable:
        from safetensors.torch import load_file, save_file

        path = Path(self.hparams.query_cache) if self.hparams.query_cache else None
        if path is not None and path.is_file():
            table = QueryTable.from_flat(load_file(str(path)))
            if all(p in table for p in pairs):
                return table
        from sat.text import load_encoder

        encoder = load_encoder(self.hparams.text_encoder).eval()
        table = build_query_table(pairs, encoder, synonyms=self.hparams.synonyms)
        del encoder
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            save_file(table.to_flat(), str(tmp))
            tmp.replace(path)
        return table

    # -- loaders -------------------------------------------------------------------------------
    def train_dataset(self) -> PatchDataset:
        """The training :class:`PatchDataset` (after :meth:`setup`)."""
        h = self.hparams
        if self.table is None:
            self.setup("fit")
        return PatchDataset(
            self.train_cases, self.table, patch_size=h.patch_size, queries_per_sample=h.queries_per_sample,
            p_foreground=h.p_foreground, foreground_offset=h.foreground_offset, p_thin=h.p_thin,
            min_thin=h.min_thin, augment=h.augment,
            structure_shift=h.structure_shift, p_contrast=h.p_contrast, p_elastic=h.p_elastic, p_lumen=h.p_lumen,
            zoom=tuple(h.zoom), rotate=tuple(h.rotate),
            dataset_weights=h.datasets, concept_weights=h.concept_weights, ct_window=h.ct_window,
            window_jitter=h.ct_window_jitter, seed=h.seed,
        )

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        trainer = getattr(self, "trainer", None)
        world, rank, position = 1, 0, None
        if trainer is not None:
            world, rank = trainer.world_size, trainer.global_rank

            def position() -> int:  # batches this rank consumed so far (exact after a resume)
                return trainer.global_step * trainer.accumulate_grad_batches

        sampler = EpochSampler(h.steps_per_epoch * h.batch_size, batch_size=h.batch_size, num_replicas=world,
                               rank=rank, position=position)
        return DataLoader(
            self.train_dataset(), batch_size=h.batch_size, sampler=sampler, num_workers=h.num_workers,
            persistent_workers=h.num_workers > 0, drop_last=True,
        )

    def val_dataloader(self) -> DataLoader:
        if self.table is None:
            self.setup("validate")
        return DataLoader(_Volumes(self.val_cases, self.table, self.concepts), batch_size=1,
                          collate_fn=collate_one, num_workers=0)
