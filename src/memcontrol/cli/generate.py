"""``memcontrol generate``: images from a base or fine-tuned model."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from memcontrol.config import DataConfig, ModelConfig, SampleConfig, build


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    gen = command(
        "generate",
        "generate images with a base or fine-tuned model",
        _cmd_generate,
        ModelConfig,
        DataConfig,
        SampleConfig,
        output="generate",
    )
    gen.add_argument("--model_dir", help="output folder of `memcontrol train`; default: the base model itself")
    gen.add_argument(
        "--prompt", action="append", help="a prompt (repeatable); default: validation captions of the data"
    )
    gen.add_argument("--num_images", type=int, default=16, help="images to generate")
    gen.add_argument("--seed", type=int, default=0, help="image i uses seed + i")


def _cmd_generate(args: argparse.Namespace) -> None:
    from memcontrol.sampling.run import run_generate

    model, data, sample = build((ModelConfig, DataConfig, SampleConfig), args)
    grid = run_generate(model, data, sample, args.output_dir, args.model_dir, args.prompt, args.num_images, args.seed)
    print(f"images and grid written to {grid.parent}")
