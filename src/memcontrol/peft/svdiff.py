"""SV-DIFF (Han et al. 2023): fine-tune a shift of each weight's singular values.

Every weight W of a Linear, Conv (reshaped to out x in*kh*kw), Norm (a 1 x C matrix) or Embedding
layer is decomposed once, W = U diag(sigma) V^T, and training learns delta in
W' = U diag(ReLU(sigma + delta)) V^T, delta = 0 at first: min(rows, columns) parameters per weight,
one per norm layer. That single delta rescales a whole norm weight, so norm deltas take their own
learning rate (``norm_learning_rate``, the authors' 1e-6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from memcontrol.peft.base import PeftMethod, Selector, register
from memcontrol.peft.sites import authors_sites

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.GroupNorm, nn.LayerNorm, nn.Embedding)
NORMS = (nn.GroupNorm, nn.LayerNorm)


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """The matrix SV-DIFF decomposes: a norm weight as 1 x C, any other as out x (everything else)."""
    return weight.reshape(1, -1) if weight.dim() == 1 else weight.reshape(len(weight), -1)


class SpectralShift(nn.Module):
    """Parametrization of one weight: W -> U diag(ReLU(sigma + delta)) V^T."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        rows, columns = as_matrix(weight).shape
        rank = min(rows, columns)
        if weight.is_meta:  # parameter accounting: shapes are all it needs, and no SVD runs
            shapes = ((rows, rank), (rank,), (rank, columns))
            factors = [torch.empty(shape, dtype=weight.dtype, device="meta") for shape in shapes]
        else:  # in float32 whatever the frozen dtype, then stored in it
            factors = [t.to(weight.dtype) for t in torch.linalg.svd(as_matrix(weight.detach()).float(), full_matrices=False)]
        for name, factor in zip(("u", "sigma", "vh"), factors):
            self.register_buffer(name, factor, persistent=False)  # recomputed from the base weight, never saved
        self.delta = nn.Parameter(torch.zeros(rank, device=weight.device))  # float32, as every trainable weight

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        # W + U diag(ReLU(sigma + delta) - sigma) V^T is the definition (W = U diag(sigma) V^T), written so
        # that it is exactly W at delta = 0 and keeps W's precision when the factors are stored in half.
        shift = F.relu(self.sigma + self.delta.to(self.sigma.dtype)) - self.sigma
        return weight + ((self.u * shift) @ self.vh).reshape(weight.shape).to(weight.dtype)


@register
class SVDiff(PeftMethod):
    name = "svdiff"

    def paper_sites(self, unet: nn.Module) -> list[str]:
        return authors_sites(unet, every_up_attention=False)

    def adapt(self, unet: nn.Module, on: Selector) -> list[nn.Parameter]:
        deltas = []
        for path, layer in list(unet.named_modules()):
            if isinstance(layer, LAYERS) and layer.weight is not None and on(path):
                shift = SpectralShift(layer.weight)
                parametrize.register_parametrization(layer, "weight", shift)
                deltas.append(shift.delta)
        return deltas

    def param_groups(self, unet: nn.Module, params: list[nn.Parameter], learning_rate: float) -> list[dict]:
        norm_deltas = {
            id(shift.delta) for layer in unet.modules() if isinstance(layer, NORMS)
            for shift in layer.modules() if isinstance(shift, SpectralShift)
        }
        groups = [
            {"params": [p for p in params if id(p) not in norm_deltas], "lr": learning_rate},
            {"params": [p for p in params if id(p) in norm_deltas], "lr": self.options.norm_learning_rate},
        ]
        return [g for g in groups if g["params"]]
