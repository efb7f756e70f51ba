"""``memcontrol sites``: a method's sites and what it trains under a mask, counted on the meta device."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from memcontrol.config import ModelConfig, TrainConfig, build
from memcontrol.models.architectures import ARCHITECTURES


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    sites = command(
        "sites",
        "list a method's sites and count what it trains under a mask (on the meta device: no weights)",
        _cmd_sites,
        ModelConfig,
        TrainConfig,
    )
    sites.add_argument(
        "--architecture", choices=ARCHITECTURES, help="a shipped U-Net architecture instead of a model folder"
    )
    sites.add_argument("--json", action="store_true", help="print one JSON object: sites, trainable, total, fraction")


def _cmd_sites(args: argparse.Namespace) -> None:
    from memcontrol.peft import get_method
    from memcontrol.peft.accounting import account, format_accounting, meta_unet
    from memcontrol.peft.mask_file import resolve_mask

    model, train = build((ModelConfig, TrainConfig), args)
    method = get_method(train.method, train.plugin_options)
    unet = meta_unet(model.pretrained_model_name_or_path, args.architecture)
    report = account(unet, method, resolve_mask(train.mask, method, unet))
    print(json.dumps(report) if args.json else format_accounting(report))
