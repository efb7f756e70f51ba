"""U-Net architecture configs shipped with memcontrol, for parameter accounting without weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from memcontrol.errors import UserError

_HERE = Path(__file__).parent
ARCHITECTURES = ("sd15", "tiny")


def unet_config(architecture: str) -> dict:
    if architecture not in ARCHITECTURES:
        raise UserError(f"--architecture: unknown {architecture!r}; expected one of {', '.join(ARCHITECTURES)}")
    return json.loads((_HERE / f"{architecture}.json").read_text())


def build_unet(architecture: str, device: str | torch.device = "meta") -> UNet2DConditionModel:
    """Build the U-Net of a named architecture; on the meta device it takes no memory and no time."""
    with torch.device(device):
        return UNet2DConditionModel.from_config(unet_config(architecture))
