"""Where a mask acts: the Transformer2DModel blocks of a U-Net, found from the model itself."""

from __future__ import annotations

from diffusers import Transformer2DModel
from torch import nn

# The order a UNet2DConditionModel runs its blocks in, which is the order of the mask's bits.
_FLOW = ("down_blocks", "mid_block", "up_blocks")


def transformer_sites(unet: nn.Module) -> list[str]:
    """Module paths of the Transformer2DModel blocks, down, mid then up (16 on SD v1.5)."""
    paths = [path for path, module in unet.named_modules() if isinstance(module, Transformer2DModel)]
    return sorted(paths, key=_stage)  # stable: named_modules order within a stage


def _stage(path: str) -> int:
    head = path.split(".")[0]
    return _FLOW.index(head) if head in _FLOW else len(_FLOW)


def authors_sites(unet: nn.Module, every_up_attention: bool) -> list[str]:
    """The sites of the authors' masks: the ``transformer_blocks`` of each block, in the same order.

    Their 13-bit masks (SV-DIFF, DiffFit) leave out each up block's last attention
    (up_blocks.{1,2,3}.attentions.2 on SD v1.5); their 16-bit one (attention tuning) has them all.
    """
    sites = transformer_sites(unet)
    if not every_up_attention:
        last = {path.rpartition(".")[0]: path for path in sites if path.startswith("up_blocks.")}
        sites = [path for path in sites if path not in last.values()]
    return [f"{path}.transformer_blocks" for path in sites]
