"""LoRA (Hu et al. 2021) through the peft library, on the attention projections of the masked sites.

Each of q, k, v and out of attn1 and attn2 gets W + B A with rank ``lora_rank`` (alpha = rank, so
scale 1) and B = 0 at first. Nothing is added outside the transformer blocks. The authors' code puts
LoRA on every attention without a mask, which is what the ``paper`` layout does.
"""

from __future__ import annotations

import dataclasses

from diffusers.models.attention_processor import Attention
from torch import nn

from memcontrol.config import opt
from memcontrol.errors import UserError
from memcontrol.peft.base import MethodConfig, PeftMethod, Selector, register

PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")


@dataclasses.dataclass(frozen=True)
class LoRAConfig(MethodConfig):
    lora_rank: int = opt(4, "rank of the LoRA matrices (--method lora)", min=1)


@register
class LoRA(PeftMethod):
    name = "lora"
    config_class = LoRAConfig
    in_default_grid = False  # not among the paper's methods

    def adapt(self, unet: nn.Module, on: Selector) -> list[nn.Parameter]:
        try:
            from peft import LoraConfig
        except ImportError:
            raise UserError("--method lora needs peft, a memcontrol dependency: pip install peft") from None
        targets = [
            f"{path}.{projection}"
            for path, layer in unet.named_modules()
            if isinstance(layer, Attention)
            for projection in PROJECTIONS
            if on(f"{path}.{projection}")
        ]
        if not targets:  # peft refuses an empty target list
            return []
        rank = self.options.lora_rank
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=targets))
        return [p for path, p in unet.named_parameters() if ".lora_" in path]

    def merge(self, unet: nn.Module) -> nn.Module:
        if getattr(unet, "peft_config", None):
            unet.fuse_lora()
            unet.unload_lora()
        return unet
