"""Read and write 3D volumes: NIfTI, FreeSurfer MGZ, NRRD, DICOM series -> :class:`Volume`.

Every array travels with its 4x4 affine (voxel index -> RAS+ world, mm). Files are
read with nibabel (NIfTI, MGZ) or SimpleITK (NRRD, MetaImage, DICOM series; their
LPS world coordinates are converted to RAS). Outputs are NIfTI, written atomically.

Example:
    >>> import numpy as np, sat.io
    >>> vol = sat.io.load((np.zeros((4, 5, 6)), np.diag([2.0, 2.0, 3.0, 1.0])), modality="mr")
    >>> vol.shape, vol.spacing
    ((4, 5, 6), (2.0, 2.0, 3.0))
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sat._atomic import atomic_write
from sat.errors import InputError, UnsupportedFormatError

log = logging.getLogger(__name__)

MODALITIES = ("ct", "mr", "pet")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
NIBABEL_SUFFIXES = (*NIFTI_SUFFIXES, ".mgz", ".mgh")
SITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass
class Volume:
    """A 3D image or label map with its voxel-to-world transform.

    Attributes:
        array: ``[X, Y, Z]`` float32 for images; an integer dtype for label maps.
        affine: ``(4, 4)`` float64, voxel index -> RAS+ world coordinates in mm.
        modality: ``"ct" | "mr" | "pet" | None``.
        meta: source metadata (``source``, ``format``, ``dtype``, ``modality_source``, ...).

    Example:
        >>> v = Volume(np.zeros((2, 3, 4), np.float32), np.eye(4))
        >>> v.shape, v.spacing
        ((2, 3, 4), (1.0, 1.0, 1.0))
    """

    array: np.ndarray
    affine: np.ndarray
    modality: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid size ``(X, Y, Z)``."""
        return tuple(int(s) for s in self.array.shape[:3])  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the three array axes (norms of the affine columns)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]


def _source_name(src: Any) -> str:
    return str(src) if isinstance(src, (str, os.PathLike)) else type(src).__name__


def _check_modality(modality: str | None) -> str | None:
    if modality is None:
        return None
    mod = str(modality).lower()
    if mod not in MODALITIES:
        raise InputError(f"unknown modality {modality!r}; use one of {', '.join(MODALITIES)} or None")
    return mod


def _check_geometry(array: np.ndarray, affine: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Squeeze trailing singleton dims and reject what is not one 3D volume with a valid affine."""
    if array.size == 0:
        raise InputError(f"{name}: the image is empty (shape {array.shape}); pass a non-empty 3D volume")
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim > 3:
        raise InputError(
            f"{name}: 4D image of shape {array.shape} holds {int(np.prod(array.shape[3:]))} volumes; "
            "SAT segments one 3D volume: pass one, e.g. load((img.get_fdata()[..., 0], img.affine))"
        )
    if array.ndim < 3 or min(array.shape) < 2:
        raise InputError(
            f"{name}: this is a 2D image (shape {array.shape}); SAT segments 3D volumes: "
            "pass a series of at least 2 slices"
        )
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise InputError(f"{name}: the affine has shape {affine.shape}; pass a 4x4 voxel-to-world matrix")
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputError(
            f"{name}: the affine is singular or not finite ({affine[:3, :3].tolist()}); "
            "fix the header (voxel size and direction) or pass a valid 4x4 affine"
        )
    return array, affine


def _check_finite(array: np.ndarray, name: str) -> None:
    if np.issubdtype(array.dtype, np.floating):
        step = max(1, (1 << 24) // max(1, array[:1].size))  # slab by slab: no full-size bool array
        bad = sum(int(array[i:i + step].size - np.count_nonzero(np.isfinite(array[i:i + step])))
                  for i in range(0, len(array), step))
        if bad:
            raise InputError(
                f"{name}: {bad} of {array.size} voxels are NaN or infinite; "
                "replace them (e.g. np.nan_to_num) before segmenting"
            )


def _image_array(array: np.ndarray, keep_dtype: bool) -> np.ndarray:
    """float32, or with ``keep_dtype`` the array itself (native byte order) when it holds real numbers."""
    array = np.asarray(array)
    if not keep_dtype or array.dtype.kind not in "biuf":
        return np.asarray(array, dtype=np.float32)
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


def guess_modality(array: np.ndarray) -> tuple[str, str]:
    """Guess ``"ct"`` or ``"mr"`` from intensities, and say why: CT is in Hounsfield units (air near -1000).

    A volume is CT when at least 1 % of its voxels are below -100 (air and fat in Hounsfield units;
    MR and PET intensities are not negative) and its 99.5th percentile is below 5000; otherwise
    ``"mr"``. The -100 bound also recognises CT stored in a soft-tissue window (e.g. BTCV's
    [-125, 275] HU, whose air reads -125). PET is never guessed (its values look like MR's): pass
    ``modality="pet"``, or let the DICOM Modality tag or a NIfTI description say so.
    """
    flat = array.reshape(-1)
    step = max(1, flat.size // 1_000_000)
    sample = np.asarray(flat[::step], dtype=np.float32)
    below, top = float(np.mean(sample < -100)), float(np.percentile(sample, 99.5))
    why = f"{100 * below:.1f}% of voxels below -100, 99.5th percentile {top:.0f}"
    return ("ct" if below >= 0.01 and top < 5000 else "mr"), why


def infer_modality(array: np.ndarray) -> str:
    """``"ct"`` or ``"mr"`` from intensities (:func:`guess_modality`)."""
    return guess_modality(array)[0]


def _to_label_array(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(array.dtype.newbyteorder("="), copy=False)
    _check_finite(array, name)
    rounded = np.rint(array)
    if not np.array_equal(rounded, array):
        raise InputError(f"{name}: the label map has non-integer values; threshold or round it first")
    if rounded.min() < 0 or rounded.max() > np.iinfo(np.int32).max:
        return rounded.astype(np.int64)
    return rounded.astype(np.uint16 if rounded.max() <= 65535 else np.int32)


def _read(src: Any, *, label: bool, keep_dtype: bool = False) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Return (array as stored, affine, meta) for any supported source."""
    from sat.io import _dicom, _readers

    if isinstance(src, Volume):
        return src.array, src.affine, {**src.meta, "modality": src.modality}
    if isinstance(src, tuple) and len(src) == 2:
        array, affine = src
        return np.asarray(array), np.asarray(affine, dtype=np.float64), {"source": "array", "format": "array"}
    if hasattr(src, "dataobj") and hasattr(src, "affine"):
        return _readers.from_nibabel(src, "nibabel image", label=label, keep_dtype=keep_dtype)
    if not isinstance(src, (str, os.PathLike)):
        raise InputError(
            f"cannot load a {type(src).__name__}; pass a path, a nibabel image, a Volume or (array, affine)"
        )
    path = Path(src).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path")
    if path.is_dir():
        return _dicom.read_dicom_folder(path, label=label)
    suffix = "".join(path.suffixes[-2:]).lower() if path.name.lower().endswith(".gz") else path.suffix.lower()
    if suffix in NIBABEL_SUFFIXES:
        return _readers.read_nibabel(path, label=label, keep_dtype=keep_dtype)
    if suffix in SITK_SUFFIXES:
        return _readers.read_sitk(path)
    raise UnsupportedFormatError(
        f"{path}: unsupported file type {suffix or '(no extension)'!r}; use NIfTI (.nii, .nii.gz), "
        "MGZ, NRRD, or a folder holding one DICOM series"
    )


def load(src: Any, *, modality: str | None = None, keep_dtype: bool = False) -> Volume:
    """Load an image as a float32 :class:`Volume`.

    Args:
        src: path (``.nii``, ``.nii.gz``, ``.mgz``, ``.nrrd``, a folder with one DICOM
            series), a nibabel image, a :class:`Volume`, or ``(array, affine)``.
        modality: ``"ct" | "mr" | "pet"``; wins over the DICOM Modality tag or a header text that
            names one (NIfTI description, NRRD content, MetaImage Modality: "PET", "PT", "SUV", "FDG"
            -> pet), which win over the intensity guess of :func:`guess_modality` (CT or MR only,
            logged at INFO with its reason). The file name is never used.
        keep_dtype: keep the stored numeric dtype instead of a float32 copy (an int16 CT
            stays 2 bytes a voxel; an array or Volume given is used as is, without a copy).
            Files whose header scales the values (slope/intercept) are still read as float32.
            :func:`sat.preprocess.standardize` converts such arrays slab by slab.

    Returns:
        Volume with ``array`` float32 ``[X, Y, Z]`` (with ``keep_dtype``: as stored) and a RAS+
        ``affine``; ``meta["modality_source"]`` is ``"argument" | "dicom" | "header" | "volume" | "intensity"``.

    Raises:
        InputError: missing file, 2D or 4D image, NaN/inf voxels, empty array, singular
            affine, corrupt file, several DICOM series; UnsupportedFormatError: unknown extension.

    Example:
        >>> vol = load((np.full((3, 3, 3), -1000.0), np.eye(4)))
        >>> vol.modality, vol.array.dtype
        ('ct', dtype('float32'))
    """
    modality = _check_modality(modality)
    name = _source_name(src)
    array, affine, meta = _read(src, label=False, keep_dtype=keep_dtype)
    array, affine = _check_geometry(array, affine, name)
    array = _image_array(array, keep_dtype)
    _check_finite(array, name)
    stored = _check_modality(meta.pop("modality", None))
    if modality is not None:
        meta["modality_source"] = "argument"
    elif stored is not None:
        modality = stored
        meta.setdefault("modality_source", "dicom" if meta.get("format") == "dicom" else "volume")
        if meta["modality_source"] == "header":
            log.info("%s: modality %s from its %s; pass modality=... (CLI: --modality) if wrong",
                     name, modality, meta.get("modality_hint", "header"))
    else:
        modality, why = guess_modality(array)
        meta["modality_source"] = "intensity"
        others = " or ".join(repr(m) for m in MODALITIES if m != modality)
        log.info("%s: modality guessed as %s from intensities (%s); if wrong pass modality=%s (CLI: --modality)",
                 name, modality, why, others)
    log.debug("loaded %s: shape %s, modality %s (%s)", name, array.shape, modality, meta["modality_source"])
    return Volume(array=array, affine=affine, modality=modality, meta=meta)


def load_label(src: Any) -> Volume:
    """Load a label map, keeping an integer dtype (float files holding integers are converted).

    Same sources and geometry checks as :func:`load`; no modality, no intensity checks.

    Example:
        >>> lab = load_label((np.ones((3, 3, 3), np.uint8), np.eye(4)))
        >>> lab.array.dtype
        dtype('uint8')
    """
    name = _source_name(src)
    array, affine, meta = _read(src, label=True)
    array, affine = _check_geometry(np.asanyarray(array), affine, name)
    meta.pop("modality", None)
    return Volume(array=_to_label_array(np.asarray(array), name), affine=affine, modality=None, meta=meta)


def _nifti_dtype(array: np.ndarray) -> np.ndarray:
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype in (np.int64, np.uint64):
        lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
        for dt in (np.uint8, np.int16, np.uint16, np.int32):
            if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
                return array.astype(dt)
        raise InputError("label values do not fit in int32; NIfTI cannot store them, remap the labels")
    if array.dtype == np.float64:
        return array.astype(np.float32)
    return array


def save(volume_or_array: Volume | np.ndarray, path: str | os.PathLike, *, affine: np.ndarray | None = None) -> Path:
    """Write a NIfTI file (``.nii`` or ``.nii.gz``) atomically with the volume's affine.

    The data go to a temporary file in the same folder, renamed onto ``path`` only when
    complete: an interrupted write never leaves a partial file under the final name.
    The affine is stored in both sform and qform (code 1, scanner), which then agree; NIfTI-1
    keeps it in float32. A sheared affine (:func:`is_sheared`) cannot be held by the qform (a
    rotation and voxel sizes): only the sform is written, with qform_code 0 and a WARNING, so
    no reader sees another geometry (nibabel and FSL read the sform; ITK-based tools refuse the
    file instead of misplacing it). bool -> uint8, int64 -> the smallest integer type that holds
    the values.

    Args:
        volume_or_array: a :class:`Volume`, or an ndarray together with ``affine``.
        path: output file name ending in ``.nii`` or ``.nii.gz``.
        affine: ``(4, 4)`` affine; required for an ndarray (never an implicit identity),
            overrides the Volume's affine when given.

    Returns:
        The final path.

    Example:
        >>> import tempfile, os
        >>> out = save(Volume(np.zeros((2, 2, 2), np.float32), np.eye(4)),
        ...            os.path.join(tempfile.mkdtemp(), "x.nii.gz"))
        >>> out.name
        'x.nii.gz'
    """
    path = Path(path)
    if not path.name.lower().endswith(NIFTI_SUFFIXES):
        raise UnsupportedFormatError(f"{path}: SAT writes NIfTI only; name the output *.nii.gz or *.nii")
    if isinstance(volume_or_array, Volume):
        array = volume_or_array.array
        affine = volume_or_array.affine if affine is None else affine
    else:
        if affine is None:
            raise InputError("save(array, path) needs affine=...: SAT never writes an identity affine")
        array = np.asarray(volume_or_array)
    array, affine = _check_geometry(np.asarray(array), affine, str(path))
    if is_sheared(affine):
        log.warning(SHEAR_WARNING, path)
    write_nifti(array, path, affine)
    return path


SHEAR_WARNING = ("%s: the affine is sheared (e.g. a gantry-tilted scan), which a NIfTI qform cannot hold: "
                 "written as sform only (qform_code 0); nibabel and FSL read it, ITK-based tools refuse it")


def is_sheared(affine: np.ndarray) -> bool:
    """True when the affine's 3x3 part is not a rotation (or reflection) times voxel sizes.

    Example:
        >>> is_sheared(np.diag([1.0, 2.0, 3.0, 1.0])), is_sheared(np.array([[1.0, 0, 0.5, 0], [0, 1, 0, 0],
        ...                                                                  [0, 0, 1, 0], [0, 0, 0, 1]]))
        (False, True)
    """
    import nibabel as nib

    try:
        nib.Nifti1Header().set_qform(np.asarray(affine, dtype=np.float64), strip_shears=False)
    except nib.spatialimages.HeaderDataError:
        return True
    return False


def write_nifti(array: np.ndarray, path: Path, affine: np.ndarray) -> None:
    """Write ``array`` atomically with sform == qform, or sform only when ``affine`` is sheared (no checks)."""
    import nibabel as nib

    img = nib.Nifti1Image(_nifti_dtype(array), affine)
    img.header.set_sform(affine, code=1)
    if is_sheared(affine):
        img.header.set_qform(None, code=0)
    else:
        img.header.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm")
    suffix = ".nii.gz" if path.name.lower().endswith(".gz") else ".nii"
    atomic_write(path, lambda tmp: nib.save(img, tmp), suffix=f".part{suffix}")


def with_array(volume: Volume, array: np.ndarray) -> Volume:
    """Return a copy of ``volume`` (same affine, modality, meta) holding ``array``."""
    return dataclasses.replace(volume, array=array, meta=dict(volume.meta))
