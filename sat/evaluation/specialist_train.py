"""Training and inference of the DynUNet specialist under a wall-clock CPU budget.

Preprocessing is SAT's own (:func:`sat.preprocess.standardize` at the plan's spacing, its
exact inverse for predictions), so specialist and SAT see the same voxels. Training: patches
of the planned size, one third centred on a random foreground voxel (nnU-Net's
oversampling), intensity scale/shift augmentation (no mirroring: left/right classes),
MONAI ``DiceCELoss`` (deep supervision weights 1, 1/2, 1/4 normalised when the plan asks for
it), AdamW with a polynomial decay over the time budget (nnU-Net uses SGD for 1000 epochs;
with a budget of minutes AdamW converges faster).

Example:
    >>> model, plan, log = train_specialist(cases, names={1: "liver"}, minutes=20)   # doctest: +SKIP
    >>> labelmap = predict_specialist(model, plan, "ct_b/")                            # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from sat.errors import InputError
from sat.evaluation.specialist import SpecialistPlan, build_network, plan_specialist
from sat.preprocess import CT_SCALE

log = logging.getLogger(__name__)

__all__ = ["prepare_case", "predict_specialist", "train_specialist"]


def prepare_case(image: Any, label: Any | None, spacing: Sequence[float], *, modality: str | None = None,
                 ct_scale: tuple[float, float] | None = CT_SCALE):
    """Standardise one case like SAT does: (image [1,X,Y,Z] float32, label [X,Y,Z] int64 | None, record)."""
    from sat import io, preprocess

    vol = io.load(image, modality=modality)
    img, record = preprocess.standardize(vol, spacing=tuple(spacing), ct_scale=ct_scale)
    lab = None
    if label is not None:
        lab = preprocess.standardize_label(io.load_label(label), record).long()
        if tuple(lab.shape) != tuple(img.shape[1:]):
            raise InputError(f"label grid {tuple(lab.shape)} does not match image grid {tuple(img.shape[1:])}")
    return img.float(), lab, record


def _pad_to(img: torch.Tensor, lab: torch.Tensor, patch: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    pad = [max(p - s, 0) for s, p in zip(img.shape[1:], patch, strict=True)]
    if not any(pad):
        return img, lab
    spec = [v for a in reversed(pad) for v in (a // 2, a - a // 2)]
    img = torch.nn.functional.pad(img, spec, value=float(img.min()))
    lab = torch.nn.functional.pad(lab, spec, value=0)
    return img, lab


def _sample(img: torch.Tensor, lab: torch.Tensor, fg: np.ndarray, patch: Sequence[int], rng: np.random.Generator):
    """One random patch; with probability 1/3 centred on a foreground voxel of a random class."""
    shape = np.asarray(img.shape[1:])
    size = np.asarray(patch)
    if len(fg) and rng.random() < 1 / 3:
        centre = fg[rng.integers(len(fg))]
        start = np.clip(centre - size // 2, 0, shape - size)
    else:
        start = np.asarray([rng.integers(0, s - p + 1) for s, p in zip(shape, size, strict=True)])
    box = tuple(slice(int(a), int(a + p)) for a, p in zip(start, size, strict=True))
    return img[(slice(None), *box)], lab[box]


def _foreground_index(lab: torch.Tensor, rng: np.random.Generator, per_class: int = 200) -> np.ndarray:
    """Up to ``per_class`` voxel coordinates of every foreground class (class-balanced oversampling)."""
    arr = lab.numpy()
    points = []
    for value in np.unique(arr[arr > 0]):
        idx = np.argwhere(arr == value)
        points.append(idx[rng.choice(len(idx), size=min(per_class, len(idx)), replace=False)])
    return np.concatenate(points) if points else np.zeros((0, 3), int)


def _prepared(img: torch.Tensor, lab: torch.Tensor, plan: SpecialistPlan, rng: np.random.Generator):
    """Label values -> output channels, padding to the patch size, foreground index for sampling."""
    lut = torch.zeros(int(lab.max()) + 1, dtype=torch.long)
    for channel, value in plan.values.items():
        if value < len(lut):
            lut[value] = channel
    img, lab = _pad_to(img, lut[lab], plan.patch_size)
    return img, lab, _foreground_index(lab, rng)


def _ds_loss(loss_fn, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if out.dim() == target.dim() + 1:  # deep supervision: [B, S, C, X, Y, Z]
        weights = torch.tensor([0.5**i for i in range(out.shape[1])])
        weights = weights / weights.sum()
        return sum(w * loss_fn(out[:, i], target) for i, w in enumerate(weights))
    return loss_fn(out, target)


def _step(model, opt, loss_fn, prepared: list, patch: Sequence[int], rng: np.random.Generator, batch_size: int):
    """One optimisation step on a batch of random patches (intensity scale/shift augmentation)."""
    batch = [_sample(*prepared[rng.integers(len(prepared))], patch, rng) for _ in range(batch_size)]
    x = torch.stack([b[0] for b in batch])
    x = x * float(rng.uniform(0.9, 1.1)) + float(rng.uniform(-0.1, 0.1))
    y = torch.stack([b[1] for b in batch])[:, None]
    loss = _ds_loss(loss_fn, model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)
    opt.step()
    return loss.detach()


def _channel_table(labels: Sequence[torch.Tensor], names: Mapping[int, str]) -> tuple[dict[int, int], dict[int, str]]:
    present = sorted({int(v) for lab in labels for v in torch.unique(lab).tolist() if v > 0})
    unnamed = [v for v in present if v not in names]
    if unnamed:
        raise InputError(f"label values {unnamed} have no name; add them to the label mapping")
    values = {0: 0, **{i + 1: v for i, v in enumerate(present)}}
    return values, {0: "background", **{i + 1: names[v] for i, v in enumerate(present)}}


def train_specialist(
    cases: Sequence[tuple[Any, Any]],
    *,
    names: Mapping[int, str],
    minutes: float = 20.0,
    target: Sequence[float] | None = None,
    modality: str | None = None,
    max_patch_voxels: int = 64**3,
    batch_size: int = 2,
    lr: float = 1e-3,
    seed: int = 0,
    max_steps: int | None = None,
    checkpoint: Any = None,
    init: Any = None,
):  # -> (DynUNet, SpecialistPlan, list[dict])
    """Plan from the training cases' fingerprint and train a DynUNet for ``minutes`` of wall clock.

    Args:
        cases: (image, label) sources accepted by ``sat.io.load`` / ``load_label`` (paths, Volumes...).
        names: dataset label value -> name (every value present in the labels needs one).
        minutes: wall-clock budget; ``max_steps`` stops earlier (tests).
        target: target spacing in mm (default: the planner's choice from the fingerprint).
        checkpoint: directory to save to every 5 minutes and at the end (optional).
        init: directory of a saved specialist to continue (same labels; its plan is kept).
    Returns:
        (model in eval mode, plan with ``labels``/``values`` filled, history of {step, seconds, loss}).
    """
    from monai.losses import DiceCELoss

    from sat import io
    from sat.evaluation.specialist import load_specialist, save_specialist

    if not cases:
        raise InputError("train_specialist needs at least one (image, label) training case")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if init is not None:  # continue a saved specialist: its plan, label table and weights
        model, plan, _ = load_specialist(init)
    else:
        labels_raw = [io.load_label(lab) for _, lab in cases]
        plan = plan_specialist([lv.spacing for lv in labels_raw], [lv.shape for lv in labels_raw],
                               target=target, max_patch_voxels=max_patch_voxels)
    data = [prepare_case(img, lab, plan.spacing, modality=modality, ct_scale=plan.ct_scale) for img, lab in cases]
    values, labels = _channel_table([d[1] for d in data], names)
    if init is not None and values != plan.values:
        raise InputError(f"the training labels differ from those of {init}; train a new specialist instead")
    plan.values, plan.labels, plan.modality = values, labels, modality
    prepared = [_prepared(img, lab, plan, rng) for img, lab, _ in data]
    model = (model if init is not None else build_network(plan)).train()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=3e-5)
    budget, start, history, last_save, step = minutes * 60.0, time.monotonic(), [], time.monotonic(), 0
    log.info("specialist plan: spacing %s patch %s filters %s, %d classes", plan.spacing, plan.patch_size,
             plan.filters, len(plan.labels) - 1)
    while (elapsed := time.monotonic() - start) < budget and (max_steps is None or step < max_steps):
        for group in opt.param_groups:
            group["lr"] = lr * (1 - min(elapsed / budget, 0.99)) ** 0.9
        loss = _step(model, opt, loss_fn, prepared, plan.patch_size, rng, batch_size)
        step += 1
        history.append({"step": step, "seconds": round(elapsed, 1), "loss": float(loss.detach())})
        if step % 20 == 0:
            log.info("step %d  %.0fs  loss %.4f", step, elapsed, np.mean([h["loss"] for h in history[-20:]]))
        if checkpoint is not None and time.monotonic() - last_save > 300:
            save_specialist(model, plan, checkpoint, extra={"steps": step})
            last_save = time.monotonic()
    model.eval()
    if checkpoint is not None:
        save_specialist(model, plan, checkpoint, extra={"steps": step, "minutes": minutes, "seconds": time.monotonic() - start})
    return model, plan, history


@torch.no_grad()
def predict_specialist(model, plan: SpecialistPlan, image: Any, *, overlap: float = 0.5):
    """Label map of ``image`` on its ORIGINAL grid: (int16 ndarray [X, Y, Z], affine (4, 4)).

    Values are the dataset's label values (``plan.values``), sliding window with gaussian blending.
    """
    from monai.inferers import sliding_window_inference

    from sat import io, preprocess

    vol = io.load(image, modality=plan.modality)
    img, record = preprocess.standardize(vol, spacing=plan.spacing, ct_scale=plan.ct_scale)
    logits = sliding_window_inference(img[None].float(), roi_size=plan.patch_size, sw_batch_size=1,
                                      predictor=model.eval(), overlap=overlap, mode="gaussian")
    channels = logits[0].argmax(0)
    lut = torch.tensor([plan.values[c] for c in range(len(plan.values))], dtype=torch.int16)
    labelmap = preprocess.invert(lut[channels].numpy(), record, mode="nearest")
    return np.asarray(labelmap).astype(np.int16), np.asarray(vol.affine, dtype=np.float64)
