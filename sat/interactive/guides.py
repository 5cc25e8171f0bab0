"""Points and boxes beside text: where they go in model space and what they change.

A *guide* is the spatial part of one prompt: clicks ``(x, y, z, label)`` (label 1: the structure
is here, 0: it is not) and at most one box ``(x0, y0, z0, x1, y1, z1)``, given in world
millimetres (RAS, the default) or input voxel indices (``space="voxel"``). They are mapped into
the model's voxel grid with the preprocessing record, and only the windows around them are run
through the network and its prompt head (:mod:`sat.model.prompt_head`):

- the *region* of a guide is a window-sized cube centred on each click, and the box with a
  margin (at least one window around its centre);
- inside the region the head's logits are computed (windows blended by MONAI's gaussian sliding
  window); what they change is decided by :mod:`sat.interactive.merge`.

Example:
    >>> import numpy as np
    >>> from sat import io, preprocess
    >>> vol = io.load((np.zeros((40, 40, 40)), np.eye(4)), modality="ct")
    >>> _, record = preprocess.standardize(vol, spacing=2.0)
    >>> guide = Guide.parse(record, points=[(20.0, 20.0, 20.0, 1)], box=None, space="world")
    >>> guide.clicks
    [(10.0, 10.0, 10.0, 1)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sat.errors import InputError

__all__ = ["BOX_MARGIN", "Guide", "guides_for", "prompted_logits", "region_of"]

SPACES = ("world", "voxel")
BOX_MARGIN = 3  # model voxels around a box where the head may still add or remove voxels


def _as_points(points: Any) -> list[tuple[float, float, float, int]]:
    out = []
    for p in points:
        values = list(p) if isinstance(p, (list, tuple, np.ndarray)) else None
        if values is None or len(values) not in (3, 4):
            raise InputError(f"a point is (x, y, z) or (x, y, z, label) with label 1 (inside) or 0 (outside), got {p!r}")
        label = 1 if len(values) == 3 else values[3]
        if label not in (0, 1, True, False):
            raise InputError(f"point {p!r}: its label must be 1 (inside) or 0 (outside), got {label!r}")
        coords = [float(v) for v in values[:3]]
        if not all(np.isfinite(coords)):
            raise InputError(f"point {p!r} has a NaN or infinite coordinate; give finite numbers")
        out.append((*coords, int(label)))
    return out


def _to_model(coords: np.ndarray, record, space: str) -> tuple[np.ndarray, np.ndarray]:
    """(model voxel coordinates [n, 3], input voxel coordinates [n, 3]) of world or voxel coordinates."""
    coords = np.asarray(coords, np.float64).reshape(-1, 3)
    original = np.asarray(record.original_affine, np.float64)
    if space == "voxel":
        ijk = coords
        world = coords @ original[:3, :3].T + original[:3, 3]
    else:
        world = coords
        ijk = (world - original[:3, 3]) @ np.linalg.inv(original[:3, :3]).T
    model = np.asarray(record.model_affine, np.float64)
    return (world - model[:3, 3]) @ np.linalg.inv(model[:3, :3]).T, ijk


def _inside(ijk: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    return np.all((ijk >= -0.5) & (ijk <= np.asarray(shape) - 0.5), axis=1)


def _extent_text(record) -> str:
    original = np.asarray(record.original_affine, np.float64)
    n = np.asarray(record.original_shape, np.float64)
    corners = np.array([[a, b, c] for a in (0, n[0] - 1) for b in (0, n[1] - 1) for c in (0, n[2] - 1)])
    world = corners @ original[:3, :3].T + original[:3, 3]
    lo, hi = world.min(0), world.max(0)
    return ", ".join(f"{ax} {a:.1f} to {b:.1f}" for ax, a, b in zip("xyz", lo, hi, strict=True))


@dataclass
class Guide:
    """Clicks and a box of one prompt, in model voxel coordinates (floats; box bounds inclusive ints)."""

    clicks: list[tuple[float, float, float, int]] = field(default_factory=list)
    box: tuple[int, int, int, int, int, int] | None = None

    @property
    def positives(self) -> list[tuple[float, float, float, int]]:
        return [c for c in self.clicks if c[3]]

    @classmethod
    def parse(cls, record, *, points: Any = None, box: Any = None, space: str = "world") -> Guide:
        """Check and map user points and box (world mm or input voxels) into model voxels.

        Raises:
            InputError: unknown ``space``, a malformed point or box, a point outside the image,
                a box with no extent or outside the image.
        """
        if space not in SPACES:
            raise InputError(f"space must be 'world' (RAS millimetres) or 'voxel' (input indices), got {space!r}")
        unit = "mm" if space == "world" else "voxel"
        guide = cls()
        pts = _as_points(points or [])
        if pts:
            model, ijk = _to_model(np.array([p[:3] for p in pts]), record, space)
            outside = ~_inside(ijk, record.original_shape)
            if outside.any():
                p = pts[int(np.argmax(outside))]
                raise InputError(f"point ({p[0]:g}, {p[1]:g}, {p[2]:g}) {unit} lies outside the image (world extent: "
                                 f"{_extent_text(record)} mm); give points inside the volume")
            guide.clicks = [(*(round(float(v), 3) for v in m), p[3]) for m, p in zip(model, pts, strict=True)]
        if box is not None:
            guide.box = _parse_box(box, record, space, unit)
        return guide

    def merged(self, clicks: Sequence[tuple[float, float, float, int]]) -> Guide:
        """A copy with more clicks."""
        return Guide(clicks=[*self.clicks, *clicks], box=self.box)


def _parse_box(box: Any, record, space: str, unit: str) -> tuple[int, int, int, int, int, int]:
    values = list(box) if isinstance(box, (list, tuple, np.ndarray)) else []
    if len(values) != 6 or not all(np.isfinite(np.asarray(values, dtype=np.float64))):
        raise InputError(f"a box is (x0, y0, z0, x1, y1, z1), six finite numbers, got {box!r}")
    lo, hi = np.asarray(values[:3], np.float64), np.asarray(values[3:], np.float64)
    flat = [ax for ax, a, b in zip("xyz", lo, hi, strict=True) if a == b]
    if flat:
        raise InputError(f"box {tuple(values)} has no extent along {', '.join(flat)}; give two opposite corners")
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    model, ijk = _to_model(corners, record, space)
    shape = np.asarray(record.original_shape)
    if np.any(ijk.max(0) < -0.5) or np.any(ijk.min(0) > shape - 0.5):
        raise InputError(f"box {tuple(values)} {unit} does not overlap the image (world extent: "
                         f"{_extent_text(record)} mm); give a box around the structure")
    n = np.asarray(record.model_shape)
    a = np.clip(np.floor(model.min(0) + 0.5), 0, n - 1).astype(int)
    b = np.clip(np.floor(model.max(0) + 0.5), 0, n - 1).astype(int)
    return (*(int(v) for v in a), *(int(v) for v in b))  # type: ignore[return-value]


def guides_for(prompts: Sequence[str], record, *, points: Any, box: Any, space: str) -> dict[str, Guide]:
    """Guides of the prompts that have points or a box (a list/tuple applies to the only prompt;
    a mapping gives each prompt its own)."""

    def per_prompt(value: Any, what: str) -> dict[str, Any]:
        if value is None:
            return {}
        if isinstance(value, Mapping):
            unknown = [k for k in value if k not in prompts]
            if unknown:
                raise InputError(f"{what} given for {unknown}, which are not among the prompts {list(prompts)}")
            return dict(value)
        if len(prompts) != 1:
            raise InputError(f"{len(prompts)} prompts but one {what} list; give a dict prompt -> {what}")
        return {prompts[0]: value}

    pts, boxes = per_prompt(points, "points"), per_prompt(box, "box")
    return {p: Guide.parse(record, points=pts.get(p), box=boxes.get(p), space=space)
            for p in prompts if p in pts or p in boxes}


def region_of(guide: Guide, shape: Sequence[int], patch: Sequence[int], *, clicks: Sequence | None = None
              ) -> tuple[slice, slice, slice] | None:
    """Model-space region whose windows a guide changes: a window-sized cube around each click (only
    ``clicks`` when given, e.g. the new clicks of a refinement) and the box with a margin,
    at least a window around its centre. None when there is nothing to run."""
    boxes = []
    half = np.asarray(patch) // 2
    for c in (guide.clicks if clicks is None else clicks):
        centre = np.floor(np.asarray(c[:3]) + 0.5).astype(int)
        boxes.append((centre - half, centre - half + np.asarray(patch)))
    if guide.box is not None and clicks is None:
        lo, hi = np.asarray(guide.box[:3]) - BOX_MARGIN, np.asarray(guide.box[3:]) + 1 + BOX_MARGIN
        centre = (lo + hi) // 2
        boxes.append((np.minimum(lo, centre - half), np.maximum(hi, centre - half + np.asarray(patch))))
    if not boxes:
        return None
    n = np.asarray(shape)
    lo = np.clip(np.min([b[0] for b in boxes], axis=0), 0, n)
    hi = np.clip(np.max([b[1] for b in boxes], axis=0), 0, n)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))  # type: ignore[return-value]


def prompted_logits(net, head, image: torch.Tensor, query: torch.Tensor | None, guide: Guide,
                    region: tuple[slice, ...], *, overlap: float = 0.25, also_alone: bool = False) -> torch.Tensor:
    """Head logits ``[*region shape]`` of one prompt over a model-space region (gaussian-blended
    windows); ``[2, *region shape]`` with ``also_alone``: the head's answer without the text as well.

    Args:
        net, head: the frozen SATNet and its prompt head.
        image: [X, Y, Z] standardized model-space image.
        query: [D] text embedding, or None for a prompt without text.
        guide: the prompt's clicks and box (model voxels).
        region: model-space slices (from :func:`region_of`).
    """
    from monai.inferers import sliding_window_inference

    from sat.model.inference import _pad_to
    from sat.model.prompt_head import guidance_maps, prompted_forward

    crop = image[region].float()
    offset = [s.start for s in region]
    maps = guidance_maps(crop.shape, points=guide.clicks, box=guide.box, sigma=head.config.click_sigma, offset=offset)
    patch = tuple(net.config.patch_size)
    padded, back = _pad_to(crop[None, None], patch)  # the image padded with its background value
    if padded.shape[2:] != crop.shape:  # the guidance with zeros, by the same amounts
        pads = [(b.start, n - b.stop) for b, n in zip(back, padded.shape[2:], strict=True)]
        maps = torch.nn.functional.pad(maps, [v for pair in reversed(pads) for v in pair])
    stacked = torch.cat([padded, maps[None]], dim=1)  # [1, 4, ...]: the windows carry their guidance
    has_text = query is not None
    both = also_alone and has_text
    q = (query if has_text else torch.zeros(net.config.text_dim)).float().view(1, -1)

    def run(windows: torch.Tensor) -> torch.Tensor:
        return prompted_forward(net, head, windows[:, :1], q, windows[:, 1:], has_text=has_text, also_alone=both)

    with torch.inference_mode():
        out = sliding_window_inference(stacked, patch, sw_batch_size=2, predictor=run, overlap=overlap,
                                       mode="gaussian", sigma_scale=0.125)
    return out[(0, slice(None) if both else 0, *back)]
