"""Decathlon-style layouts: Medical Segmentation Decathlon, nnU-Net raw datasets, AMOS22, WORD, FLARE22,
AbdomenCT-1K, BTCV. Each function finds the (image, label) files of every labelled case under ``root``.
"""

from __future__ import annotations

import json
from pathlib import Path

from sat.data.cards import DatasetCard
from sat.data.converters.base import (
    CaseSource,
    LabelPart,
    image_files,
    pair_folders,
    require_dir,
    safe_case_id,
    strip_ending,
)
from sat.errors import InputError


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"{path} not found: expected the dataset's dataset.json")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from None


def _channel(card: DatasetCard) -> int | None:
    channel = card.options.get("channel")
    return None if channel is None else int(channel)


def msd(root: Path, card: DatasetCard) -> list[CaseSource]:
    """Medical Segmentation Decathlon task folder: ``dataset.json`` + ``imagesTr/`` + ``labelsTr/``.

    Cases come from the ``training`` list of dataset.json (macOS ``._`` files ignored);
    option ``channel`` picks one channel of 4D images (BrainTumour, Prostate).
    """
    meta = _read_json(root / "dataset.json")
    cases = []
    for item in meta.get("training", []):
        image, label = root / item["image"], root / item["label"]
        if image.name.startswith("._"):
            continue
        cases.append(CaseSource(safe_case_id(strip_ending(image.name)), image, (LabelPart(label),), None,
                                _channel(card)))
    return cases


def nnunet(root: Path, card: DatasetCard) -> list[CaseSource]:
    """nnU-Net v2 raw dataset: ``dataset.json`` (file_ending) + ``imagesTr/<case>_0000`` + ``labelsTr/<case>``.

    Option ``channel`` (default 0) picks the ``_XXXX`` channel file.
    """
    meta = _read_json(root / "dataset.json")
    ending = meta.get("file_ending", ".nii.gz")
    channel = int(card.options.get("channel", 0))
    require_dir(root / "imagesTr", "an nnU-Net raw dataset folder with imagesTr/ and labelsTr/")
    cases = []
    for label in sorted((root / "labelsTr").glob(f"*{ending}")):
        if label.name.startswith("."):
            continue
        case = label.name[: -len(ending)]
        image = root / "imagesTr" / f"{case}_{channel:04d}{ending}"
        if image.is_file():
            cases.append(CaseSource(safe_case_id(case), image, (LabelPart(label),)))
    return cases


def _split_folders(root: Path, pairs: dict[str, tuple[str, str]]) -> list[CaseSource]:
    cases: list[CaseSource] = []
    for split, (images, labels) in pairs.items():
        if (root / images).is_dir():
            cases += pair_folders(root / images, root / labels, split=split)
    return cases


def amos22(root: Path, card: DatasetCard) -> list[CaseSource]:
    """AMOS22: ``imagesTr/labelsTr`` (train) and ``imagesVa/labelsVa`` (val); ``amos_0001``...

    Scans numbered above 500 are MRI, the others CT: only those of the card's modality are kept.
    """
    require_dir(root / "imagesTr", "the AMOS22 folder (amos22/ with imagesTr, labelsTr, imagesVa, labelsVa)")
    cases = _split_folders(root, {"train": ("imagesTr", "labelsTr"), "val": ("imagesVa", "labelsVa")})
    is_mr = card.modality == "mr"
    return [c for c in cases if (int(c.case.rsplit("_", 1)[-1]) > 500) == is_mr]


def word(root: Path, card: DatasetCard) -> list[CaseSource]:
    """WORD: ``imagesTr/labelsTr`` (train), ``imagesVal/labelsVal`` (val), ``imagesTs/labelsTs`` (test)."""
    require_dir(root / "imagesTr", "the WORD folder (WORD-V0.1.0/ with imagesTr, labelsTr, imagesVal, ...)")
    return _split_folders(root, {"train": ("imagesTr", "labelsTr"), "val": ("imagesVal", "labelsVal"),
                                 "test": ("imagesTs", "labelsTs")})


def flare22(root: Path, card: DatasetCard) -> list[CaseSource]:
    """FLARE22 training set: ``images/FLARE22_Tr_0001_0000.nii.gz`` + ``labels/FLARE22_Tr_0001.nii.gz``."""
    require_dir(root / "images", "the FLARE22Train folder with images/ and labels/")
    return pair_folders(root / "images", root / "labels", image_suffix="_0000")


def abdomenct1k(root: Path, card: DatasetCard) -> list[CaseSource]:
    """AbdomenCT-1K: images ``Case_00001_0000.nii.gz`` (in any sub-folder) + ``Mask/Case_00001.nii.gz``."""
    masks = require_dir(root / "Mask", "the AbdomenCT-1K folder with the image part folder(s) and Mask/")
    labels = {strip_ending(p.name): p for p in image_files(masks)}
    cases = []
    for image in sorted(root.rglob("*_0000.nii.gz")):
        case = strip_ending(image.name)[: -len("_0000")]
        if case in labels and not image.name.startswith("."):
            cases.append(CaseSource(safe_case_id(case), image, (LabelPart(labels[case]),)))
    return cases


def btcv(root: Path, card: DatasetCard) -> list[CaseSource]:
    """BTCV (Synapse multi-atlas): ``[RawData/]Training/img/img0001.nii.gz`` + ``label/label0001.nii.gz``."""
    for base in (root, root / "RawData", root / "Abdomen" / "RawData"):
        if (base / "Training" / "img").is_dir():
            images, labels = base / "Training" / "img", base / "Training" / "label"
            break
    else:
        raise InputError(f"{root}/Training/img not found: expected the BTCV RawData folder (Training/img, "
                         "Training/label)")
    by_num = {strip_ending(p.name).removeprefix("label"): p for p in image_files(labels, "label*")}
    cases = []
    for image in image_files(images, "img*"):
        num = strip_ending(image.name).removeprefix("img")
        if num in by_num:
            cases.append(CaseSource(safe_case_id(f"img{num}"), image, (LabelPart(by_num[num]),)))
    return cases
