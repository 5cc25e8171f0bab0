"""Read the one DICOM series of a folder: pixel data with SimpleITK, geometry from every slice.

SimpleITK (GDCM) groups the files of a series and decodes the pixels (rescale slope and
intercept applied). The voxel grid is then rebuilt from each slice's ImagePositionPatient and
ImageOrientationPatient by :func:`sat.io._stack.regularize`, which corrects gantry tilt and
uneven slice spacing and refuses what is not one stack (mixed orientations, duplicate
positions, large gaps). Series without per-slice positions (one multi-frame file, secondary
captures) keep SimpleITK's geometry.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from sat.errors import InputError
from sat.io._readers import LPS_TO_RAS, corrupt, sitk_to_numpy
from sat.io._stack import make_stack, regularize

log = logging.getLogger(__name__)

DICOM_MODALITY = {"CT": "ct", "MR": "mr", "PT": "pet"}
_POSITION, _ORIENTATION, _TILT = "0020|0032", "0020|0037", "0018|1120"


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


def _numbers(reader: Any, index: int, key: str, count: int) -> np.ndarray | None:
    """A multi-valued decimal tag of slice ``index`` (None when absent or malformed)."""
    if not reader.HasMetaDataKey(index, key):
        return None
    try:
        values = np.array([float(v) for v in reader.GetMetaData(index, key).split("\\")], dtype=np.float64)
    except ValueError:
        return None
    return values if values.size == count and np.all(np.isfinite(values)) else None


def _execute(reader: Any, folder: Path) -> Any:
    """Read the pixels; SimpleITK's own warnings (e.g. on uneven spacing) are replaced by ours."""
    import SimpleITK as sitk  # noqa: N813

    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return reader.Execute()
    except RuntimeError as err:
        raise corrupt(folder, err) from err
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def _on_grid(reader: Any, image: Any, n_files: int, folder: Path, *, label: bool
             ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(array [X, Y, Z], RAS affine, geometry meta) with the grid rebuilt from the slice positions."""
    array, affine = sitk_to_numpy(image)
    if n_files < 2 or array.ndim != 3 or array.shape[2] != n_files:
        return array, affine, {}
    positions = [_numbers(reader, k, _POSITION, 3) for k in range(n_files)]
    orientations = [_numbers(reader, k, _ORIENTATION, 6) for k in range(n_files)]
    if any(p is None for p in positions) or any(o is None for o in orientations):
        log.warning("%s: some slices lack ImagePositionPatient/ImageOrientationPatient; the slice spacing "
                    "is SimpleITK's guess and cannot be checked", folder)
        return array, affine, {}
    spacing = image.GetSpacing()
    stack = make_stack(np.stack(orientations), np.stack(positions), (spacing[0], spacing[1]), str(folder))
    array, lps, geometry = regularize(array, stack, label=label, name=str(folder))
    return array, LPS_TO_RAS @ lps, geometry


def read_dicom_folder(folder: Path, *, label: bool = False) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read the single DICOM series of a folder; several series raise InputError listing them.

    Returns ``(array [X, Y, Z], RAS affine, meta)``; ``meta["geometry"]`` describes the slice
    stack (spacing along the normal, tilt, whether and why it was resampled).
    """
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
    image = _execute(reader, folder)
    array, affine, geometry = _on_grid(reader, image, len(files), folder, label=label)

    def tag(key: str) -> str:
        return reader.GetMetaData(0, key).strip() if reader.HasMetaDataKey(0, key) else ""

    meta: dict[str, Any] = {
        "source": str(folder),
        "format": "dicom",
        "dtype": str(sitk.GetArrayViewFromImage(image).dtype),
        "series_uid": uids[0],
        "series_description": tag("0008|103e"),
        "n_files": len(files),
    }
    if geometry:
        tilt = _numbers(reader, 0, _TILT, 1)
        if tilt is not None:
            geometry["gantry_tilt_tag"] = float(tilt[0])
            if abs(tilt[0]) > 0.1 and not geometry["resampled"]:
                log.info("%s: GantryDetectorTilt is %g degrees but the slices lie along their normal "
                         "(the orientation holds the tilt): nothing to correct", folder, tilt[0])
        meta["geometry"] = geometry
    modality = DICOM_MODALITY.get(tag("0008|0060").upper())
    if modality is not None:
        meta["modality"] = modality
        meta["modality_source"] = "dicom"
    return array, affine, meta
