"""How many parameters a method trains under a mask, counted from the architecture on the meta device.

Nothing is allocated and no SVD runs (a meta weight gives SV-DIFF its shapes only), so SD v1.5's
U-Net takes seconds. The counts come from the same ``apply`` that training runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import UNet2DConditionModel

from memcontrol.errors import UserError
from memcontrol.models.architectures import build_unet
from memcontrol.models.pipeline import resolve_model_path
from memcontrol.peft.base import PeftMethod


def meta_unet(
    pretrained_model_name_or_path: str | None = None, architecture: str | None = None
) -> UNet2DConditionModel:
    """The U-Net of a named architecture, else of a diffusers folder (default: the built-in model), without weights."""
    if architecture:
        return build_unet(architecture)
    path = resolve_model_path(pretrained_model_name_or_path)
    try:
        config = UNet2DConditionModel.load_config(path, subfolder="unet", local_files_only=True)
    except (OSError, ValueError) as e:
        raise UserError(
            f"--pretrained_model_name_or_path {path}: no readable unet/config.json ({type(e).__name__})"
        ) from None
    with torch.device("meta"):
        return UNet2DConditionModel.from_config(config)


def account(unet: torch.nn.Module, method: PeftMethod, mask: Sequence[int] | None = None) -> dict:
    """Adapt ``unet`` in place (pass a fresh one) and count: per site, in all, of the base U-Net's total.

    Returns ``{"sites": [{"site", "bit", "trainable"}], "trainable", "total", "fraction"}``; a site's
    count is what trains inside it.
    """
    total = sum(p.numel() for p in unet.parameters())
    mask = method.check_mask(unet, mask)
    sites = method.sites(unet)
    method.apply(unet, mask)
    trainable = {path: p.numel() for path, p in unet.named_parameters() if p.requires_grad}
    return {
        "sites": [
            {
                "site": site,
                "bit": bit,
                "trainable": sum(n for path, n in trainable.items() if path.startswith(site + ".")),
            }
            for site, bit in zip(sites, mask)
        ],
        "trainable": sum(trainable.values()),
        "total": total,
        "fraction": sum(trainable.values()) / total,
    }


def format_accounting(report: dict) -> str:
    """The report as a table for a terminal."""
    rows = [f"{s['bit']:>3}  {s['trainable']:>13,}  {s['site']}" for s in report["sites"]]
    return "\n".join(
        [
            f"{'bit':>3}  {'trainable':>13}  site",
            *(rows or ["  (no sites: this method takes no mask in this layout)"]),
            f"trainable {report['trainable']:,} of {report['total']:,} U-Net parameters "
            f"({100 * report['fraction']:.4f}%)",
        ]
    )
