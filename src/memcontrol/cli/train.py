"""``memcontrol train``: fine-tune a base model with a method and mask."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from memcontrol.config import DataConfig, ModelConfig, SampleConfig, TrainConfig, build


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    command(
        "train",
        "fine-tune a base model with a method and mask",
        _cmd_train,
        ModelConfig,
        DataConfig,
        TrainConfig,
        SampleConfig,
        output="train",
    )


def _cmd_train(args: argparse.Namespace) -> None:
    from memcontrol.peft.mask_file import read_searched_mask
    from memcontrol.runtime import is_main_process
    from memcontrol.train.run import run_train

    classes = (ModelConfig, DataConfig, TrainConfig, SampleConfig)
    model, data, train, sample = build(classes, args)
    searched = read_searched_mask(train.mask)
    if (
        searched and searched.learning_rate is not None
    ):  # searched with the mask; --learning_rate (flag or YAML) still wins
        model, data, train, sample = build(classes, args, defaults={"learning_rate": searched.learning_rate})
    summary = run_train(model, data, train, sample, args.output_dir)
    if is_main_process():  # under accelerate launch: one report, not one per process
        print(json.dumps(summary, indent=2))
        print(f"trained weights, manifest and sample grid written to {args.output_dir}")
