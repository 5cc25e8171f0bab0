"""``sat train``: stage 1 (``text``, contrastive text pretraining), stage 2 (``seg``) and the
prompt head for points and boxes (``prompts``, over a frozen stage-2 model).

Examples::

    sat train text train/text.yaml --out runs/text
    sat train seg train/tiny-cpu.yaml
    sat train seg train/tiny-cpu.yaml --resume
    sat train seg train/tiny-cpu.yaml trainer.max_steps=50 data.batch_size=1
    sat train seg train/tiny-cpu.yaml --resume --set trainer.max_steps=800
    sat train prompts train/prompts-tiny-cpu.yaml
"""

from __future__ import annotations

import argparse

__all__ = ["add_parser"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``sat train {seg,text}`` to the ``sat`` command."""
    parser = subparsers.add_parser(
        "train", help="train SAT: text encoder (stage 1) or segmentation (stage 2)",
        description="Train SAT. Stage 1 `text` pretrains the text encoder on the knowledge tree; "
        "stage 2 `seg` trains segmentation with the text encoder frozen (LightningCLI recipe).",
    )
    stages = parser.add_subparsers(dest="stage", metavar="STAGE")

    seg = stages.add_parser(
        "seg", help="segmentation training from a recipe YAML (train/*.yaml)",
        description="Run a LightningCLI segmentation recipe. Checkpoints go to the recipe's "
        "ModelCheckpoint dirpath; --resume continues exactly from its last.ckpt.",
    )
    seg.add_argument("recipe", help="recipe YAML, e.g. train/tiny-cpu.yaml")
    seg.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                     help="recipe overrides with dotted names, e.g. trainer.max_steps=20; "
                     "config=OVERLAY.yaml merges a partial recipe over it (train/window-ablation.yaml)")
    seg.add_argument("-s", "--set", action="append", default=[], metavar="KEY=VALUE", dest="more",
                     help="one more override (repeatable; may follow other options)")
    seg.add_argument("--resume", action="store_true", help="continue from the recipe's last checkpoint")
    seg.add_argument("--export", metavar="DIR", help="also export the final model (safetensors + config.json)")
    seg.set_defaults(func=_seg)

    prompts = stages.add_parser(
        "prompts", help="prompt-head training (points and boxes) over a frozen model, from a recipe YAML",
        description="Run a LightningCLI recipe of sat.training.prompted.PromptTraining: the head that "
        "reads clicks and boxes is trained with simulated users while the segmentation network stays frozen.",
    )
    prompts.add_argument("recipe", help="recipe YAML, e.g. train/prompts-tiny-cpu.yaml")
    prompts.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides with dotted names")
    prompts.add_argument("-s", "--set", action="append", default=[], metavar="KEY=VALUE", dest="more",
                         help="one more override (repeatable)")
    prompts.add_argument("--resume", action="store_true", help="continue from the recipe's last checkpoint")
    prompts.add_argument("--export", metavar="DIR", help="also export the head (safetensors + config.json)")
    prompts.set_defaults(func=_seg, module="prompts")

    text = stages.add_parser(
        "text", help="knowledge-enhanced contrastive pretraining of the text encoder",
        description="Train the text-encoder delta on the knowledge tree (recipe keys are the "
        "arguments of sat.text.train.train_text_encoder).",
    )
    text.add_argument("recipe", help="recipe YAML, e.g. train/text.yaml")
    text.add_argument("--out", default="runs/text", help="run folder (checkpoints, logs, delta)")
    text.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.ckpt")
    text.add_argument("--export-to", metavar="DIR", help="also write the delta there (e.g. sat/resources/text/default)")
    text.set_defaults(func=_text)

    parser.set_defaults(func=lambda args: _usage(parser))
    return parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _seg(args: argparse.Namespace) -> int:
    from sat.training.run import train_segmentation

    overrides = [*args.overrides, *args.more]
    module = None
    if getattr(args, "module", None) == "prompts":
        from sat.training.prompted import PromptTraining

        module = PromptTraining
    cli = train_segmentation(args.recipe, overrides=overrides, resume=args.resume, export=args.export, module=module)
    trainer = cli.trainer
    if trainer.is_global_zero:
        print(f"trained {trainer.global_step} steps; checkpoints in {trainer.default_root_dir}")
        if args.export:
            print(f"exported to {args.export}")
    return 0


def _text(args: argparse.Namespace) -> int:
    from sat.text.train import load_recipe, train_text_encoder

    kwargs = load_recipe(args.recipe)
    if args.export_to:
        kwargs["export_to"] = args.export_to
    out = train_text_encoder(out_dir=args.out, resume=args.resume, **kwargs)
    print(f"text encoder delta written to {out}")
    return 0
