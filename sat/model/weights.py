"""Save and load SAT weights: ``model.safetensors`` + ``config.json`` (never pickled).

Example:
    >>> import tempfile
    >>> from sat.model import build_model, load_pretrained, save_pretrained
    >>> d = tempfile.mkdtemp()
    >>> _ = save_pretrained(build_model("sat-tiny"), d, extra={"concepts": ["liver"]})
    >>> model, config = load_pretrained(d)
    >>> config["concepts"], config["format_version"]
    (['liver'], 1)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sat._atomic import atomic_write
from sat.errors import ConfigError, WeightsError
from sat.model.config import ModelConfig
from sat.model.network import SATNet

__all__ = ["FORMAT_VERSION", "WEIGHTS_NAME", "CONFIG_NAME", "save_pretrained", "load_pretrained"]

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200]



def save_pretrained(model: SATNet, directory: str | os.PathLike, *, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (created; files atomic).

    Args:
        model: the network to save (its ``config`` is stored under the ``"model"`` key).
        directory: output folder.
        extra: more JSON-serialisable keys for config.json (e.g. ``text_encoder``, ``concepts``,
            ``intensity``); may not override ``format_version`` or ``model``.

    Returns:
        The directory as a Path.
    """
    extra = dict(extra or {})
    clash = {"format_version", "model"} & set(extra)
    if clash:
        raise ConfigError(f"extra keys {sorted(clash)} are reserved; rename them")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "pt", "sat_format_version": str(FORMAT_VERSION)}
    atomic_write(out / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata=meta))
    config = {"format_version": FORMAT_VERSION, "model": model.config.to_dict(), **extra}
    text = json.dumps(config, indent=2, sort_keys=False)
    atomic_write(out / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))
    return out


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``config.json`` of a saved model folder (raises :class:`WeightsError`)."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise WeightsError(f"no {CONFIG_NAME} in {directory}; point to a folder written by save_pretrained")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path} is not valid JSON ({_one_line(exc)}); re-download or re-save the model") from exc
    if not isinstance(config, dict) or "model" not in config:
        raise WeightsError(f"{path} has no 'model' section; re-save the model with save_pretrained")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise WeightsError(
            f"{path} has format_version {version!r}, this sat reads {FORMAT_VERSION}; upgrade sat or re-save the model"
        )
    return config


def load_pretrained(
    directory: str | os.PathLike, *, device: str | torch.device = "cpu"
) -> tuple[SATNet, dict[str, Any]]:
    """Load a model saved by :func:`save_pretrained`.

    Returns:
        (model in eval mode, the full config.json dict including extra keys).

    Raises:
        WeightsError: missing folder/files, corrupt safetensors, unknown format_version,
            or tensors that do not match the stored config.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise WeightsError(f"model folder {folder} does not exist; give a shipped model name or a saved folder")
    config = read_config(folder)
    try:
        model_config = ModelConfig.from_dict(config["model"])
    except (ConfigError, TypeError) as exc:
        raise WeightsError(f"{folder / CONFIG_NAME} has an invalid model section ({_one_line(exc)}); re-save the model") from exc
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise WeightsError(f"no {WEIGHTS_NAME} in {folder}; re-download or re-save the model")
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{weights} is corrupt or truncated ({_one_line(exc)}); re-download or re-save the model") from exc
    with torch.device(device):
        model = SATNet(model_config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(
            f"{weights} does not match its config.json ({_one_line(exc)}); re-save weights and config together"
        ) from exc
    return model.eval(), config
