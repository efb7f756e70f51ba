"""Baselines: train every U-Net parameter, or none (the paper's "Full" and "Freeze" rows)."""

from torch import nn

from memcontrol.peft.base import Mask, PeftMethod, register


@register
class Full(PeftMethod):
    name = "full"

    def apply(self, unet: nn.Module, mask: Mask) -> list[nn.Parameter]:
        unet.requires_grad_(True)
        return list(unet.parameters())


@register
class Freeze(PeftMethod):
    name = "freeze"

    def apply(self, unet: nn.Module, mask: Mask) -> list[nn.Parameter]:
        unet.requires_grad_(False)
        return []
