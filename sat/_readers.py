"""File readers behind :mod:`sat.io`: nibabel (NIfTI, MGZ) and SimpleITK (NRRD, DICOM).

Each returns ``(array [X, Y, Z, ...] as stored, affine 4x4 RAS+, meta dict)``.
SimpleITK works in LPS world coordinates with arrays ordered ``[Z, Y, X]``; both
are converted here so that ``affine @ [i, j, k, 1]`` is the RAS+ position in mm.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from sat.errors import InputError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
DICOM_MODALITY = {"CT": "ct", "MR": "mr", "PT": "pet"}
_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError, RuntimeError)


def _corrupt(path: Path, err: BaseException) -> InputError:
    reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
    return InputError(f"{path}: file is truncated or corrupt ({reason}); re-export or re-copy it")


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
    return array, np.asarray(img.affine, dtype=np.float64), meta


def read_nibabel(path: Path, *, label: bool, keep_dtype: bool = False) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read NIfTI / MGZ; a truncated or corrupt file raises InputError."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        array, affine, meta = from_nibabel(img, str(path), label=label, keep_dtype=keep_dtype)
    except nib.filebasedimages.ImageFileError as err:
        raise _corrupt(path, err) from err
    except _READ_ERRORS as err:
        raise _corrupt(path, err) from err
    meta["format"] = "mgz" if path.suffix.lower() in (".mgz", ".mgh") else "nifti"
    return array, affine, meta


def _sitk_to_numpy(image: Any) -> tuple[np.ndarray, np.ndarray]:
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
        raise _corrupt(path, err) from err
    array, affine = _sitk_to_numpy(image)
    meta = {"source": str(path), "format": path.suffix.lower().lstrip("."), "dtype": str(array.dtype)}
    return array, affine, meta


def _series_summary(reader: Any, folder: Path, uid: str) -> str:
    import SimpleITK as sitk  # noqa: N813

    files = reader.GetGDCMSeriesFileNames(str(folder), uid)
    info = sitk.ImageFileReader()
    info.SetFileName(files[0])
    desc = ""
    try:
        info.ReadImageInformation()
        desc = info.GetMetaData("0008|103e").strip() if info.HasMetaDataKey("0008|103e") else ""
    except RuntimeError:
        pass
    return f"{uid or '(no uid)'} [{desc or 'no description'}, {len(files)} files]"


def read_dicom_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read the single DICOM series of a folder; several series raise InputError listing them."""
    import SimpleITK as sitk  # noqa: N813

    reader = sitk.ImageSeriesReader()
    uids = list(reader.GetGDCMSeriesIDs(str(folder)))
    if not uids:
        raise InputError(f"{folder}: no DICOM series found in this folder; pass a folder of DICOM slices or a file")
    if len(uids) > 1:
        listing = "; ".join(_series_summary(reader, folder, uid) for uid in uids)
        raise InputError(
            f"{folder}: holds {len(uids)} DICOM series ({listing}); move the wanted series into its own folder"
        )
    files = reader.GetGDCMSeriesFileNames(str(folder), uids[0])
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise _corrupt(folder, err) from err
    array, affine = _sitk_to_numpy(image)

    def tag(key: str) -> str:
        return reader.GetMetaData(0, key).strip() if reader.HasMetaDataKey(0, key) else ""

    meta: dict[str, Any] = {
        "source": str(folder),
        "format": "dicom",
        "dtype": str(array.dtype),
        "series_uid": uids[0],
        "series_description": tag("0008|103e"),
        "n_files": len(files),
    }
    modality = DICOM_MODALITY.get(tag("0008|0060").upper())
    if modality is not None:
        meta["modality"] = modality
        meta["modality_source"] = "dicom"
    return array, affine, meta
