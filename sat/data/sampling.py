"""Training-sample generation: which case, which patch, which text queries.

Rules (the SAT recipe, adapted to partial labels):

- **Cases**: a case of a dataset with ``n`` training cases has weight ``knob / sqrt(n)``, so
  a dataset's share of the samples grows like ``sqrt(n)`` (big datasets do not drown the small
  ones) and ``knob`` (per dataset, default 1) tunes it.
- **Patches**: with probability ``p_foreground`` a patch holds a random voxel of a random
  structure of the case, up to ``foreground_offset`` patch sizes from the patch centre per
  axis (0.5: anywhere in the patch, as nnU-Net places it; 0: always at the centre, which
  teaches structures at the centre only while sliding-window inference sees them anywhere
  in a window), otherwise the patch is centred at a random voxel. With probability ``p_thin``
  only a central slab of ``min_thin..Z`` slices is kept and the rest is set to the case's
  background (its minimum: what sliding-window inference pads thin volumes with), so the
  model learns thin inputs. Parts of a patch outside the volume get the background too.
- **Queries**: up to ``k`` per sample, positives (structures inside the patch) first, then
  negatives drawn only among the concepts the case's dataset labels (partial labels: an
  unlabelled structure is unknown, not absent). Padding queries have ``query_mask`` False.
- **Augmentation**: rotations (``rotate``, radians about x, y, z), magnification drawn
  log-uniformly in ``zoom`` (organ sizes differ between people), translations, smooth
  elastic deformation with probability ``p_elastic`` (another person's organs differ in
  shape), optional per-structure intensity offsets (``structure_shift``: enhancement differs
  between scans), simulated IV contrast on CT with probability ``p_contrast`` (:mod:`sat.data.contrast`:
  arterial, portal-venous or delayed enhancement of vessels and organs), redrawn stomach and
  bowel content on CT with probability ``p_lumen`` (:mod:`sat.data.lumen`: gas, fluid or oral
  contrast with a gas-fluid level), random CT windows (``window_jitter``: each bound of
  ``ct_window`` moved by up to that many HU, on cases kept in their full range), and (MONAI)
  intensity scale/shift, contrast (gamma), gaussian noise and smoothing. Never a left-right flip: laterality is part of
  what the text says.

Every sample is a pure function of ``(seed, index)``, so a resumed run sees exactly the
samples it would have seen without the interruption.

:class:`Case` (:mod:`sat.data.case`) and :class:`QueryTable` (:mod:`sat.data.queries`), what
the sampler reads, are re-exported here.

Example:
    >>> import numpy as np, torch
    >>> from sat.data.sampling import Case, PatchDataset, QueryTable
    >>> lab = np.zeros((32, 32, 16), np.uint16); lab[8:20, 8:20, 4:12] = 1
    >>> case = Case("toy", "c1", "ct", np.zeros((32, 32, 16), np.float32), lab, {"liver": (1,)}, ("liver", "spleen"))
    >>> table = QueryTable.from_embeddings({("ct", "liver"): torch.ones(2, 8), ("ct", "spleen"): -torch.ones(1, 8)})
    >>> ds = PatchDataset([case], table, patch_size=(16, 16, 16), queries_per_sample=3, augment=False)
    >>> s = ds[0]
    >>> s["image"].shape, s["queries"].shape, s["target"].shape, s["query_mask"].tolist()
    (torch.Size([1, 16, 16, 16]), torch.Size([3, 8]), torch.Size([3, 16, 16, 16]), [True, True, False])
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from sat.data.augment import ROTATE, ZOOM, Augmentation, _crop_pad, _thin
from sat.data.case import Case
from sat.data.contrast import simulate_contrast
from sat.data.lumen import simulate_lumen
from sat.data.queries import QueryTable
from sat.errors import ConfigError

__all__ = ["Case", "QueryTable", "PatchDataset", "EpochSampler", "case_weights", "choose_queries"]

log = logging.getLogger(__name__)

def case_weights(cases: Sequence[Case], knobs: Mapping[str, float] | None = None) -> np.ndarray:
    """Sampling probability of each case: ``knob[dataset] / sqrt(cases in dataset)``, normalised.

    Example:
        >>> import numpy as np
        >>> c = lambda d, i: Case(d, i, "ct", np.zeros((2, 2, 2)), np.zeros((2, 2, 2), np.uint16), {}, ())
        >>> case_weights([c("a", "1"), c("a", "2"), c("a", "3"), c("a", "4"), c("b", "1")]).round(3).tolist()
        [0.167, 0.167, 0.167, 0.167, 0.333]
    """
    knobs = dict(knobs or {})
    if not cases:
        raise ConfigError("no training cases; check the cache's index.csv split column")
    bad = {k: v for k, v in knobs.items() if not (isinstance(v, (int, float)) and v >= 0)}
    if bad:
        raise ConfigError(f"dataset weights must be numbers >= 0, got {bad}")
    counts: dict[str, int] = {}
    for c in cases:
        counts[c.dataset] = counts.get(c.dataset, 0) + 1
    w = np.array([knobs.get(c.dataset, 1.0) / math.sqrt(counts[c.dataset]) for c in cases], float)
    if w.sum() <= 0:
        raise ConfigError("every dataset weight is 0; give at least one dataset a positive weight")
    return w / w.sum()


def choose_queries(
    present: Sequence[str],
    negatives: Sequence[str],
    *,
    k: int,
    rng: np.random.Generator,
    concept_weights: Mapping[str, float] | None = None,
    negative_fraction: float = 0.5,
) -> list[str]:
    """Up to ``k`` concepts: positives first (weighted random order), then negatives.

    When both kinds exist, ``max(1, round(k * negative_fraction))`` slots are kept for
    negatives (so the presence head sees both); slots one kind cannot fill go to the other.

    Example:
        >>> import numpy as np
        >>> q = choose_queries(["liver", "spleen"], ["aorta", "stomach"], k=4, rng=np.random.default_rng(0))
        >>> sorted(q[:2]), sorted(q[2:])
        (['liver', 'spleen'], ['aorta', 'stomach'])
    """
    if k < 1:
        raise ConfigError(f"queries_per_sample must be >= 1, got {k}")
    pos = _weighted_order(list(present), rng, concept_weights)
    neg = _weighted_order(list(negatives), rng, concept_weights)
    n_neg = min(len(neg), max(1, round(k * negative_fraction))) if pos else min(len(neg), k)
    n_pos = min(len(pos), k - n_neg)
    n_neg = min(len(neg), k - n_pos)
    return pos[:n_pos] + neg[:n_neg]


def _weighted_order(items: list[str], rng: np.random.Generator, weights: Mapping[str, float] | None) -> list[str]:
    if len(items) < 2:
        return items
    w = np.array([(weights or {}).get(i, 1.0) for i in items], float) + 1e-9
    order = rng.choice(len(items), len(items), replace=False, p=w / w.sum())
    return [items[i] for i in order]


class EpochSampler(DistributedSampler):
    """Yields ``samples_per_epoch`` sample indices per rank, distinct across ranks and batches.

    The ``j``-th item of the batch at global position ``p`` on rank ``r`` gets index
    ``(p * num_replicas + r) * batch_size + j``. The position of an epoch's first batch is
    ``position()`` when given (the trainer's consumed batches: robust to resume), else
    ``epoch * batches_per_epoch``. The dataset turns an index into a sample
    deterministically. A ``DistributedSampler`` subclass so Lightning keeps it under DDP.
    """

    def __init__(
        self,
        samples_per_epoch: int,
        *,
        batch_size: int = 1,
        num_replicas: int = 1,
        rank: int = 0,
        position: Callable[[], int] | None = None,
    ) -> None:
        if samples_per_epoch < 1 or batch_size < 1 or samples_per_epoch % batch_size:
            raise ConfigError(
                f"samples per epoch ({samples_per_epoch}) must be a positive multiple of batch_size ({batch_size})"
            )
        if not 0 <= rank < num_replicas:
            raise ConfigError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.samples_per_epoch = samples_per_epoch
        self.batch_size = batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.position = position
        self.epoch = 0

    def __iter__(self):
        batches = self.samples_per_epoch // self.batch_size
        p0 = int(self.position()) if self.position is not None else self.epoch * batches
        world, rank, bs = self.num_replicas, self.rank, self.batch_size
        return iter([((p0 + b) * world + rank) * bs + j for b in range(batches) for j in range(bs)])

    def __len__(self) -> int:
        return self.samples_per_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


class PatchDataset(Dataset):
    """Map-style dataset: index -> one augmented patch with its queries and targets.

    Each item is a dict: ``image`` [1, X, Y, Z] float32, ``queries`` [K, D] float32,
    ``target`` [K, X, Y, Z] uint8, ``presence`` [K] float32 (structure inside the patch),
    ``query_mask`` [K] bool, ``key`` "dataset/case@index".
    """

    def __init__(
        self,
        cases: Sequence[Case],
        table: QueryTable,
        *,
        patch_size: Sequence[int],
        queries_per_sample: int = 16,
        p_foreground: float = 0.7,
        foreground_offset: float = 0.5,
        p_thin: float = 0.2,
        min_thin: int = 8,
        augment: bool = True,
        structure_shift: float = 0.0,
        p_contrast: float = 0.0,
        p_elastic: float = 0.0,
        p_lumen: float = 0.0,
        zoom: Sequence[float] = ZOOM,
        rotate: Sequence[float] = ROTATE,
        dataset_weights: Mapping[str, float] | None = None,
        concept_weights: Mapping[str, float] | None = None,
        ct_window: Sequence[float] | None = None,
        window_jitter: float = 0.0,
        seed: int = 0,
    ) -> None:
        if window_jitter < 0 or (window_jitter > 0 and ct_window is None):
            raise ConfigError("window_jitter must be >= 0 HU and needs a ct_window to move")
        if len(patch_size) != 3 or min(patch_size) < 1:
            raise ConfigError(f"patch_size must be 3 positive ints, got {patch_size}")
        if not (0 <= p_foreground <= 1 and 0 <= p_thin <= 1):
            raise ConfigError("p_foreground and p_thin must be probabilities in [0, 1]")
        if not 0 <= foreground_offset <= 0.5:
            raise ConfigError(f"foreground_offset must be in [0, 0.5] (patch sizes), got {foreground_offset}")
        self.cases = list(cases)
        self.probs = case_weights(self.cases, dataset_weights)
        self.table = table
        self.patch = tuple(int(p) for p in patch_size)
        self.reach = tuple(int(p * foreground_offset) for p in self.patch)  # largest offset of a chosen voxel
        self.k = int(queries_per_sample)
        self.p_foreground, self.p_thin, self.min_thin = p_foreground, p_thin, max(1, int(min_thin))
        self.concept_weights = dict(concept_weights or {})
        self.seed = int(seed)
        self.ct_window = tuple(float(v) for v in ct_window) if window_jitter > 0 else None
        self.window_jitter = float(window_jitter)
        self.p_contrast = float(p_contrast) if augment else 0.0
        self.p_lumen = float(p_lumen) if augment else 0.0
        self.augment = None
        if augment:
            self.augment = Augmentation(self.patch, p_structure=0.5 if structure_shift > 0 else 0.0,
                                        structure_shift=structure_shift, p_elastic=p_elastic, zoom=zoom,
                                        rotate=rotate)
        for c in self.cases:
            missing = [x for x in c.labelled if (c.modality, x) not in table]
            if missing:
                raise ConfigError(f"case {c.dataset}/{c.case}: no text embedding for {missing[:5]}; rebuild the query table")

    def __len__(self) -> int:
        return 2**62  # indices come from EpochSampler; every index is a valid sample

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, int(index)])
        case = self.cases[int(rng.choice(len(self.cases), p=self.probs))]
        image, label = self._crop(case, rng)
        seeds = rng.integers(2**31, size=4)
        window = self._window(case, np.random.default_rng([int(seeds[3]), 2]))
        if self.augment is not None:
            image, label = self.augment.spatial(image, label, int(seeds[0]))
            image = self.augment.structures(image, label, int(seeds[2]))
            image = self._contrast(case, image, label, np.random.default_rng(int(seeds[3])))
            image = self._lumen(case, image, label, np.random.default_rng([int(seeds[3]), 1]))
        if window is not None:  # simulated enhancement stays inside the (drawn) window
            image = np.clip(image, *window)
        if self.p_thin > 0 and rng.random() < self.p_thin:
            background = case.background if window is None else max(case.background, window[0])
            image, label = _thin(image, label, rng, self.min_thin, background)
        if self.augment is not None:  # after thinning: the padding is augmented like the image
            image = self.augment.intensity(image, int(seeds[1]))
        return self._queries(case, image, label, rng, f"{case.dataset}/{case.case}@{index}")

    # -- pieces -----------------------------------------------------------------------------
    def _window(self, case: Case, rng: np.random.Generator) -> tuple[float, float] | None:
        """The standardized range this patch is clipped to: the case's own window, or for a CT case
        kept in its full range (``window_jitter`` > 0) ``ct_window`` with each bound moved by up to
        ``window_jitter`` HU."""
        if self.ct_window is None or case.modality != "ct" or case.intensity_std is None or case.window is not None:
            return case.window
        lo, hi = (b + rng.uniform(-self.window_jitter, self.window_jitter) for b in self.ct_window)
        return (lo - case.intensity_mean) / case.intensity_std, (hi - case.intensity_mean) / case.intensity_std

    def _contrast(self, case: Case, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Simulated IV contrast (:mod:`sat.data.contrast`) on a CT patch with probability ``p_contrast``."""
        if case.modality != "ct" or not case.tissues or case.intensity_std is None:
            return image
        if rng.random() >= self.p_contrast:
            return image
        return simulate_contrast(image, label, case.tissues, case.intensity_std, rng)

    def _lumen(self, case: Case, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Redrawn stomach/bowel content (:mod:`sat.data.lumen`) on a CT patch with probability ``p_lumen``."""
        if case.modality != "ct" or case.intensity_std is None or case.intensity_mean is None:
            return image
        if rng.random() >= self.p_lumen:
            return image
        return simulate_lumen(image, label, case.tissues, case.intensity_std, case.intensity_mean, rng,
                              p_structure=0.7)

    def _crop(self, case: Case, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Crop a box around the chosen centre (larger than the patch when augmenting)."""
        margin = self.augment.margin if self.augment is not None else 1.0
        size = [int(math.ceil(p * margin)) for p in self.patch]
        shape = case.label.shape
        if case.points and rng.random() < self.p_foreground:
            names = sorted(case.points)
            w = np.array([self.concept_weights.get(n, 1.0) for n in names], float) + 1e-9
            pts = case.points[names[int(rng.choice(len(names), p=w / w.sum()))]]
            centre = pts[int(rng.integers(len(pts)))] - np.array([rng.integers(-r, max(r, 1)) for r in self.reach])
        else:
            centre = np.array([rng.integers(s) for s in shape])
        lo = [int(c) - s // 2 for c, s in zip(centre, size, strict=True)]
        return _crop_pad(case.image, lo, size, case.background), _crop_pad(case.label, lo, size, 0)

    def _queries(self, case: Case, image: np.ndarray, label: np.ndarray, rng, key: str) -> dict:
        present = case.present_in(label)
        negatives = [c for c in case.labelled if c not in present]
        weights = dict(self.concept_weights)
        for c in negatives:  # structures elsewhere in this case are the informative negatives
            if c in case.points:
                weights[c] = weights.get(c, 1.0) * 4.0
        chosen = choose_queries(present, negatives, k=self.k, rng=rng, concept_weights=weights)
        k, shape = self.k, image.shape
        target = np.zeros((k, *shape), np.uint8)
        queries = torch.zeros(k, self.table.dim)
        mask = torch.zeros(k, dtype=torch.bool)
        presence = torch.zeros(k)
        for i, concept in enumerate(chosen):
            queries[i] = self.table.get(case.modality, concept, rng)
            mask[i] = True
            if concept in present:
                target[i] = case.mask(label, concept)
                presence[i] = 1.0
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, np.float32))[None],
            "queries": queries,
            "target": torch.from_numpy(target),
            "presence": presence,
            "query_mask": mask,
            "key": key,
        }
