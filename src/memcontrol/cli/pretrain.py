"""``memcontrol pretrain``: the built-in base model, pretrained on general-domain data."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from memcontrol.config import ModelConfig, TrainConfig, build


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    from memcontrol.pretrain.run import PretrainConfig

    command(
        "pretrain",
        "pretrain the built-in base model on general-domain data",
        _cmd_pretrain,
        ModelConfig,
        TrainConfig,
        PretrainConfig,
        output="base-model",
    )


def _cmd_pretrain(args: argparse.Namespace) -> None:
    from memcontrol.pretrain.run import PRETRAIN_DEFAULTS, PretrainConfig, pretrain
    from memcontrol.runtime import make_accelerator

    model, train, cfg = build((ModelConfig, TrainConfig, PretrainConfig), args, defaults=PRETRAIN_DEFAULTS)
    report = pretrain(args.output_dir, cfg, train, make_accelerator(model))
    print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=2))
