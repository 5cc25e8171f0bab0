"""Stage 1 of SAT: knowledge-enhanced contrastive pretraining of the text encoder.

``train_text_encoder`` is what ``sat train text`` calls; the recipe is
``train/text.yaml`` (its keys are this function's keyword arguments).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sat.errors import ConfigError, InputError

logger = logging.getLogger(__name__)


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Keyword arguments of :func:`train_text_encoder` from a YAML recipe (ConfigError if invalid)."""
    import inspect

    import yaml

    try:
        recipe = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError as err:
        raise ConfigError(f"text recipe not found: {path}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"text recipe {path} is not valid YAML: {str(err).splitlines()[0]}") from err
    if not isinstance(recipe, dict):
        raise ConfigError(f"text recipe {path} must be a mapping of train_text_encoder arguments")
    allowed = set(inspect.signature(train_text_encoder).parameters) - {"out_dir", "resume", "tree"}
    unknown = sorted(set(recipe) - allowed)
    if unknown:
        raise ConfigError(f"text recipe {path} has unknown keys {unknown}; allowed: {sorted(allowed)}")
    return recipe


def _concepts(tree: Any) -> Mapping[str, Any]:
    if tree is None:
        from sat import knowledge

        tree = knowledge.load()
    concepts = getattr(tree, "concepts", tree)
    if not isinstance(concepts, Mapping) or not concepts:
        raise InputError("tree must be a KnowledgeTree or a non-empty mapping id -> Concept")
    return concepts


def concepts_fingerprint(concepts: Mapping[str, Any]) -> str:
    """Short hash of the concepts' names, synonyms, definitions and parents (which tree a delta saw)."""
    import hashlib
    import json

    parts = [[c.id, c.name, list(c.synonyms), c.definition, [list(p) for p in c.parents]] for _, c in sorted(concepts.items())]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _trainer(out_dir: Path, *, max_steps: int, val_every: int, progress: bool):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    checkpoint = ModelCheckpoint(
        dirpath=out_dir / "checkpoints", every_n_epochs=1, save_last=True, save_top_k=1, save_on_train_epoch_end=True
    )
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        max_epochs=-1,  # max_steps decides; epoch counters survive resume
        check_val_every_n_epoch=val_every,
        num_sanity_val_steps=0,
        callbacks=[checkpoint],
        logger=CSVLogger(out_dir, name="logs"),
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=10,
        default_root_dir=out_dir,
    )


def train_text_encoder(
    *,
    out_dir: str | Path,
    resume: bool = False,
    tree: Any = None,
    base: str | None = None,
    tuned_layers: int = 1,
    max_steps: int = 1000,
    steps_per_epoch: int = 50,
    concepts_per_batch: int = 64,
    views_per_concept: int = 3,
    hard_per_seed: int = 2,
    lr: float = 2e-4,
    head_lr: float = 1e-3,
    temperature: float = 0.05,
    warmup_steps: int = 50,
    holdout_fraction: float = 0.15,
    holdout_seed: int = 0,
    seed: int = 0,
    val_every_n_epochs: int = 5,
    export_to: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Train the text delta on the knowledge tree; returns the exported delta directory.

    Writes into ``out_dir``: ``checkpoints/`` (Lightning, every epoch of
    ``steps_per_epoch`` steps, ``last.ckpt``), ``logs/`` (CSV), the frozen-layer
    state cache and ``delta/`` (the result, loadable with ``load_encoder(path)``).
    ``resume=True`` continues from ``checkpoints/last.ckpt``. ``export_to`` also
    writes the delta there (e.g. ``sat/resources/text/default``).

    Example:
        >>> train_text_encoder(out_dir="runs/text", max_steps=20)    # doctest: +SKIP
        PosixPath('runs/text/delta')
    """
    import lightning as L
    from torch.utils.data import DataLoader

    from sat.text.data import ConceptBatches, RetrievalSet, StateCache
    from sat.text.delta import save_delta
    from sat.text.module import ContrastiveTextModule
    from sat.text.pairs import build_pairs

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    last = out_dir / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise InputError(f"cannot resume: no checkpoint at {last}; run without resume first")
    start = time.time()
    L.seed_everything(seed, verbose=False)
    concepts = _concepts(tree)
    pairs = build_pairs(concepts, fraction=holdout_fraction, seed=holdout_seed)
    module = ContrastiveTextModule(
        base=base, tuned_layers=tuned_layers, lr=lr, head_lr=head_lr, temperature=temperature,
        warmup_steps=warmup_steps, max_steps=max_steps,
    )
    texts = sorted(set(pairs.texts()) | {t for _, t in pairs.held_out})
    cache = StateCache.load_or_build(module.encoder, texts, out_dir / "state_cache.safetensors")
    module.train()  # building the cache put the encoder in eval mode
    batches = ConceptBatches(
        pairs, cache, steps=steps_per_epoch, concepts=concepts_per_batch, views=views_per_concept,
        hard=hard_per_seed, seed=seed,
    )
    trainer = _trainer(out_dir, max_steps=max_steps, val_every=val_every_n_epochs, progress=progress)
    trainer.fit(
        module,
        train_dataloaders=DataLoader(batches, batch_size=None, shuffle=False),
        val_dataloaders=DataLoader(RetrievalSet(pairs, cache), batch_size=None),
        ckpt_path=str(last) if resume else None,
    )
    facts = {
        "trained_steps": int(trainer.global_step),
        "concepts": len(concepts),
        "tree_fingerprint": concepts_fingerprint(concepts),
        "training_texts": len(pairs.texts()),
        "holdout_fraction": holdout_fraction,
        "holdout_seed": holdout_seed,
        "held_out_synonyms": len(pairs.held_out),
        "val_recall@1": float(trainer.callback_metrics.get("val/recall@1", float("nan"))),
    }
    module.encoder.eval()
    delta = save_delta(module.encoder, out_dir / "delta", extra={"training": facts})
    if export_to is not None:
        save_delta(module.encoder, export_to, extra={"training": facts})
    logger.info("text encoder trained in %.0f s: %s", time.time() - start, facts)
    return delta
