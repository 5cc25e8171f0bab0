"""Second training stage: the prompt head (points and boxes) over a frozen SAT network.

Every training patch (from :class:`~sat.data.module.SATDataModule`) gives one structure in it
a simulated user, in one of four modes drawn with ``modes`` probabilities:

- ``correct``: the text prompt plus 1-5 corrective clicks at the largest errors of the frozen
  network's own mask (:func:`sat.data.clicks.click_sequence`); with ``iterative`` rounds, as
  VISTA3D trains its point branch, up to that many of the clicks are instead placed one at a time
  at the largest error of the head's own result given the clicks before (the head is run without
  gradients between clicks), so training sees the clicks a user gives after seeing the head's output;
- ``text_box``: the text prompt, a box from the reference jittered by up to ``jitter`` voxels,
  and 0-2 corrective clicks;
- ``box``: a jittered box alone (no text), plus 0-1 positive and 0-1 negative clicks;
- ``points``: 1-3 positive and 0-2 negative clicks, no text.

With ``p_errors``, a ``correct`` user first gets a confidently wrong automatic mask: a ball on the
reference's border (radius 3-8 voxels) is added to the network's logits outside the reference
(a leak) or cut from them inside it (a missed part), with logits of magnitude 2-8
(:func:`simulated_error`). The clicks then go to that error, so the head learns to follow a click
against an automatic mask that is sure of itself, as the leaks and misses of unseen people are.
With ``p_missed``, a ``correct`` user instead gets a structure the network missed outright: its
logits are a constant -6..-12 over the whole patch (:func:`simulated_miss`; no shape is left to
read from them), and every click starts from an empty mask, so the head learns to draw a
structure from clicks where the text found nothing.

No left-right flips (the augmentations of the data module keep sides). The loss is Dice + BCE
of the head's logits against the reference. Only the head is trained and saved.

Example:
    >>> from sat.training.prompted import PromptTraining
    >>> module = PromptTraining(base="sat-tiny")            # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from scipy import ndimage

from sat.data.clicks import click_sequence, error_click, random_clicks, reference_box
from sat.errors import ConfigError
from sat.model.prompt_head import PromptHead, guidance_maps, load_head, network_parts, save_head
from sat.model.widen import widen_head
from sat.training.module import with_schedule

__all__ = ["MODES", "PromptTraining", "simulate", "simulated_error", "simulated_miss"]

log = logging.getLogger(__name__)

MODES = {"correct": 0.4, "text_box": 0.15, "box": 0.25, "points": 0.2}


def simulate(mode: str, reference: np.ndarray, auto: np.ndarray, rng: np.random.Generator, *,
             jitter: int = 3) -> tuple[bool, list, tuple | None]:
    """(has_text, clicks, box) of one simulated user for a bool reference and the automatic mask."""
    if mode == "correct":
        return True, click_sequence(auto, reference, int(rng.integers(1, 6)), rng=rng, spread=0.5), None
    if mode == "text_box":
        clicks = click_sequence(auto, reference, int(rng.integers(0, 3)), rng=rng, spread=0.5)
        return True, clicks, reference_box(reference, rng=rng, jitter=jitter)
    if mode == "box":
        clicks = random_clicks(reference, rng, positive=int(rng.integers(0, 2)), negative=int(rng.integers(0, 2)))
        return False, clicks, reference_box(reference, rng=rng, jitter=jitter)
    if mode == "points":
        return False, random_clicks(reference, rng, positive=int(rng.integers(1, 4)),
                                    negative=int(rng.integers(0, 3))), None
    raise ConfigError(f"unknown prompt mode {mode!r}; use one of {sorted(MODES)}")


def simulated_error(logit: torch.Tensor, reference: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """``logit`` [X, Y, Z] with a confident error on the border of the bool ``reference`` [X, Y, Z]:
    a ball (radius 3-8 voxels) centred on a border voxel, set to +2..+8 outside the reference (a
    leak) or to -8..-2 inside it (a missed part). Unchanged when the reference is empty."""
    border = reference & ~ndimage.binary_erosion(reference)
    centres = np.argwhere(border)
    if not len(centres):
        return logit
    centre = centres[rng.integers(len(centres))]
    radius = float(rng.uniform(3.0, 8.0))
    grid = np.ogrid[tuple(slice(0, n) for n in reference.shape)]
    ball = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2
    leak = bool(rng.integers(2))
    region = ball & (~reference if leak else reference)
    out = logit.clone()
    value = float(rng.uniform(2.0, 8.0))
    out[torch.from_numpy(region).to(out.device)] = value if leak else -value
    return out


def simulated_miss(logit: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """``logit`` [X, Y, Z] of a structure the network missed outright: a constant -6..-12 everywhere."""
    return torch.full_like(logit, -float(rng.uniform(6.0, 12.0)))


class PromptTraining(L.LightningModule):
    """Train a :class:`~sat.model.prompt_head.PromptHead` over a frozen shipped SAT model.

    Args:
        base: shipped model name or folder whose network is frozen (its export gets the head).
        features: the head's BasicUNet widths.
        modes: probability of each simulated-user mode (see the module docstring).
        jitter: box jitter in voxels.
        lr, weight_decay, warmup_steps, min_lr_ratio: AdamW with warm-up and cosine decay.
        seed: the simulation's random generator is seeded from it and the global step.
        init_head: a saved head folder (:func:`~sat.model.prompt_head.save_head`) to continue from; a
            head of a narrower network is widened first (:func:`~sat.model.widen.widen_head`).
        iterative: at most this many clicks of ``correct`` users placed at the head's own errors.
        p_errors: probability that a ``correct`` user's automatic mask gets a simulated confident
            error (:func:`simulated_error`) first.
        p_missed: probability that a ``correct`` user's structure is instead missed outright by the
            network (:func:`simulated_miss`).
    """

    def __init__(self, base: str = "sat-tiny", *, features: tuple[int, ...] = (16, 16, 32, 64, 128, 16),
                 modes: Mapping[str, float] | None = None, jitter: int = 3, lr: float = 1e-3,
                 weight_decay: float = 1e-4, warmup_steps: int = 50, min_lr_ratio: float = 0.02,
                 seed: int = 0, init_head: str | None = None, iterative: int = 0, p_errors: float = 0.0,
                 p_missed: float = 0.0) -> None:
        super().__init__()
        from sat.api import model_dir
        from sat.model import load_pretrained

        self.save_hyperparameters()
        self.net, _ = load_pretrained(model_dir(base))
        self.net.requires_grad_(False)
        self.head = PromptHead.for_network(self.net.config, features=tuple(features))
        if init_head is not None:
            saved, _ = load_head(init_head)
            if saved.config.feature_widths != self.head.config.feature_widths:  # over a widened network
                saved = widen_head(saved, self.head.config.feature_widths)
            if saved.config != self.head.config:
                raise ConfigError(f"init_head {init_head!r} has another shape ({saved.config}); use its features")
            self.head.load_state_dict(saved.state_dict())
        weights = dict(modes or MODES)
        unknown = set(weights) - set(MODES)
        if unknown or not weights or min(weights.values()) < 0:
            raise ConfigError(f"modes must give non-negative weights to {sorted(MODES)}, got {weights}")
        total = sum(weights.values())
        self.modes = list(weights)
        self.p_modes = [w / total for w in weights.values()]
        self.dice = DiceLoss(sigmoid=True, reduction="mean", smooth_nr=1e-5, smooth_dr=1e-5)

    def on_fit_start(self) -> None:
        self.net.eval()  # frozen: instance norms have no running statistics, but stay explicit
        self.net.to(memory_format=torch.channels_last_3d)

    def _chosen(self, batch: dict, rng: np.random.Generator):
        """(rows, query index per row) of the patches with a structure present, one at random each."""
        present = batch["target"].flatten(2).any(-1) & batch["query_mask"].bool()
        rows, picks = [], []
        for i in range(present.shape[0]):
            idx = torch.nonzero(present[i]).flatten().tolist()
            if idx:
                rows.append(i)
                picks.append(int(rng.choice(idx)))
        return rows, picks

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        rng = np.random.default_rng(self.hparams.seed * 100_003 + self.global_step)
        rows, picks = self._chosen(batch, rng)
        if not rows:
            return None
        image = batch["image"][rows].contiguous(memory_format=torch.channels_last_3d)
        queries = batch["queries"][rows, picks][:, None]
        target = batch["target"][rows, picks][:, None].float()
        logit, feats = network_parts(self.net, image, queries)
        ref = target[:, 0].bool().cpu().numpy()
        users = []  # [has_text, clicks, box, clicks still to place at the head's own errors]
        for i in range(len(rows)):
            mode = str(rng.choice(self.modes, p=self.p_modes))
            if mode == "correct" and self.hparams.p_missed > 0 and rng.random() < self.hparams.p_missed:
                logit[i, 0] = simulated_miss(logit[i, 0], rng)
            elif mode == "correct" and self.hparams.p_errors > 0 and rng.random() < self.hparams.p_errors:
                logit[i, 0] = simulated_error(logit[i, 0], ref[i], rng)
            auto = (logit[i, 0] > 0).cpu().numpy()
            has_text, clicks, box = simulate(mode, ref[i], auto, rng, jitter=self.hparams.jitter)
            later = int(rng.integers(0, self.hparams.iterative + 1)) if mode == "correct" else 0
            later = max(0, min(later, len(clicks) - 1))
            users.append([has_text, clicks[:len(clicks) - later], box, later])
        flags = torch.tensor([u[0] for u in users], device=image.device)
        for _ in range(max(u[3] for u in users)):
            with torch.no_grad():
                pred = self.head(image, feats, logit, flags, self._guidance(users, ref.shape[1:]))[:, 0] > 0
            pred = pred.cpu().numpy()
            for i, user in enumerate(users):
                if user[3] > 0:
                    click = error_click(pred[i], ref[i], rng=rng, spread=0.5)
                    if click is None:  # nothing left to correct
                        user[3] = 0
                    else:
                        user[1].append(click)
                        user[3] -= 1
        out = self.head(image, feats, logit, flags, self._guidance(users, ref.shape[1:]))
        dice = self.dice(out, target)
        bce = F.binary_cross_entropy_with_logits(out, target)
        loss = dice + bce
        bs = len(rows)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log_dict({"train/dice": dice.detach(), "train/bce": bce.detach()}, batch_size=bs)
        return loss

    def _guidance(self, users: list, shape: tuple[int, ...]) -> torch.Tensor:
        """[B, 3, X, Y, Z] guidance maps of the simulated users' clicks and boxes."""
        sigma = self.head.config.click_sigma
        maps = [guidance_maps(shape, points=clicks, box=box, sigma=sigma) for _, clicks, box, _ in users]
        return torch.stack(maps).to(self.device)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.head.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        return with_schedule(self, opt)

    def export(self, directory: str, *, half: bool = True, extra: dict | None = None):
        """Write the head (:func:`sat.model.prompt_head.save_head`) for the base model; returns the folder."""
        return save_head(self.head, directory, half=half,
                         extra={"base": self.hparams.base, "modes": dict(zip(self.modes, self.p_modes, strict=True)),
                                **(extra or {})})
