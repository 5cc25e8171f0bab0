"""Callbacks of the segmentation recipes: throughput bookkeeping and export at the end.

Example (recipe YAML)::

    trainer:
      callbacks:
        - class_path: sat.training.callbacks.Throughput
        - class_path: sat.training.callbacks.ExportOnEnd
          init_args: {directory: runs/tiny-cpu/export}
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import lightning as L

__all__ = ["Throughput", "ExportOnEnd"]

log = logging.getLogger(__name__)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class Throughput(L.Callback):
    """Logs ``train/samples_per_s`` and writes ``<default_root_dir>/summary.json`` at the end.

    The summary accumulates across resumed runs: steps, samples, wall seconds of training.
    """

    def __init__(self, filename: str = "summary.json") -> None:
        self.filename = filename
        self._t0 = 0.0
        self._last = 0.0
        self._seconds = 0.0
        self._samples = 0

    def state_dict(self) -> dict:
        return {"seconds": self._seconds, "samples": self._samples}

    def load_state_dict(self, state_dict: dict) -> None:
        self._seconds = float(state_dict.get("seconds", 0.0))
        self._samples = int(state_dict.get("samples", 0))

    def on_train_start(self, trainer, pl_module) -> None:
        self._last = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        n = int(batch["image"].shape[0]) * trainer.world_size
        dt, self._last = now - self._last, now
        self._seconds += dt
        self._samples += n
        pl_module.log("train/samples_per_s", n / max(dt, 1e-9), batch_size=n // trainer.world_size)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._pause = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:  # validation time is not training time
        self._last += time.perf_counter() - getattr(self, "_pause", time.perf_counter())

    def summary(self, trainer) -> dict:
        return {
            "steps": int(trainer.global_step),
            "samples": self._samples,
            "train_seconds": round(self._seconds, 1),
            "samples_per_s": round(self._samples / self._seconds, 3) if self._seconds else None,
            "world_size": trainer.world_size,
        }

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            _write_json(Path(trainer.default_root_dir) / self.filename, self.summary(trainer))


class ExportOnEnd(L.Callback):
    """Export the trained network (safetensors + config.json) when training ends (rank 0).

    ``config.json`` also gets the connected-component rule learnt from the training cases
    (:func:`sat.training.export.export_trained`).

    Args:
        directory: output folder, e.g. ``sat/resources/models/sat-tiny``.
        half: store float16 weights.
        inference: the model's inference defaults (config ``inference``, e.g. ``{"overlap": 0.5}``).
    """

    def __init__(self, directory: str, *, half: bool = True, inference: dict | None = None) -> None:
        self.directory = directory
        self.half = half
        self.inference = dict(inference or {})

    def on_train_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        from sat.training.export import export_trained

        dm = trainer.datamodule
        training = {"steps": int(trainer.global_step)}
        for cb in trainer.callbacks:
            if isinstance(cb, Throughput):
                training = cb.summary(trainer)
        if hasattr(pl_module, "export"):  # a second-stage module exports its own part
            log.info("exported the trained head to %s", pl_module.export(self.directory, half=self.half,
                                                                          extra={"training": training}))
            return
        training["init_from"] = pl_module.hparams.get("init_from")
        extra = {"training": training, **({"inference": self.inference} if self.inference else {})}
        out = export_trained(pl_module.net, self.directory, dm, half=self.half, extra=extra)
        log.info("exported the trained model to %s", out)
