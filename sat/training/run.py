"""Run a segmentation recipe (LightningCLI YAML in ``train/``), optionally resuming.

A recipe has the usual LightningCLI sections: ``trainer`` (with a ``ModelCheckpoint`` whose
``dirpath`` is explicit, so ``resume`` finds ``last.ckpt``), ``model`` (SATSegmentation
arguments, ``net`` given as ``class_path: sat.model.SATNet`` + its config) and ``data``
(SATDataModule arguments). Overrides use LightningCLI's dotted names.

Example:
    >>> from sat.training.run import train_segmentation
    >>> train_segmentation("train/tiny-cpu.yaml", overrides=["trainer.max_steps=20"])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from sat.errors import ConfigError

__all__ = ["build_cli", "last_checkpoint", "train_segmentation"]

log = logging.getLogger(__name__)


def build_cli(recipe: str | Path, *, overrides: Sequence[str] = (), module: type | None = None):
    """Parse a recipe (+ ``key=value`` overrides) into an un-run LightningCLI.

    ``module``: the LightningModule class (default :class:`~sat.training.module.SATSegmentation`;
    :class:`~sat.training.prompted.PromptTraining` for the prompt head).

    Raises:
        ConfigError: missing recipe, malformed override or invalid recipe content.
    """
    from jsonargparse import ArgumentError
    from lightning.pytorch.cli import LightningCLI

    from sat.data.module import SATDataModule
    from sat.training.module import SATSegmentation

    path = Path(recipe)
    if not path.is_file():
        raise ConfigError(f"recipe {path} not found; give a YAML such as train/tiny-cpu.yaml")
    args = ["--config", str(path)]
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key or key.startswith("-"):
            raise ConfigError(f"override {item!r} is not key=value (e.g. trainer.max_steps=20)")
        args.append(f"--{key}={value}")
    try:
        return LightningCLI(
            module or SATSegmentation, SATDataModule, args=args, run=False,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"exit_on_error": False},
        )
    except (ArgumentError, ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"invalid recipe {path}: {first}") from err


def last_checkpoint(trainer) -> Path:
    """The ``last.ckpt`` of the trainer's ModelCheckpoint (ConfigError when none was written yet)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    dirs = [Path(cb.dirpath) for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath]
    if not dirs:
        raise ConfigError("the recipe has no ModelCheckpoint with a dirpath; add one to resume")
    for d in dirs:
        if (d / "last.ckpt").is_file():
            return d / "last.ckpt"
    raise ConfigError(f"cannot resume: no last.ckpt in {dirs[0]}; run without --resume first")


def train_segmentation(
    recipe: str | Path, *, overrides: Sequence[str] = (), resume: bool = False, export: str | Path | None = None,
    module: type | None = None,
):
    """Train (or resume) a recipe; returns the LightningCLI (trainer, model, datamodule).

    Args:
        recipe: recipe YAML path.
        overrides: ``key=value`` LightningCLI overrides.
        resume: continue exactly from the recipe's ``last.ckpt``.
        export: also export the final network to this folder (rank 0).
        module: the LightningModule class (see :func:`build_cli`).
    """
    cli = build_cli(recipe, overrides=overrides, module=module)
    ckpt = last_checkpoint(cli.trainer) if resume else None
    if ckpt is not None:
        log.info("resuming from %s", ckpt)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=str(ckpt) if ckpt else None)
    if export is not None and cli.trainer.is_global_zero:
        from sat.training.export import export_trained

        if hasattr(cli.model, "export"):
            cli.model.export(export)
        else:
            export_trained(cli.model.net, export, cli.datamodule)
    return cli
