"""The flags and model config that the training benchmarks (train_throughput.py, memory_flops.py) share."""

from __future__ import annotations

import argparse

from memcontrol.config import ModelConfig


def add_training_flags(parser: argparse.ArgumentParser) -> None:
    """Which model, data, resolution and precision a benchmark trains with."""
    parser.add_argument("--pretrained_model_name_or_path", default=None, help="default: the built-in base model")
    parser.add_argument("--train_data_dir", default=None, help="default: the built-in data")
    parser.add_argument(
        "--max_train_samples", type=int, default=None, help="distinct training images (all are encoded up front)"
    )
    parser.add_argument("--resolution", type=int, default=None, help="default: the model's native size")
    parser.add_argument("--mixed_precision", default="no", choices=("no", "fp16", "bf16"))
    parser.add_argument("--gradient_checkpointing", action="store_true")


def model_config(args: argparse.Namespace) -> ModelConfig:
    return ModelConfig(
        pretrained_model_name_or_path=args.pretrained_model_name_or_path, mixed_precision=args.mixed_precision
    )
