"""File readers behind :mod:`sat.io`: nibabel (NIfTI, MGZ) and SimpleITK (NRRD, MetaImage).

DICOM series are read by :mod:`sat.io._dicom`.

Each returns ``(array [X, Y, Z, ...] as stored, affine 4x4 RAS+, meta dict)``.
SimpleITK works in LPS world coordinates with arrays ordered ``[Z, Y, X]``; both
are converted here so that ``affine @ [i, j, k, 1]`` is the RAS+ position in mm.
"""

from __future__ import annotations

import logging
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from sat.errors import InputError

log = logging.getLogger(__name__)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# words of a free-text header field (NIfTI descrip, NRRD content, MetaImage Modality) that name a modality
_MODALITY_WORDS = {"pet": "pet", "pt": "pet", "suv": "pet", "fdg": "pet", "psma": "pet", "ct": "ct", "mr": "mr",
                   "mri": "mr"}
_SITK_TEXT_KEYS = ("Modality", "NRRD_content", "content", "descrip")
_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError, RuntimeError)


def corrupt(path: Path, err: BaseException) -> InputError:
    reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
    return InputError(f"{path}: file is truncated or corrupt ({reason}); re-export or re-copy it")


def modality_from_text(text: str) -> str | None:
    """The modality a header's free text names ("PET FDG" -> "pet", "MET_MOD_CT" -> "ct"); None when it
    names none or several ("PET/CT": the CT of a PET/CT study may carry it too).

    >>> modality_from_text("FDG PET, SUVbw"), modality_from_text("dcm2niix TE=2.3"), modality_from_text("PET/CT")
    ('pet', None, None)
    """
    found = {_MODALITY_WORDS[w] for w in re.split(r"[^a-z0-9]+", str(text).lower()) if w in _MODALITY_WORDS}
    return found.pop() if len(found) == 1 else None


def _header_modality(meta: dict[str, Any], text: str, field: str) -> None:
    """Record the modality a header text names (``modality``, ``modality_source="header"``, ``modality_hint``)."""
    modality = modality_from_text(text)
    if modality is not None:
        meta.update(modality=modality, modality_source="header", modality_hint=f"{field} {text.strip()!r}")


def _unscaled(dataobj: Any) -> bool:
    """True when the stored values are the image values (no slope/intercept in the header)."""
    return float(getattr(dataobj, "slope", 1.0)) == 1.0 and float(getattr(dataobj, "inter", 0.0)) == 0.0


def from_nibabel(img: Any, name: str, *, label: bool, keep_dtype: bool = False) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Array and affine of a nibabel image (data scaled by the header's slope/intercept).

    Images are float32, except with ``keep_dtype`` when the header does not scale the values:
    then the stored dtype (e.g. int16), without a copy.
    """
    if label or (keep_dtype and _unscaled(img.dataobj)):
        array = np.asanyarray(img.dataobj)
    else:
        array = np.asarray(img.dataobj, dtype=np.float32) if img.dataobj.dtype != np.float32 else np.asanyarray(img.dataobj)
    array = np.asarray(array)
    meta = {"source": name, "format": type(img).__name__, "dtype": str(img.get_data_dtype())}
    header = getattr(img, "header", None)
    if not label and header is not None and "descrip" in header:
        descrip = np.asarray(header["descrip"]).tobytes().split(b"\0")[0].decode("latin-1")
        _header_modality(meta, descrip, "NIfTI description")
    return array, np.asarray(img.affine, dtype=np.float64), meta


def read_nibabel(path: Path, *, label: bool, keep_dtype: bool = False) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read NIfTI / MGZ; a truncated or corrupt file raises InputError."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        array, affine, meta = from_nibabel(img, str(path), label=label, keep_dtype=keep_dtype)
    except nib.filebasedimages.ImageFileError as err:
        raise corrupt(path, err) from err
    except _READ_ERRORS as err:
        raise corrupt(path, err) from err
    meta["format"] = "mgz" if path.suffix.lower() in (".mgz", ".mgh") else "nifti"
    if meta["format"] == "nifti":
        _check_forms(img.header, img.shape[:3], path)
    return array, affine, meta


def _check_forms(header: Any, shape: tuple[int, ...], path: Path) -> None:
    """Warn when a NIfTI header gives no orientation, or a qform and an sform that place it apart.

    nibabel (and so SAT) uses the sform when its code is set, else the qform; other tools
    (ITK-based ones) may use the qform, so two forms that disagree by more than a tenth of a
    voxel mean the image sits elsewhere for them.
    """
    qform, qcode = header.get_qform(coded=True)
    sform, scode = header.get_sform(coded=True)
    if not qcode and not scode:
        log.warning("%s: the header holds no orientation (qform_code and sform_code are 0): read with voxel "
                    "sizes and no rotation, so left and right may be swapped; fix the header if you can", path)
        return
    if not qcode or not scode:
        return
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                        for k in (0, shape[2] - 1)]).T
    apart = float(np.linalg.norm((qform - sform) @ corners, axis=0).max())
    voxel = float(np.linalg.norm(sform[:3, :3], axis=0).min())
    if apart > 0.1 * voxel:
        log.warning("%s: the qform and sform of the header place the image up to %.1f mm apart; SAT uses the "
                    "sform (as nibabel and FSL), tools that read the qform see another geometry", path, apart)


def sitk_to_numpy(image: Any) -> tuple[np.ndarray, np.ndarray]:
    """SimpleITK image -> (array [X, Y, Z, (C)], RAS affine)."""
    import SimpleITK as sitk  # noqa: N813

    array = sitk.GetArrayViewFromImage(image)
    ndim = image.GetDimension()
    axes = tuple(reversed(range(ndim)))
    if image.GetNumberOfComponentsPerPixel() > 1:
        axes = (*axes, ndim)
    array = np.ascontiguousarray(np.transpose(array, axes)) if ndim == 3 else np.array(array)
    if ndim != 3:
        return array, np.eye(4)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=np.float64)
    lps[:3, 3] = image.GetOrigin()
    return array, LPS_TO_RAS @ lps


def read_sitk(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read NRRD / MetaImage with SimpleITK."""
    import SimpleITK as sitk  # noqa: N813

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise corrupt(path, err) from err
    array, affine = sitk_to_numpy(image)
    meta = {"source": str(path), "format": path.suffix.lower().lstrip("."), "dtype": str(array.dtype)}
    for key in _SITK_TEXT_KEYS:
        if image.HasMetaDataKey(key) and "modality" not in meta:
            _header_modality(meta, image.GetMetaData(key), f"header field {key}")
    return array, affine, meta
