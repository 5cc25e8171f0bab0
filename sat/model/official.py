"""Read the original SAT checkpoints (SAT-Nano, SAT-Pro) safely and map them onto SAT networks.

The authors publish each network as two pickled PyTorch files: the vision side (U-Net,
query decoder, mask head) and the text side (an MPNet "knowledge encoder"). Each holds
``{"step", "model_state_dict", ...}`` with DDP key names (``module.`` prefix); the vision file
also holds optimizer state with a numpy learning rate. This module

- unpickles them with ``torch.load(weights_only=True)`` and only the numpy scalar/dtype
  globals allow-listed (anything else is refused), and keeps only ``model_state_dict``;
- derives the network's configuration from the tensor shapes (SAT-Nano and SAT-Pro are
  recognised by their stage widths) and the text tower's MPNet configuration likewise;
- maps every tensor the SAT network needs from its original name, checking presence and
  shape: the first missing or mismatched tensor is named in a one-line :class:`WeightsError`.

The original first convolution reads the one-channel image repeated three times; summing its
weight over the input channels gives the equal one-channel convolution. Aliases
(``...convs.N.all_modules.*``), the unused ``norm1`` of each decoder layer and the
deep-supervision heads (``mid_mask_embed_proj.*``) are not needed and not read.

Example:
    >>> state = read_state_dict("nano.pth")                         # doctest: +SKIP
    >>> config = vision_config(state).preset                        # doctest: +SKIP
    'sat-official-nano'
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from sat.errors import WeightsError
from sat.model.config import PRESETS, ModelConfig
from sat.model.network import SATNet

log = logging.getLogger(__name__)

__all__ = ["read_state_dict", "vision_config", "vision_state", "text_config", "text_state", "official_key"]

PREFIX = "module."
_ENC = "backbone.encoder.stages.{s}.0.convs.{i}.conv.weight"
_DEC = "backbone.decoder.stages.{k}.convs.{i}.conv.weight"
FIRST_CONV = "backbone.encoder.0.0.conv.weight"
TEXT_TOWER = "text_tower.biolord."


def _numpy_globals() -> list:
    """numpy objects a pickled numpy scalar (the optimizer's learning rate) needs, under every name numpy used."""
    import numpy as np

    try:
        scalar = np._core.multiarray.scalar
    except AttributeError:  # numpy < 2
        scalar = np.core.multiarray.scalar
    allowed: list = [np.dtype, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return allowed


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160]


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The ``model_state_dict`` of an original SAT checkpoint, ``module.`` prefix removed, on CPU.

    Loaded with ``torch.load(weights_only=True)``: only tensors, containers and numpy scalars
    are rebuilt; a file that needs any other object is refused.

    Raises:
        WeightsError: missing, corrupt or unsafe file, or no ``model_state_dict`` of tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist; give the path of the downloaded .pth file")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            # memory-mapped when possible: the optimizer state (twice the weights) is never read
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = found.group(1) if found else "an object that is not a tensor"
        raise WeightsError(
            f"{path} needs {what} to be unpickled, which is not allowed (only tensors and numpy scalars); "
            "use the original checkpoint file"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{path} is corrupt or not a PyTorch checkpoint ({_short(exc)}); download it again") from exc
    state = data.get("model_state_dict") if isinstance(data, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} has no 'model_state_dict' of tensors; is it an original SAT checkpoint?")
    return {(k[len(PREFIX):] if k.startswith(PREFIX) else k): v for k, v in state.items()}


def _count(state: Mapping[str, torch.Tensor], template: str, **fixed: int) -> int:
    """How many consecutive indices ``n`` (from 0) make ``template.format(n=n, **fixed)`` a key of ``state``."""
    n = 0
    while template.format(n=n, **fixed) in state:
        n += 1
    return n


def _shape(state: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise WeightsError(f"the vision checkpoint has no tensor {PREFIX}{key}; is it an original SAT-Nano/Pro file?")
    return tuple(state[key].shape)


def vision_config(state: Mapping[str, torch.Tensor], *, patch_size=(288, 288, 96)) -> ModelConfig:
    """The :class:`ModelConfig` of an original vision state dict (from its shapes).

    ``preset`` is ``"sat-official-nano"`` or ``"sat-official-pro"`` when the stage widths are
    those of the released networks, ``"sat-official-custom"`` otherwise.
    """
    stages = _count(state, _ENC.replace("{s}", "{n}"), i=0)
    if stages < 2:
        raise WeightsError(f"the vision checkpoint has no U-Net encoder ({PREFIX}{_ENC.format(s=0, i=0)}); "
                           "is it the vision file (nano.pth / SAT_Pro.pth), not the text encoder?")
    widths = tuple(_shape(state, _ENC.format(s=s, i=0))[0] for s in range(stages))
    depths = tuple(_count(state, _ENC.replace("{i}", "{n}"), s=s) for s in range(stages))
    decoder = tuple(_count(state, _DEC.replace("{i}", "{n}"), k=k) for k in range(stages - 1))
    layers = _count(state, "transformer_decoder.layers.{n}.linear1.weight")
    token_hidden, _ = _shape(state, "projection_layer.0.weight")
    query_dim, _ = _shape(state, "projection_layer.2.weight")
    base = {"sat-official-nano": PRESETS["sat-official-nano"], "sat-official-pro": PRESETS["sat-official-pro"]}
    name = next((n for n, c in base.items() if c.widths == widths), "sat-official-custom")
    config = PRESETS["sat-official-nano"].replace(
        preset=name, widths=widths, depths=depths, decoder_depths=decoder[::-1], decoder_layers=layers,
        token_hidden=token_hidden, query_dim=query_dim, text_dim=query_dim,
        ffn_dim=_shape(state, "transformer_decoder.layers.0.linear1.weight")[0],
        mask_hidden=_shape(state, "mask_embed_proj.0.weight")[0], patch_size=tuple(patch_size),
    )
    log.info("recognised %s: widths %s, %s convs per stage", name, widths, depths[0])
    return config


# SAT parameter name -> original name (vision side); the decoder index runs finest-first here,
# coarsest-first in the original.
_VISION_RULES: list[tuple[str, Callable[[re.Match, int], str]]] = [
    (r"backbone\.encoder\.(\d+)\.(\d+)\.(conv|norm)\.(\w+)",
     lambda m, n: f"backbone.encoder.stages.{m[1]}.0.convs.{m[2]}.{m[3]}.{m[4]}"),
    (r"backbone\.decoder\.(\d+)\.up\.(\w+)", lambda m, n: f"backbone.decoder.transpconvs.{n - 1 - int(m[1])}.{m[2]}"),
    (r"backbone\.decoder\.(\d+)\.blocks\.(\d+)\.(conv|norm)\.(\w+)",
     lambda m, n: f"backbone.decoder.stages.{n - 1 - int(m[1])}.convs.{m[2]}.{m[3]}.{m[4]}"),
    (r"tokens\.proj\.(\d+)\.(\w+)", lambda m, n: f"projection_layer.{m[1]}.{m[2]}"),
    (r"query_decoder\.layers\.(\d+)\.cross_attn\.(.+)", lambda m, n: f"transformer_decoder.layers.{m[1]}.multihead_attn.{m[2]}"),
    (r"query_decoder\.layers\.(\d+)\.norm_cross\.(\w+)", lambda m, n: f"transformer_decoder.layers.{m[1]}.norm2.{m[2]}"),
    (r"query_decoder\.layers\.(\d+)\.norm_ffn\.(\w+)", lambda m, n: f"transformer_decoder.layers.{m[1]}.norm3.{m[2]}"),
    (r"query_decoder\.layers\.(\d+)\.ffn\.0\.(\w+)", lambda m, n: f"transformer_decoder.layers.{m[1]}.linear1.{m[2]}"),
    (r"query_decoder\.layers\.(\d+)\.ffn\.2\.(\w+)", lambda m, n: f"transformer_decoder.layers.{m[1]}.linear2.{m[2]}"),
    (r"query_decoder\.norm\.(\w+)", lambda m, n: f"transformer_decoder.norm.{m[1]}"),
    (r"mask_heads\.0\.(\d+)\.(\w+)", lambda m, n: f"mask_embed_proj.{m[1]}.{m[2]}"),
]
_TEXT_RULES: list[tuple[str, Callable[[re.Match, int], str]]] = [
    (r"bert\.(.+)", lambda m, n: f"{TEXT_TOWER}{m[1]}"),
    (r"projection\.(\d+)\.(\w+)", lambda m, n: f"projection_layer.{m[1]}.{m[2]}"),
    (r"modality_embed\.weight", lambda m, n: "modality_embed.weight"),
]


def official_key(key: str, *, levels: int = 6, text: bool = False) -> str:
    """The original checkpoint's name of SAT parameter ``key`` (``levels``: U-Net levels).

    Example:
        >>> official_key("backbone.decoder.0.up.weight")
        'backbone.decoder.transpconvs.4.weight'
    """
    for pattern, make in _TEXT_RULES if text else _VISION_RULES:
        m = re.fullmatch(pattern, key)
        if m:
            return make(m, levels - 1)
    raise WeightsError(f"internal: no original name for parameter {key!r}")


def _collect(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], what: str, *,
             levels: int = 6, text: bool = False,
             adapt: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None) -> dict[str, torch.Tensor]:
    """Every tensor of ``expected`` (a state dict) read from ``state`` by its original name, shape-checked."""
    out = {}
    for key, want in expected.items():
        source = official_key(key, levels=levels, text=text)
        if source not in state:
            raise WeightsError(f"the {what} checkpoint lacks {PREFIX}{source}; the file is incomplete or of another "
                               "network, download it again")
        value = state[source]
        if adapt and key in adapt:
            value = adapt[key](value)
        if tuple(value.shape) != tuple(want.shape):
            raise WeightsError(f"the {what} checkpoint's {PREFIX}{source} has shape {tuple(state[source].shape)}, "
                               f"expected one matching {tuple(want.shape)}; the file is of another network")
        if not value.is_floating_point():
            raise WeightsError(f"the {what} checkpoint's {PREFIX}{source} is not floating point; download it again")
        out[key] = value.detach().to(torch.float32).contiguous()
    return out


def _first_conv(weight: torch.Tensor) -> torch.Tensor:
    """The original reads the image repeated over 3 channels: the equal 1-channel conv sums them."""
    return weight.sum(dim=1, keepdim=True) if weight.ndim == 5 else weight


def vision_state(state: Mapping[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """The :class:`SATNet` state dict for ``config`` read from an original vision state dict."""
    with torch.device("meta"):
        expected = SATNet(config).state_dict()
    return _collect(expected, state, "vision", levels=config.levels, adapt={FIRST_CONV: _first_conv})


def text_config(state: Mapping[str, torch.Tensor]) -> dict:
    """The MPNet configuration (``transformers.MPNetConfig`` keyword arguments) of an original text state dict.

    Widths, layers, positions, vocabulary and relative-attention buckets/heads come from the
    shapes; the rest is BioLORD-2023-C's (an all-mpnet-base-v2 fine-tune): GELU, LayerNorm eps
    1e-5, padding id 1.
    """
    word = TEXT_TOWER + "embeddings.word_embeddings.weight"
    if word not in state:
        raise WeightsError(f"the text checkpoint has no {PREFIX}{word}; is it the text-encoder file "
                           "(nano_text_encoder.pth / text_encoder.pth), not the vision one?")
    vocab, hidden = state[word].shape
    layer = TEXT_TOWER + "encoder.layer.{n}.attention.attn.q.weight"
    buckets_key = TEXT_TOWER + "encoder.relative_attention_bias.weight"
    for key in (buckets_key, TEXT_TOWER + "embeddings.position_embeddings.weight",
                TEXT_TOWER + "encoder.layer.0.intermediate.dense.weight"):
        if key not in state:
            raise WeightsError(f"the text checkpoint lacks {PREFIX}{key}; download it again")
    buckets, heads = state[buckets_key].shape
    return {
        "vocab_size": int(vocab), "hidden_size": int(hidden), "num_hidden_layers": _count(state, layer),
        "num_attention_heads": int(heads), "intermediate_size": int(state[TEXT_TOWER + "encoder.layer.0.intermediate.dense.weight"].shape[0]),
        "max_position_embeddings": int(state[TEXT_TOWER + "embeddings.position_embeddings.weight"].shape[0]),
        "relative_attention_num_buckets": int(buckets), "hidden_act": "gelu", "layer_norm_eps": 1e-5,
        "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
    }


def text_state(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The text encoder's state dict (``expected``: its ``state_dict()``) read from an original text state dict."""
    return _collect(expected, state, "text", text=True)
