"""Baselines: train every U-Net parameter, or none (the paper's "Full" and "Freeze" rows).

Both take the sites of the ``blocks`` layout so that a mask works with them. ``full`` with a mask
trains every parameter except those inside masked-off blocks: full fine-tuning is training
everything, so what lies outside the blocks always trains (``train_outside_sites`` does not apply)
and the default mask is the paper's "Full". ``freeze`` trains nothing whatever the mask. The
authors' code masks neither, so in the ``paper`` layout they take no bits.
"""

from torch import nn

from memcontrol.peft.base import PeftMethod, Selector, register


@register
class Full(PeftMethod):
    name = "full"

    def trains_outside(self) -> bool:
        return True

    def adapt(self, unet: nn.Module, on: Selector) -> list[nn.Parameter]:
        return [p for path, p in unet.named_parameters() if on(path)]


@register
class Freeze(PeftMethod):
    name = "freeze"

    def adapt(self, unet: nn.Module, on: Selector) -> list[nn.Parameter]:
        return []
