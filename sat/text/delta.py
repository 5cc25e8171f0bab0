"""Ship the text encoder small: only what differs from the PyPI base.

A delta directory holds ``delta.safetensors`` (the tuned top transformer
layer(s), projection, modality and side vectors, stored as float16) and ``config.json``
(``format_version``, base name, base fingerprint, encoder settings, training
facts). Loading = base from its package + the delta.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from sat._atomic import atomic_write
from sat.errors import WeightsError
from sat.text.encoder import TextEncoder

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
KIND = "sat-text-delta"
WEIGHTS = "delta.safetensors"
CONFIG = "config.json"
MAX_DELTA_BYTES = 10 * 1024 * 1024
_SETTINGS = ("tuned_layers", "dim", "max_length", "laterality_feature", "modality_scale", "side_scale")


def resource_dir(name: str) -> Path:
    """Directory of a shipped text encoder delta: ``sat/resources/text/<name>``."""
    return Path(__file__).resolve().parents[1] / "resources" / "text" / name


def is_delta_dir(path: Path) -> bool:
    """True when ``path`` holds a config.json that declares a SAT text delta."""
    config = Path(path) / CONFIG
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("kind") == KIND
    except (ValueError, AttributeError):
        return Path(path, WEIGHTS).is_file()  # a delta with a corrupt config: let load_delta say so



def save_delta(encoder: TextEncoder, directory: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """Write the encoder's delta (safetensors + config.json) into ``directory``; returns it.

    Raises WeightsError when the delta would exceed 10 MB.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = encoder.state_dict()
    # float16 on disk (loading casts back to the float32 parameters): two tuned layers fit in 10 MB
    tensors = {k: state[k].detach().cpu().to(torch.float16).contiguous() for k in encoder.delta_keys()}
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    if size > MAX_DELTA_BYTES:
        raise WeightsError(f"text delta is {size / 2**20:.1f} MB > 10 MB; tune fewer layers (tuned_layers)")
    config = {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "base": encoder.base,
        "base_fingerprint": encoder.base_fingerprint(),
        **{key: getattr(encoder, key) for key in _SETTINGS},
        **(extra or {}),
    }
    atomic_write(directory / WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    atomic_write(directory / CONFIG, lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2) + "\n"))
    logger.info("saved text delta (%.1f MB) to %s", size / 2**20, directory)
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    """The delta's config.json as a dict (WeightsError when missing, corrupt or of another format)."""
    path = Path(directory) / CONFIG
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise WeightsError(f"text delta config missing: {path}; re-export the delta") from err
    except ValueError as err:
        raise WeightsError(f"text delta config {path} is not valid JSON; re-export the delta") from err
    if not isinstance(config, dict) or config.get("kind") != KIND:
        raise WeightsError(f"{path} is not a SAT text delta config; re-export the delta")
    if config.get("format_version") != FORMAT_VERSION:
        raise WeightsError(
            f"text delta format_version {config.get('format_version')!r} is not supported "
            f"(expected {FORMAT_VERSION}); upgrade sat or re-export the delta"
        )
    return config


def load_delta(directory: str | Path) -> TextEncoder:
    """Base model from its package (or path) + the delta in ``directory`` -> TextEncoder (eval mode)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    config = read_config(directory)
    try:
        tensors = load_file(directory / WEIGHTS)
    except FileNotFoundError as err:
        raise WeightsError(f"text delta weights missing: {directory / WEIGHTS}; re-export the delta") from err
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise WeightsError(f"text delta weights {directory / WEIGHTS} are corrupt; re-export the delta") from err
    try:
        settings = {key: config[key] for key in _SETTINGS}
        base = config["base"]
    except KeyError as err:
        raise WeightsError(f"text delta config {directory / CONFIG} lacks {err}; re-export the delta") from err
    encoder = TextEncoder(base, **settings)
    if encoder.base_fingerprint() != config.get("base_fingerprint"):
        raise WeightsError(f"text delta in {directory} was trained on another base model than {base}")
    expected = set(encoder.delta_keys())
    if set(tensors) != expected:
        missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise WeightsError(f"text delta {directory} does not match its config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    try:
        encoder.load_state_dict(tensors, strict=False)
    except RuntimeError as err:
        raise WeightsError(f"text delta {directory} has tensors of the wrong shape; re-export the delta") from err
    encoder.metadata = {k: v for k, v in config.items() if k not in _SETTINGS}
    return encoder.eval()


def delta_size(directory: str | Path) -> int:
    """Bytes on disk of a delta directory."""
    return sum(p.stat().st_size for p in Path(directory).iterdir() if p.is_file())


def state_to_encoder(encoder: TextEncoder, state: dict[str, torch.Tensor]) -> TextEncoder:
    """Copy delta tensors (e.g. from a training checkpoint) into ``encoder``; extra keys are ignored."""
    keys = set(encoder.delta_keys())
    wanted = {k: v for k, v in state.items() if k in keys}
    if set(wanted) != keys:
        raise WeightsError(f"checkpoint lacks {sorted(keys - set(wanted))[:3]} of the text delta")
    encoder.load_state_dict(wanted, strict=False)
    return encoder
