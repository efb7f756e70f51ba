"""Attention tuning: fine-tune the attention layers themselves (q, k, v and out of attn1 and attn2).

The ``paper`` layout follows the authors' code: every parameter of every Transformer2DModel block
trains ("attentions" in its name), and a bit freezes only the attn1/attn2 parameters of its block's
transformer_blocks (16 bits).
"""

from __future__ import annotations

from diffusers.models.attention_processor import Attention
from torch import nn

from memcontrol.peft.base import PeftMethod, Selector, register
from memcontrol.peft.sites import authors_sites


@register
class AttentionTuning(PeftMethod):
    name = "attention"

    def paper_sites(self, unet: nn.Module) -> list[str]:
        return authors_sites(unet, every_up_attention=True)

    def paper_masked(self, path: str) -> bool:
        return "attn" in path

    def adapt(self, unet: nn.Module, on: Selector) -> list[nn.Parameter]:
        if self.options.layout == "paper":
            candidates = [(path, p) for path, p in unet.named_parameters() if "attentions" in path]
        else:
            candidates = [
                (f"{path}.{name}", p)
                for path, layer in unet.named_modules()
                if isinstance(layer, Attention)
                for name, p in layer.named_parameters()
            ]
        return [p for path, p in candidates if on(path)]
