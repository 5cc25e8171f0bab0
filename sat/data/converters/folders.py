"""Layouts with a folder per case (TotalSegmentator v2, KiTS, BraTS, CHAOS, FreeSurfer) or flat pairs (LiTS)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from sat.data.cards import DatasetCard
from sat.data.converters.base import CaseSource, LabelPart, require_dir, safe_case_id
from sat.errors import InputError


def _subdirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _totalseg_splits(root: Path) -> dict[str, str]:
    meta = root / "meta.csv"
    if not meta.is_file():
        return {}
    with meta.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
    return {r["image_id"]: r.get("split", "") for r in rows if "image_id" in r}


def totalseg_v2(root: Path, card: DatasetCard) -> list[CaseSource]:
    """TotalSegmentator v2: ``<case>/ct.nii.gz`` + ``<case>/segmentations/<class>.nii.gz`` (+ ``meta.csv``).

    Each card label's ``name`` is the mask file name; the binary mask becomes that
    label value. ``meta.csv`` (``;``-separated, column ``split``) gives the split.
    """
    require_dir(root, "the TotalSegmentator dataset folder (s0000/ct.nii.gz, s0000/segmentations/...)")
    splits = _totalseg_splits(root)
    cases = []
    for folder in _subdirs(root):
        image, segs = folder / "ct.nii.gz", folder / "segmentations"
        if not image.is_file() or not segs.is_dir():
            continue
        parts = tuple(LabelPart(segs / f"{spec.name}.nii.gz", {1: value})
                      for value, spec in sorted(card.labels.items()) if spec.skip is None)
        cases.append(CaseSource(safe_case_id(folder.name), image, parts, splits.get(folder.name) or None))
    return cases


def kits(root: Path, card: DatasetCard) -> list[CaseSource]:
    """KiTS19/21/23: ``case_00000/imaging.nii.gz`` + ``case_00000/segmentation.nii.gz``."""
    require_dir(root, "the KiTS dataset folder (case_00000/imaging.nii.gz, segmentation.nii.gz)")
    cases = []
    for folder in _subdirs(root):
        image, label = folder / "imaging.nii.gz", folder / "segmentation.nii.gz"
        if image.is_file() and label.is_file():
            cases.append(CaseSource(safe_case_id(folder.name), image, (LabelPart(label),)))
    return cases


def lits(root: Path, card: DatasetCard) -> list[CaseSource]:
    """LiTS: ``volume-<n>.nii`` + ``segmentation-<n>.nii`` anywhere under root (e.g. "Training Batch 1/").

    Option ``label_prefix`` (default ``segmentation``; CT-ORG uses ``labels``).
    """
    prefix = re.escape(str(card.options.get("label_prefix", "segmentation")))
    require_dir(root, "the LiTS folder with volume-N.nii and segmentation-N.nii files")
    labels = {m.group(1): p for p in root.rglob("*.nii*")
              if (m := re.match(rf"{prefix}-(\d+)\.nii(\.gz)?$", p.name))}
    cases = []
    for image in sorted(root.rglob("volume-*.nii*")):
        m = re.match(r"volume-(\d+)\.nii(\.gz)?$", image.name)
        if m and m.group(1) in labels:
            cases.append(CaseSource(f"volume_{int(m.group(1)):03d}", image, (LabelPart(labels[m.group(1)]),)))
    return sorted(cases, key=lambda c: c.case)


def verse(root: Path, card: DatasetCard) -> list[CaseSource]:
    """VerSe 2019/2020: ``rawdata/<sub>/<name>_ct.nii.gz`` + ``derivatives/<sub>/<name>_seg-vert_msk.nii.gz``."""
    require_dir(root / "rawdata", "the VerSe folder with rawdata/ and derivatives/")
    masks = {p.name[: -len("_seg-vert_msk.nii.gz")]: p for p in root.glob("derivatives/*/*_seg-vert_msk.nii.gz")}
    cases = []
    for image in sorted(root.glob("rawdata/*/*_ct.nii.gz")):
        name = image.name[: -len("_ct.nii.gz")]
        if name in masks:
            cases.append(CaseSource(safe_case_id(name), image, (LabelPart(masks[name]),)))
    return cases


_BRATS_SEQUENCES = ("t1n", "t1c", "t2w", "t2f", "t1", "t1ce", "t2", "flair")


def brats(root: Path, card: DatasetCard) -> list[CaseSource]:
    """BraTS 2021-2023: ``<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz`` (2023) or ``<case>_{...}`` (2021).

    Every sequence in option ``sequences`` (default: all present) becomes its own case ``<case>_<seq>``.
    """
    require_dir(root, "the BraTS training folder (one folder per case with <case>-seg.nii.gz)")
    wanted = tuple(card.options.get("sequences", _BRATS_SEQUENCES))
    cases = []
    for folder in _subdirs(root):
        for sep in ("-", "_"):
            seg = folder / f"{folder.name}{sep}seg.nii.gz"
            if seg.is_file():
                break
        else:
            continue
        for seq in wanted:
            image = folder / f"{folder.name}{sep}{seq}.nii.gz"
            if image.is_file():
                cases.append(CaseSource(safe_case_id(f"{folder.name}_{seq}"), image, (LabelPart(seg),)))
    return cases


_CHAOS_MR = {"T2SPIR": ("T2SPIR/DICOM_anon", "T2SPIR/Ground"),
             "T1DUAL_in": ("T1DUAL/DICOM_anon/InPhase", "T1DUAL/Ground"),
             "T1DUAL_out": ("T1DUAL/DICOM_anon/OutPhase", "T1DUAL/Ground")}


def chaos(root: Path, card: DatasetCard) -> list[CaseSource]:
    """CHAOS train set: ``CT/<id>/{DICOM_anon,Ground}`` or ``MR/<id>/{T2SPIR,T1DUAL}/{DICOM_anon,Ground}``.

    Ground truth is one PNG per DICOM file (same file-name order). CT: any non-zero
    pixel is label 1 (liver). MR: grey level / 63 gives 1 liver, 2 right kidney,
    3 left kidney, 4 spleen. Option ``sequences`` (MR): T2SPIR, T1DUAL_in, T1DUAL_out.
    """
    folder = root / ("CT" if card.modality == "ct" else "MR")
    require_dir(folder, f"the CHAOS Train_Sets folder with {folder.name}/<id>/ sub-folders")
    cases = []
    for subject in _subdirs(folder):
        if card.modality == "ct":
            image, ground = subject / "DICOM_anon", subject / "Ground"
            if image.is_dir() and ground.is_dir():
                part = LabelPart(ground, None, "png_slices", image, 0)
                cases.append(CaseSource(safe_case_id(subject.name), image, (part,)))
            continue
        for seq in card.options.get("sequences", list(_CHAOS_MR)):
            if seq not in _CHAOS_MR:
                raise InputError(f"CHAOS sequence {seq!r} unknown: use {', '.join(_CHAOS_MR)}")
            image, ground = (subject / p for p in _CHAOS_MR[seq])
            if image.is_dir() and ground.is_dir():
                part = LabelPart(ground, None, "png_slices", image, 63)
                cases.append(CaseSource(safe_case_id(f"{subject.name}_{seq}"), image, (part,)))
    return cases


def freesurfer(root: Path, card: DatasetCard) -> list[CaseSource]:
    """FreeSurfer output: a SUBJECTS_DIR (``<subject>/mri/``), one subject folder, or its ``mri/`` folder.

    Options ``image`` (default ``norm.mgz``) and ``label`` (default ``aparc+aseg.mgz``) name the files.
    """
    image_name = card.options.get("image", "norm.mgz")
    label_name = card.options.get("label", "aparc+aseg.mgz")
    require_dir(root, "a FreeSurfer SUBJECTS_DIR or subject folder (mri/norm.mgz, mri/aparc+aseg.mgz)")
    candidates = [(root.name, root), (root.name, root / "mri")]
    candidates += [(d.name, d / "mri") for d in _subdirs(root)]
    cases, seen = [], set()
    for name, mri in candidates:
        image, label = mri / image_name, mri / label_name
        if image.is_file() and label.is_file() and name not in seen:
            seen.add(name)
            cases.append(CaseSource(safe_case_id(name), image, (LabelPart(label),)))
    return cases
