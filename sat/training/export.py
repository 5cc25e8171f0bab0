"""Export trained networks as shipped models (``model.safetensors`` + ``config.json``).

Weights may be stored in float16 (``half=True``) to halve the file; loading converts them
back to the float32 parameters (``load_state_dict`` copies with a dtype cast).

Example:
    >>> import tempfile
    >>> from sat.model import build_model, load_pretrained
    >>> from sat.training.export import export_model
    >>> d = export_model(build_model("sat-tiny"), tempfile.mkdtemp(), concepts=["liver"], text_encoder="default")
    >>> net, config = load_pretrained(d)
    >>> config["concepts"], config["weights_dtype"], next(net.parameters()).dtype
    (['liver'], 'float16', torch.float32)
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sat.errors import WeightsError
from sat.preprocess import CT_SCALE, CT_WINDOW

__all__ = ["export_model", "export_trained", "export_checkpoint", "DEFAULT_INTENSITY", "intensity_for"]


def intensity_for(ct_window: Sequence[float] | None) -> dict[str, Any]:
    """How images were standardized for training, with the CT clip range used (None: :data:`CT_WINDOW`)."""
    lo, hi = (float(v) for v in (ct_window or CT_WINDOW))
    other = "clip 0.5-99.5 percentiles of non-zero voxels, z-score"
    ct = {"clip": [lo, hi], "mean": CT_SCALE[0], "std": CT_SCALE[1],
          "text": f"clip [{lo:g}, {hi:g}] HU, then (HU - {CT_SCALE[0]:g}) / {CT_SCALE[1]:g}"}
    return {"ct": ct, "mr": other, "pet": other}


# sat.preprocess.standardize defaults; inference reads the CT entry back (ct_scale_of, ct_window_of).
DEFAULT_INTENSITY: dict[str, Any] = intensity_for(None)


def export_model(
    net: nn.Module,
    directory: str | os.PathLike,
    *,
    concepts: Sequence[str],
    text_encoder: str,
    intensity: dict[str, Any] | None = None,
    half: bool = True,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``net`` with :func:`sat.model.save_pretrained` plus the keys inference needs.

    Args:
        net: trained SATNet (not modified; a copy is cast).
        directory: output folder (created; files written atomically).
        concepts: concept ids the model was trained to segment.
        text_encoder: the encoder the query embeddings came from ("default", "base" or a folder);
            inference must use the same one.
        intensity: standardization description (default :data:`DEFAULT_INTENSITY`).
        half: store float16 weights.
        extra: more JSON keys (e.g. ``{"training": {...}}``).
    """
    from sat.model import save_pretrained

    model = copy.deepcopy(net).cpu().eval()
    if half:
        model = model.half()
    keys = {
        "text_encoder": str(text_encoder),
        "concepts": sorted(concepts),
        "intensity": intensity or DEFAULT_INTENSITY,
        "weights_dtype": "float16" if half else "float32",
        **(extra or {}),
    }
    return save_pretrained(model, directory, extra=keys)


def export_trained(
    net: nn.Module, directory: str | os.PathLike, datamodule: Any, *, half: bool = True,
    extra: dict[str, Any] | None = None,
) -> Path:
    """:func:`export_model` for a network trained on ``datamodule`` (a set-up :class:`sat.data.module.SATDataModule`).

    Its concepts and text encoder go into ``config.json``, with the connected-component rule learnt
    from its training cases (:func:`sat.postprocess.postprocess_config`).
    """
    from sat.postprocess import postprocess_config

    rule = postprocess_config(datamodule.train_cases, datamodule.concepts, window=net.config.patch_size[2])
    return export_model(net, directory, concepts=datamodule.concepts, text_encoder=datamodule.hparams.text_encoder,
                        intensity=intensity_for(datamodule.hparams.get("ct_window")), half=half,
                        extra={**(extra or {}), "postprocess": rule})


def export_checkpoint(
    checkpoint: str | os.PathLike,
    directory: str | os.PathLike,
    *,
    concepts: Sequence[str],
    text_encoder: str,
    half: bool = True,
    extra: dict[str, Any] | None = None,
    last_step: bool = False,
) -> Path:
    """Export the network of a Lightning checkpoint written by :class:`SATSegmentation`.

    With a weight-averaging callback in the recipe (e.g. ``EMAWeightAveraging``) the checkpoint's
    ``state_dict`` holds the average; ``last_step=True`` exports the weights of the last
    optimizer step instead (``current_model_state``).
    """
    from sat.model import build_model

    path = Path(checkpoint)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist; give a .ckpt written by `sat train seg`")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    net_config = ckpt.get("hyper_parameters", {}).get("net_config")
    if not net_config:
        raise WeightsError(f"{path} stores no net_config; it was not written by SATSegmentation")
    net = build_model(net_config)
    key = "state_dict"
    if last_step:
        key = "current_model_state"
        if key not in ckpt:
            raise WeightsError(f"{path} holds no separate last-step weights; its run averaged no weights")
    state = {k[len("net."):]: v for k, v in ckpt[key].items() if k.startswith("net.")}
    net.load_state_dict(state)
    return export_model(net, directory, concepts=concepts, text_encoder=text_encoder, half=half, extra=extra)
