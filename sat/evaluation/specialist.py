"""Per-dataset specialist baseline: MONAI DynUNet planned with nnU-Net's 3d_fullres rules.

The planner reads a dataset fingerprint (spacings and shapes of the training cases) and
chooses, as nnU-Net's 3d_fullres configuration does:

- target spacing: the median spacing; for strongly anisotropic data (max/min > 3) the
  coarse axis takes the 10th percentile instead (or a fixed ``target_spacing``);
- patch size: the aspect ratio of the median shape in target spacing, as large as the voxel
  budget allows (``max_patch_voxels``, the CPU counterpart of nnU-Net's GPU memory limit),
  never larger than the median shape (but >= 16 voxels, small images are padded), divisible
  by 2**(poolings per axis);
- poolings: an axis is halved while its feature map stays >= 4 voxels and its current
  spacing is < 2x the finest one; kernels are 3 where the spacing is within 2x the finest,
  1 otherwise (until the anisotropy is pooled away); at most 5 poolings per axis;
- filters: ``base_filters`` doubling per stage up to ``max_filters``;
- loss Dice + cross-entropy, instance norm, leaky ReLU; deep supervision off by default
  (MONAI computes it at full resolution, which costs a third of a CPU step).

Weights are stored as safetensors with the plan and label table as JSON.

Example:
    >>> plan = plan_specialist([(3.0, 3.0, 3.0)], [(122, 101, 112)], max_patch_voxels=64**3)
    >>> plan.patch_size, plan.strides[-1]
    ((64, 48, 64), (2, 1, 2))
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from sat.errors import InputError, WeightsError
from sat.preprocess import CT_SCALE

__all__ = ["SpecialistPlan", "build_network", "load_specialist", "plan_specialist", "save_specialist"]

FORMAT_VERSION = 1
MIN_FEATURE_MAP = 4
MAX_POOL_PER_AXIS = 5


@dataclass
class SpecialistPlan:
    """Everything needed to rebuild, train and apply one specialist (JSON round trip via asdict)."""

    spacing: tuple[float, float, float]
    patch_size: tuple[int, int, int]
    kernels: tuple[tuple[int, int, int], ...]
    strides: tuple[tuple[int, int, int], ...]
    filters: tuple[int, ...]
    median_shape: tuple[int, int, int]
    labels: dict[int, str] = field(default_factory=dict)  # output channel -> label name (0 = background)
    values: dict[int, int] = field(default_factory=dict)  # output channel -> dataset label value
    modality: str | None = None
    deep_supervision: int = 0  # extra heads; MONAI upsamples them to full size, costly on CPU
    ct_scale: tuple[float, float] | None = CT_SCALE  # CT intensity map; None: per-scan z-score (older plans)

    @classmethod
    def from_dict(cls, data: Mapping) -> SpecialistPlan:
        """Inverse of ``dataclasses.asdict`` (JSON turns tuples into lists and int keys into strings)."""
        d = dict(data)
        for key in ("spacing", "patch_size", "filters", "median_shape"):
            d[key] = tuple(d[key])
        d["kernels"] = tuple(tuple(k) for k in d["kernels"])
        d["strides"] = tuple(tuple(s) for s in d["strides"])
        d["labels"] = {int(k): str(v) for k, v in d.get("labels", {}).items()}
        d["values"] = {int(k): int(v) for k, v in d.get("values", {}).items()}
        d["ct_scale"] = tuple(d["ct_scale"]) if d.get("ct_scale") is not None else None  # absent: older plan
        return cls(**d)


def target_spacing(spacings: Sequence[Sequence[float]], *, anisotropy: float = 3.0) -> tuple[float, float, float]:
    """Median spacing; the coarse axis of strongly anisotropic data uses its 10th percentile."""
    arr = np.asarray(spacings, dtype=np.float64)
    target = np.median(arr, axis=0)
    coarse = int(np.argmax(target))
    others = np.delete(target, coarse)
    if target[coarse] > anisotropy * others.max():
        target[coarse] = max(np.percentile(arr[:, coarse], 10), others.max())
    return tuple(float(v) for v in target)  # type: ignore[return-value]


def _pooling(spacing: Sequence[float], patch: Sequence[int]) -> tuple[list[list[int]], list[list[int]], list[int]]:
    """nnU-Net-style poolings for ``patch`` at ``spacing``: (kernels, strides, poolings per axis)."""
    cur_spacing, cur_size = [float(s) for s in spacing], [int(p) for p in patch]
    n_pool = [0, 0, 0]
    kernel = [3 if s / min(cur_spacing) < 2 else 1 for s in cur_spacing]
    kernels, strides = [list(kernel)], [[1, 1, 1]]
    while True:
        axes = [a for a in range(3) if cur_size[a] >= 2 * MIN_FEATURE_MAP and n_pool[a] < MAX_POOL_PER_AXIS]
        if not axes:
            break
        finest = min(cur_spacing[a] for a in axes)
        axes = [a for a in axes if cur_spacing[a] / finest < 2]
        stride = [1, 1, 1]
        for a in axes:
            stride[a], n_pool[a] = 2, n_pool[a] + 1
            cur_spacing[a] *= 2
            cur_size[a] = math.ceil(cur_size[a] / 2)
        kernel = [3 if kernel[a] == 3 or cur_spacing[a] / min(cur_spacing) < 2 else 1 for a in range(3)]
        kernels.append(list(kernel))
        strides.append(stride)
    return kernels, strides, n_pool


def plan_specialist(
    spacings: Sequence[Sequence[float]],
    shapes: Sequence[Sequence[int]],
    *,
    target: Sequence[float] | None = None,
    max_patch_voxels: int = 64**3,
    base_filters: int = 16,
    max_filters: int = 128,
) -> SpecialistPlan:
    """Plan a 3d_fullres-style DynUNet from the fingerprint (per-case spacing mm and shape voxels).

    Args:
        spacings, shapes: one (3,) entry per training case, original grid.
        target: fixed target spacing (mm); default from :func:`target_spacing`.
        max_patch_voxels: voxel budget of one patch (CPU memory / time cap).
        base_filters, max_filters: width of the first stage and the cap (nnU-Net: 32 / 320).
    """
    if len(spacings) == 0 or len(spacings) != len(shapes):
        raise InputError("the fingerprint needs one spacing and one shape per training case")
    spacing = tuple(float(s) for s in target) if target is not None else target_spacing(spacings)
    sizes = np.asarray(shapes, float) * np.asarray(spacings, float) / np.asarray(spacing)
    median = np.maximum(np.round(np.median(sizes, axis=0)), 1).astype(int)
    # start from the median shape's aspect ratio, shrink the longest axis (in mm) until it fits
    patch = np.maximum(median, 4 * MIN_FEATURE_MAP).astype(float)  # small images are padded: >= 2 poolings
    while np.prod(patch) > max_patch_voxels:
        axis = int(np.argmax(patch * np.asarray(spacing)))
        patch[axis] = max(patch[axis] * 0.9, MIN_FEATURE_MAP)
    kernels, strides, n_pool = _pooling(spacing, patch.astype(int))
    div = np.asarray([2**n for n in n_pool])
    patch_i = np.maximum(np.floor(patch / div) * div, div).astype(int)
    kernels, strides, n_pool = _pooling(spacing, patch_i)  # re-plan for the rounded patch
    if len(strides) < 3:
        raise InputError(f"patch {tuple(int(p) for p in patch_i)} allows fewer than 2 poolings; raise max_patch_voxels (>= 16**3)")
    filters = tuple(min(base_filters * 2**i, max_filters) for i in range(len(strides)))
    return SpecialistPlan(
        spacing=spacing, patch_size=tuple(int(p) for p in patch_i),  # type: ignore[arg-type]
        kernels=tuple(tuple(k) for k in kernels), strides=tuple(tuple(s) for s in strides),  # type: ignore[arg-type]
        filters=filters, median_shape=tuple(int(m) for m in median),  # type: ignore[arg-type]
    )


def build_network(plan: SpecialistPlan, *, n_classes: int | None = None):  # -> monai DynUNet
    """MONAI DynUNet for ``plan`` (1 input channel, ``n_classes`` outputs incl. background)."""
    from monai.networks.nets import DynUNet

    out = n_classes if n_classes is not None else len(plan.labels)
    if out < 2:
        raise InputError("a specialist needs at least one foreground class")
    return DynUNet(
        spatial_dims=3, in_channels=1, out_channels=out, kernel_size=plan.kernels, strides=plan.strides,
        upsample_kernel_size=plan.strides[1:], filters=plan.filters, norm_name=("INSTANCE", {"affine": True}),
        deep_supervision=plan.deep_supervision > 0, deep_supr_num=max(plan.deep_supervision, 1),
    )


def save_specialist(
    model, plan: SpecialistPlan, directory: str | Path, *, extra: Mapping | None = None, half: bool = True
) -> Path:
    """Write ``model.safetensors`` (float16 with ``half``, to keep the repository small) + ``plan.json``."""
    import copy

    import torch
    from safetensors.torch import save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stored = copy.deepcopy(model).cpu().half() if half else model
    if half and not all(torch.isfinite(p).all() for p in stored.parameters()):
        raise WeightsError("weights overflow float16; save with half=False")
    save_model(stored, str(directory / ".model.safetensors.tmp"))  # shared (aliased) tensors stored once
    (directory / ".model.safetensors.tmp").chmod(0o644)
    (directory / ".model.safetensors.tmp").replace(directory / "model.safetensors")
    meta = {"format_version": FORMAT_VERSION, "architecture": "monai.DynUNet", "plan": asdict(plan), **(extra or {})}
    (directory / ".plan.json.tmp").write_text(json.dumps(meta, indent=1))
    (directory / ".plan.json.tmp").replace(directory / "plan.json")
    return directory


def load_specialist(directory: str | Path):  # -> (DynUNet, SpecialistPlan, dict)
    """Inverse of :func:`save_specialist`: (network in eval mode, plan, plan.json content)."""
    from safetensors.torch import load_model

    directory = Path(directory)
    if not (directory / "plan.json").is_file() or not (directory / "model.safetensors").is_file():
        raise WeightsError(f"{directory} lacks plan.json or model.safetensors; train it with evaluate/train_specialists.py")
    meta = json.loads((directory / "plan.json").read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise WeightsError(f"{directory}/plan.json has format_version {meta.get('format_version')}, expected 1")
    plan = SpecialistPlan.from_dict(meta["plan"])
    model = build_network(plan)
    try:
        load_model(model, str(directory / "model.safetensors"))  # float16 values are cast into float32
    except (RuntimeError, OSError, ValueError) as err:
        raise WeightsError(f"{directory}/model.safetensors does not match plan.json ({err})") from None
    return model.eval(), plan, meta
