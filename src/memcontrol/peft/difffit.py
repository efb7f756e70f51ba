"""DiffFit (Xie et al. 2023): fine-tune biases, norms and scale factors gamma on the residual branches.

Each transformer block gets gamma_attn1, gamma_attn2 and gamma_ff, per-channel scales (starting at 1)
of what its self-attention, cross-attention and feed-forward add to the residual stream. A gamma
scales the outputs of its branch's last Linear (a parametrization of that Linear's weight and bias):
the same function, and it folds into the Linear on merge.

The ``paper`` layout follows the authors' code, which also scales the q, k, v projections and the
output of each attention (gamma_q, gamma_k, gamma_v, gamma_fnn) and whose mask freezes only gammas.
"""

from __future__ import annotations

import torch
from diffusers.models.attention import BasicTransformerBlock
from torch import nn
from torch.nn.utils import parametrize

from memcontrol.peft.base import PeftMethod, Selector, register
from memcontrol.peft.sites import authors_sites

NORMS = (nn.GroupNorm, nn.LayerNorm)


class ChannelScale(nn.Module):
    """Parametrization of a weight or bias: each output channel times its gamma."""

    def __init__(self, channels: int, device: torch.device):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels, device=device))  # float32, as every trainable weight

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor * self.gamma.to(tensor.dtype).reshape(-1, *[1] * (tensor.dim() - 1))


def scale_outputs(linear: nn.Linear) -> nn.Parameter:
    """Multiply the outputs of ``linear`` by a new gamma (shared by its weight and bias) and return it."""
    scale = ChannelScale(linear.out_features, linear.weight.device)
    for tensor_name in ("weight", "bias"):
        if getattr(linear, tensor_name) is not None:
            parametrize.register_parametrization(linear, tensor_name, scale)
    return scale.gamma


def gamma_targets(block: BasicTransformerBlock, authors: bool) -> dict[str, nn.Linear]:
    """The Linear layer each gamma of a transformer block scales, by the gamma's name."""
    attentions = {name: getattr(block, name) for name in ("attn1", "attn2") if getattr(block, name, None) is not None}
    targets = {f"gamma_{name}": attn.to_out[0] for name, attn in attentions.items()}
    targets["gamma_ff"] = [layer for layer in block.ff.net if isinstance(layer, nn.Linear)][-1]
    if authors:  # their code also scales each attention's projections and output
        for name, attn in attentions.items():
            inner = {"gamma_q": attn.to_q, "gamma_k": attn.to_k, "gamma_v": attn.to_v, "gamma_fnn": attn.to_out[0]}
            targets.update({f"{name}.{gamma}": linear for gamma, linear in inner.items()})
    return targets


@register
class DiffFit(PeftMethod):
    name = "difffit"

    def paper_sites(self, unet: nn.Module) -> list[str]:
        return authors_sites(unet, every_up_attention=False)

    def paper_masked(self, path: str) -> bool:
        return path.rpartition(".")[2].startswith("gamma_")

    def adapt(self, unet: nn.Module, on: Selector) -> list[nn.Parameter]:
        # Existing parameters first: a gamma's parametrization renames the bias it scales.
        norms = {id(p) for layer in unet.modules() if isinstance(layer, NORMS) for p in layer.parameters()}
        params = [p for path, p in unet.named_parameters() if (path.endswith(".bias") or id(p) in norms) and on(path)]
        authors = self.options.layout == "paper"
        for path, block in list(unet.named_modules()):
            if isinstance(block, BasicTransformerBlock):
                for gamma, linear in gamma_targets(block, authors).items():
                    if on(f"{path}.{gamma}"):
                        params.append(scale_outputs(linear))
        return params
