"""The standardized cache: every case of every card resampled to the model space, one ``.npz`` per case.

Layout (read by the sampling / DataModule code)::

    CACHE/index.csv              dataset, case, modality, region, split, file, shape, spacing, concepts, labelled
    CACHE/<dataset>/<case>.npz   image float16 [X,Y,Z], label uint16 [X,Y,Z], values int32 [K], concepts str [K],
                                 intensity_mean, intensity_std (the standardization: HU = mean + std * value)
    CACHE/<dataset>/<case>.json  the case's index row + the settings it was made with (resume bookkeeping)
    CACHE/report.json            last run: prepared, up-to-date and failed cases (with the reason)

Label values in the cache are compact: value ``k`` is ``concepts[k-1]`` of the
dataset's sorted concept list, so each concept has exactly one value even when
the dataset used several values for it. ``labelled`` lists the concepts the
case annotates (present or not): the only concepts a loss may treat as negative.

Example:
    >>> from sat.data.cache import prepare
    >>> from sat.data.cards import load_card
    >>> report = prepare([load_card("datasets/brain_mni152.yaml")], "cache", shared="../shared")  # doctest: +SKIP
    >>> report.index[["dataset", "case", "split"]]                                               # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sat import preprocess
from sat._atomic import atomic_write_bytes
from sat.data.cards import DatasetCard
from sat.data.converters import CaseSource, find_cases, load_case
from sat.errors import InputError, SATError

log = logging.getLogger(__name__)

FORMAT = 2  # of the npz; cases written in another format are made again (1: no intensity_mean)
INDEX_COLUMNS = ("dataset", "case", "modality", "region", "split", "file", "shape", "spacing", "concepts",
                 "labelled")


@dataclass
class PrepareReport:
    """Outcome of :func:`prepare`: case keys ``"dataset/case"`` per status, the index and the wall time."""

    prepared: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    index: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(INDEX_COLUMNS)))
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """JSON-serialisable summary (without the index)."""
        return {"prepared": self.prepared, "up_to_date": self.up_to_date, "failed": self.failed,
                "seconds": round(self.seconds, 2), "cases_in_index": int(len(self.index))}


@dataclass(frozen=True)
class _Job:
    card: DatasetCard
    source: CaseSource
    npz: Path
    spacing: tuple[float, float, float]


def dataset_concepts(card: DatasetCard) -> list[str]:
    """The dataset's concept ids in cache-value order (cache value k <-> element k-1)."""
    seen: dict[str, None] = {}
    for value in sorted(card.labels):
        spec = card.labels[value]
        if spec.concept is not None and spec.skip is None:
            seen.setdefault(spec.concept, None)
    return list(seen)


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _standardize(job: _Job) -> tuple[np.ndarray, np.ndarray, tuple[float, ...], tuple[float, float]]:
    """Read the case and return (image float16, compact label uint16, spacing, (intensity mean, std)) in model space."""
    from sat import io as sat_io

    card, source = job.card, job.source
    image, label = load_case(source, modality=card.modality, known=card.labels)
    concepts = dataset_concepts(card)
    lut = np.zeros(max(card.labels) + 1, dtype=np.int32)
    for value, concept in card.concept_of().items():
        lut[value] = concepts.index(concept) + 1
    compact = lut[label]
    tensor, record = preprocess.standardize(image, spacing=job.spacing)
    label_vol = sat_io.Volume(compact.astype(np.int32), image.affine, None, {})
    label_std = np.asarray(preprocess.standardize_label(label_vol, record)).astype(np.uint16)
    image_std = np.asarray(tensor)[0]
    if image_std.shape != label_std.shape:
        raise InputError(f"{source.case}: standardized image {image_std.shape} and label {label_std.shape} differ")
    if not np.isfinite(image_std).all():
        raise InputError(f"{source.case}: standardized image holds NaN/inf values")
    spacing = tuple(float(s) for s in np.linalg.norm(np.asarray(record.model_affine)[:3, :3], axis=0))
    stats = record.intensity or {}
    return image_std.astype(np.float16), label_std, spacing, (float(stats.get("mean", 0.0)), float(stats.get("std", 1.0)))


def _prepare_case(job: _Job) -> dict:
    """Worker: standardize one case, write its npz + sidecar atomically and return its index row."""
    card, source = job.card, job.source
    image, label, spacing, (mean, std) = _standardize(job)
    concepts = dataset_concepts(card)
    concept_of = card.concept_of()
    labelled_ids = {concept_of[v] for v in source.labelled_values(concept_of)}
    values = np.array([i + 1 for i, c in enumerate(concepts) if c in labelled_ids], dtype=np.int32)
    names = np.array([concepts[v - 1] for v in values], dtype=str)
    present = set(np.unique(label).tolist()) - {0}
    _write_npz(job.npz, image=image, label=label, values=values, concepts=names,
               intensity_mean=np.float32(mean), intensity_std=np.float32(std))  # HU (CT) = mean + std * value
    row = {
        "dataset": card.name, "case": source.case, "modality": card.modality, "region": card.region,
        "split": card.split_of(source.case, source.split), "file": f"{card.name}/{job.npz.name}",
        "shape": "x".join(str(s) for s in label.shape), "spacing": ",".join(f"{s:g}" for s in spacing),
        "concepts": ";".join(concepts[v - 1] for v in sorted(present)),
        "labelled": ";".join(str(c) for c in names),
    }
    sidecar = {"row": row, "target_spacing": list(job.spacing), "ct_scale": list(preprocess.CT_SCALE), "format": FORMAT}
    atomic_write_bytes(job.npz.with_suffix(".json"), json.dumps(sidecar, indent=1).encode())
    return row


def _run_job(job: _Job) -> tuple[str, dict | str]:
    """Never raises: ("ok", row) or ("failed", one-line reason)."""
    try:
        return "ok", _prepare_case(job)
    except Exception as err:  # a corrupt case must not stop the run
        kind = "" if isinstance(err, SATError) else f"{type(err).__name__}: "
        return "failed", f"{kind}{err}".splitlines()[0] if str(err) else type(err).__name__


def _up_to_date(job: _Job) -> dict | None:
    """The stored row when the case's npz is newer than its inputs and card and used the same spacing, CT scale and format."""
    sidecar = job.npz.with_suffix(".json")
    if not (job.npz.is_file() and sidecar.is_file()):
        return None
    try:
        stored = json.loads(sidecar.read_text())
        row = stored["row"]
    except (OSError, ValueError, KeyError):
        return None
    if [float(s) for s in stored.get("target_spacing", [])] != list(job.spacing) or stored.get("format", 1) != FORMAT:
        return None
    if job.card.modality == "ct" and stored.get("ct_scale") != list(preprocess.CT_SCALE):
        return None  # made with another CT intensity scale
    made = job.npz.stat().st_mtime
    inputs = job.source.inputs() + ([job.card.path] if job.card.path else [])
    if any(not p.exists() or p.stat().st_mtime >= made for p in inputs):
        return None
    row["split"] = job.card.split_of(job.source.case, job.source.split)  # splits may change without re-running
    return row


def _init_worker() -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _execute(jobs: list[_Job], workers: int, progress: bool, report: PrepareReport, rows: list[dict]) -> None:
    from tqdm.auto import tqdm

    def record(job: _Job, status: str, payload: dict | str) -> None:
        key = f"{job.card.name}/{job.source.case}"
        if status == "ok":
            rows.append(payload)  # type: ignore[arg-type]
            report.prepared.append(key)
        else:
            report.failed[key] = str(payload)
            log.warning("skipped %s: %s", key, payload)

    bar = tqdm(total=len(jobs), desc="sat data prepare", unit="case", disable=not progress)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            record(job, *_run_job(job))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
            futures = {pool.submit(_run_job, job): job for job in jobs}
            for future in as_completed(futures):
                try:
                    record(futures[future], *future.result())
                except Exception as err:  # worker process died (e.g. out of memory)
                    record(futures[future], "failed", f"worker died: {type(err).__name__}: {err}")
                bar.update()
    bar.close()


def _write_index(out: Path, rows: list[dict], datasets: set[str]) -> pd.DataFrame:
    index_path = out / "index.csv"
    new = pd.DataFrame(rows, columns=list(INDEX_COLUMNS))
    if index_path.is_file():
        old = pd.read_csv(index_path, dtype=str, keep_default_na=False)
        new = pd.concat([old[~old["dataset"].isin(datasets)], new], ignore_index=True)
    new = new.sort_values(["dataset", "case"], kind="stable").reset_index(drop=True)
    atomic_write_bytes(index_path, new.to_csv(index=False).encode())
    return new


def prepare(cards: list[DatasetCard], out: str | Path, *, roots: dict[str, str | Path] | None = None,
            shared: str | Path | None = None, spacing: float | tuple[float, float, float] = 3.0,
            workers: int = 2, force: bool = False, progress: bool = True) -> PrepareReport:
    """Standardize every case of ``cards`` into the cache ``out``; resumable, corrupt cases skipped.

    Args:
        cards: dataset cards (see :func:`sat.data.cards.load_card`).
        out: cache folder (created).
        roots: dataset name -> dataset folder (wins over the card's relative ``root``).
        shared: folder the cards' relative ``root`` paths are resolved against.
        spacing: model-space voxel size in mm (one number: isotropic).
        workers: processes (1: run in this process).
        force: re-do cases even when their npz is up to date.
        progress: show a progress bar.

    Returns:
        PrepareReport; ``out/index.csv`` and ``out/report.json`` are written atomically.
    """
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spacing = (float(spacing),) * 3 if np.isscalar(spacing) else tuple(float(s) for s in spacing)
    report, rows, jobs = PrepareReport(), [], []
    for card in cards:
        root = card.resolve_root((roots or {}).get(card.name), shared=shared)
        for source in find_cases(card, root):
            job = _Job(card, source, out / card.name / f"{source.case}.npz", spacing)  # type: ignore[arg-type]
            row = None if force else _up_to_date(job)
            if row is None:
                jobs.append(job)
            else:
                rows.append(row)
                report.up_to_date.append(f"{card.name}/{source.case}")
    _execute(jobs, workers, progress, report, rows)
    report.index = _write_index(out, rows, {c.name for c in cards})
    report.seconds = time.perf_counter() - start
    atomic_write_bytes(out / "report.json", json.dumps(report.to_dict(), indent=1).encode())
    return report
