"""``memcontrol evaluate`` (a memcontrol-trained model on held-out data), ``memcontrol audit`` (memorization of any
model) and ``memcontrol train-encoder`` (the shipped domain encoder)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from memcontrol.config import ModelConfig, build

HEADLINE_METRICS = (
    "fid",
    "amd",
    "alignment",
    "extracted",
    "extracted_train",
    "attacked_train",
    "dmem_mean",
    "dmem_max",
)


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    from memcontrol.metrics.builtin_encoder import BUILTIN_ENCODER
    from memcontrol.metrics.evaluate import EvalConfig
    from memcontrol.metrics.setup import FeatureConfig

    evaluate = command(
        "evaluate",
        "FID, AMD, alignment, extraction attack and d_mem of a fine-tuned model on held-out data",
        _cmd_metrics,
        ModelConfig,
        FeatureConfig,
        EvalConfig,
        output="evaluate",
    )
    evaluate.add_argument("--model_dir", required=True, help="output folder of `memcontrol train`")
    audit = command(
        "audit",
        "memorization metrics of any fine-tuned diffusers model against its training data",
        _cmd_metrics,
        ModelConfig,
        FeatureConfig,
        EvalConfig,
        output="audit",
    )
    audit.add_argument(
        "--model_dir", required=True, help="a diffusers folder or the output folder of `memcontrol train`"
    )
    audit.add_argument("--train_data_dir", help="the model's training imagefolder; default: builtin:digits")
    encoder = command(
        "train-encoder", "rebuild the shipped built-in domain encoder (features and class judge)", _cmd_train_encoder
    )
    encoder.add_argument("--output", default=str(BUILTIN_ENCODER), help="where the encoder's safetensors file goes")
    encoder.add_argument("--steps", type=int, default=1500, help="optimisation steps")


def _cmd_metrics(args: argparse.Namespace) -> None:
    """`evaluate` (a memcontrol-trained model on held-out data) and `audit` (memorization of any model)."""
    from memcontrol.metrics.evaluate import EvalConfig
    from memcontrol.metrics.run import run_audit, run_evaluate
    from memcontrol.metrics.setup import FeatureConfig

    model, features, settings = build((ModelConfig, FeatureConfig, EvalConfig), args)
    if args.command == "evaluate":
        metrics = run_evaluate(args.model_dir, args.output_dir, model, features, settings)
    else:
        metrics = run_audit(args.model_dir, args.train_data_dir, args.output_dir, model, features, settings)
    print(json.dumps({k: metrics[k] for k in HEADLINE_METRICS if k in metrics}, indent=2))
    print(f"metrics.json and figures written to {args.output_dir}")


def _cmd_train_encoder(args: argparse.Namespace) -> None:
    from memcontrol.metrics.builtin_encoder import train_builtin_encoder

    print(json.dumps(train_builtin_encoder(args.output, steps=args.steps), indent=2))
