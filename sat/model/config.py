"""Model configuration and the registry of presets.

A :class:`ModelConfig` fully describes a :class:`~sat.model.network.SATNet`; it
round-trips through JSON (``to_dict`` / ``from_dict``) and is stored in every
``config.json`` written by :func:`sat.model.save_pretrained`.

Example:
    >>> from sat.model.config import PRESETS, get_config
    >>> cfg = get_config("sat-tiny")
    >>> cfg.spacing
    (3.0, 3.0, 3.0)
    >>> get_config(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sat.errors import ConfigError

__all__ = ["ModelConfig", "PRESETS", "get_config"]

_TUPLE_FIELDS = ("widths", "depths", "decoder_depths", "spacing", "patch_size")


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a SAT network.

    Attributes:
        preset: name of the preset this config came from (free text for custom configs).
        widths: channels of each U-Net level, finest first; level ``i`` has stride ``2**i``.
        depths: conv-norm-act blocks per encoder level.
        decoder_depths: conv-norm-act blocks per decoder level (finest first, one fewer than widths).
        in_channels: image channels (1: one intensity-normalised volume).
        text_dim: dimension of the text-encoder embeddings given as queries (384: all-MiniLM-L6-v2).
        query_dim: width of the query decoder (visual tokens and queries).
        decoder_layers: transformer query-decoder layers.
        heads: attention heads.
        ffn_dim: hidden width of the decoder feed-forward blocks.
        token_levels: how many of the coarsest encoder levels are pooled into visual tokens.
        query_self_attention: queries also attend to each other (makes a prompt's mask depend on the
            other prompts of the call; off by default so every prompt is segmented independently).
        mask_hidden: hidden width of the MLP mapping a decoded query to a per-voxel embedding.
        deep_supervision: number of coarser decoder levels with an auxiliary logit map (0: none).
        spacing: model-space voxel spacing in mm (images are resampled to it before inference).
        patch_size: sliding-window size in voxels (each axis divisible by ``2**(len(widths)-1)``).
        negative_slope: LeakyReLU slope.
        token_hidden: hidden width of the visual-token projection (0: ``query_dim``).
        token_norm: LayerNorm on the projected visual tokens.
        head_activation: GELU after the last linear layer of the token projection and of the
            mask heads (as the original SAT networks).
        ffn_activation: ``"gelu"`` or ``"relu"`` in the query-decoder feed-forward blocks.
        presence_head: predict whether each query is present in a window (False: every query
            counts as present, presence gating never vetoes).
        query_projection: project text embeddings to ``query_dim`` with an MLP (False: used as
            they are; needs ``text_dim == query_dim``).
        upsample_bias: bias on the decoder's transposed convolutions.
    """

    preset: str = "custom"
    widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    depths: tuple[int, ...] = (1, 2, 2, 2, 2)
    decoder_depths: tuple[int, ...] = (1, 1, 2, 2)
    in_channels: int = 1
    text_dim: int = 384
    query_dim: int = 256
    decoder_layers: int = 2
    heads: int = 8
    ffn_dim: int = 512
    token_levels: int = 3
    query_self_attention: bool = False
    mask_hidden: int = 128
    deep_supervision: int = 2
    spacing: tuple[float, ...] = (3.0, 3.0, 3.0)
    patch_size: tuple[int, ...] = (96, 96, 96)
    negative_slope: float = 0.01
    token_hidden: int = 0
    token_norm: bool = True
    head_activation: bool = False
    ffn_activation: str = "gelu"
    presence_head: bool = True
    query_projection: bool = True
    upsample_bias: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in _TUPLE_FIELDS:
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self.validate()

    @property
    def levels(self) -> int:
        """Number of U-Net levels."""
        return len(self.widths)

    @property
    def divisor(self) -> int:
        """Every spatial size fed to the network must be a multiple of this."""
        return 2 ** (self.levels - 1)

    def validate(self) -> None:
        """Raise :class:`ConfigError` when the fields are inconsistent."""
        n = len(self.widths)
        problems = []
        if n < 2:
            problems.append("widths needs at least 2 levels")
        if len(self.depths) != n:
            problems.append(f"depths has {len(self.depths)} entries, widths {n}")
        if len(self.decoder_depths) != n - 1:
            problems.append(f"decoder_depths needs {n - 1} entries, got {len(self.decoder_depths)}")
        if any(d < 1 for d in (*self.depths, *self.decoder_depths)):
            problems.append("every depth must be >= 1")
        if self.query_dim % self.heads:
            problems.append(f"query_dim {self.query_dim} is not divisible by heads {self.heads}")
        if not 1 <= self.token_levels <= n:
            problems.append(f"token_levels must be in 1..{n}")
        if not 0 <= self.deep_supervision <= n - 2:
            problems.append(f"deep_supervision must be in 0..{n - 2}")
        if self.ffn_activation not in ("gelu", "relu"):
            problems.append(f"ffn_activation must be 'gelu' or 'relu', got {self.ffn_activation!r}")
        if not self.query_projection and self.text_dim != self.query_dim:
            problems.append(f"query_projection=False needs text_dim == query_dim ({self.text_dim} != {self.query_dim})")
        if len(self.spacing) != 3 or len(self.patch_size) != 3:
            problems.append("spacing and patch_size need 3 values")
        elif any(p % self.divisor for p in self.patch_size):
            problems.append(f"patch_size {self.patch_size} must be divisible by {self.divisor}")
        if problems:
            raise ConfigError(
                f"invalid model config {self.preset!r}: {'; '.join(problems)}; fix these fields"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        for name in _TUPLE_FIELDS:
            out[name] = list(out[name])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown model config keys {unknown}; remove them or upgrade sat"
            )
        return cls(**data)

    def replace(self, **changes: Any) -> ModelConfig:
        """Copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


# Config fields that do not shape the weights: fine-tuning may change them (e.g. a larger patch,
# or a finer grid for zoom-in weights).
WEIGHT_FREE = frozenset({"patch_size", "spacing"})

PRESETS: dict[str, ModelConfig] = {
    # ~5.9M parameters: the shipped model; trains on a 2-core CPU (3 mm model spacing, 64x64x32 windows).
    # Widened with sat.model.widen: the two deepest levels from 64 and 128 channels in run 20, the
    # three shallowest from 8, 16 and 32 in run 22.
    "sat-tiny": ModelConfig(
        preset="sat-tiny",
        widths=(16, 32, 64, 192, 384),
        depths=(1, 1, 1, 1, 1),
        decoder_depths=(1, 1, 1, 1),
        query_dim=128,
        decoder_layers=2,
        heads=4,
        ffn_dim=256,
        token_levels=3,
        mask_hidden=64,
        deep_supervision=2,
        spacing=(3.0, 3.0, 3.0),
        patch_size=(64, 64, 32),
    ),
    # ~110M parameters: the SAT-Nano scale (6-level plain U-Net, 6 query-decoder layers). The
    # full-resolution level has 32 channels (as nnU-Net's 3d_fullres plans), not 64: parameters
    # live in the deep levels (110.5M vs 111.0M), while a 288x288x96 window needs 2.5x fewer
    # FLOPs (3.7 vs 9.2 TFLOP) and half the activation memory.
    "sat-nano": ModelConfig(
        preset="sat-nano",
        widths=(32, 64, 128, 256, 512, 768),
        depths=(2, 2, 2, 2, 2, 2),
        decoder_depths=(2, 2, 2, 2, 2),
        query_dim=768,
        decoder_layers=6,
        heads=8,
        ffn_dim=2048,
        token_levels=6,
        mask_hidden=256,
        deep_supervision=3,
        spacing=(1.0, 1.0, 3.0),
        patch_size=(288, 288, 96),
    ),
    # ~450M parameters: the SAT-Pro scale (wider, 3 convs per level).
    "sat-pro": ModelConfig(
        preset="sat-pro",
        widths=(128, 128, 256, 512, 1024, 1536),
        depths=(3, 3, 3, 3, 3, 3),
        decoder_depths=(3, 3, 3, 3, 3),
        query_dim=768,
        decoder_layers=6,
        heads=8,
        ffn_dim=2048,
        token_levels=6,
        mask_hidden=384,
        deep_supervision=3,
        spacing=(1.0, 1.0, 3.0),
        patch_size=(288, 288, 96),
    ),
}

# The original SAT networks (GitHub zhaoziheng/SAT, Maskformer with the 'UNET' / 'UNET-L' backbone) as
# configurations of SATNet; `sat import-official` maps their released weights onto these.
_OFFICIAL = dict(
    query_dim=768, text_dim=768, decoder_layers=6, heads=8, ffn_dim=2048, token_levels=6, deep_supervision=0,
    spacing=(1.0, 1.0, 3.0), patch_size=(288, 288, 96), token_norm=False, head_activation=True,
    ffn_activation="relu", presence_head=False, query_projection=False, upsample_bias=True,
)
PRESETS["sat-official-nano"] = ModelConfig(
    preset="sat-official-nano", widths=(64, 64, 128, 256, 512, 768), depths=(2,) * 6, decoder_depths=(2,) * 5,
    token_hidden=768, mask_hidden=256, **_OFFICIAL,
)
PRESETS["sat-official-pro"] = ModelConfig(
    preset="sat-official-pro", widths=(128, 128, 256, 512, 1024, 1536), depths=(3,) * 6, decoder_depths=(3,) * 5,
    token_hidden=1536, mask_hidden=384, **_OFFICIAL,
)


def get_config(spec: str | dict[str, Any] | ModelConfig) -> ModelConfig:
    """Return a config from a preset name, a dict (``to_dict`` output) or a config.

    Raises:
        ConfigError: unknown preset name.
    """
    if isinstance(spec, ModelConfig):
        return spec
    if isinstance(spec, dict):
        return ModelConfig.from_dict(spec)
    if spec in PRESETS:
        return PRESETS[spec]
    raise ConfigError(f"unknown model preset {spec!r}; choose one of {sorted(PRESETS)}")
