"""SV-DIFF (Han et al. 2023): fine-tune a shift of each weight's singular values.

Every weight W of a Linear, Conv (reshaped to out x in*kh*kw), Norm (a 1 x C matrix) or Embedding
layer is decomposed once, W = U diag(sigma) V^T, and training learns delta in
W' = U diag(ReLU(sigma + delta)) V^T, delta = 0 at first: min(rows, columns) parameters per weight,
one per norm layer. That single delta rescales a whole norm weight, so norm deltas take their own
learning rate (``norm_learning_rate``, the authors' 1e-6).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from tqdm.auto import tqdm

from memcontrol.config import opt
from memcontrol.peft.base import MethodConfig, PeftMethod, Selector, register
from memcontrol.peft.sites import authors_sites

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.GroupNorm, nn.LayerNorm, nn.Embedding)
NORMS = (nn.GroupNorm, nn.LayerNorm)


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """The matrix SV-DIFF decomposes: a norm weight as 1 x C, any other as out x (everything else)."""
    return weight.reshape(1, -1) if weight.dim() == 1 else weight.reshape(len(weight), -1)


def singular_factors(weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """U, sigma, V^T of ``weight`` as a matrix: in float32 whatever its dtype, then stored in it."""
    rows, columns = as_matrix(weight).shape
    if weight.is_meta:  # parameter accounting: shapes are all it needs, and no SVD runs
        rank = min(rows, columns)
        return tuple(
            torch.empty(shape, dtype=weight.dtype, device="meta") for shape in ((rows, rank), (rank,), (rank, columns))
        )
    return tuple(t.to(weight.dtype) for t in torch.linalg.svd(as_matrix(weight.detach()).float(), full_matrices=False))


def fingerprint(weight: torch.Tensor) -> tuple:
    """Shape, dtype, sum and 64 spread values: tells a cached weight from a changed one at the cost of one sum."""
    flat = weight.detach().flatten()
    values = flat[:: max(1, len(flat) // 64)][:64]
    return tuple(weight.shape), weight.dtype, float(flat.double().sum()), tuple(values.tolist())


class SpectralShift(nn.Module):
    """Parametrization of one weight: W -> U diag(ReLU(sigma + delta)) V^T, given W's factors."""

    def __init__(self, factors: tuple[torch.Tensor, ...]):
        super().__init__()
        for name, factor in zip(("u", "sigma", "vh"), factors):
            self.register_buffer(name, factor, persistent=False)  # recomputed from the base weight, never saved
        self.delta = nn.Parameter(
            torch.zeros(len(self.sigma), device=self.sigma.device)
        )  # float32, as every trainable weight

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        # W + U diag(ReLU(sigma + delta) - sigma) V^T is the definition (W = U diag(sigma) V^T), written so
        # that it is exactly W at delta = 0 and keeps W's precision when the factors are stored in half; the
        # shift in float32 whatever their dtype, as sigma + delta in half would round small deltas away.
        sigma = self.sigma.float()
        shift = (F.relu(sigma + self.delta) - sigma).to(self.u.dtype)
        return weight + ((self.u * shift) @ self.vh).reshape(weight.shape).to(weight.dtype)


@dataclasses.dataclass(frozen=True)
class SVDiffConfig(MethodConfig):
    norm_learning_rate: float = opt(1e-6, "learning rate of SV-DIFF's norm-layer deltas (the authors' 1e-6)", min=0)


@register
class SVDiff(PeftMethod):
    name = "svdiff"
    config_class = SVDiffConfig

    def paper_sites(self, unet: nn.Module) -> list[str]:
        return authors_sites(unet, every_up_attention=False)

    def adapt(self, unet: nn.Module, on: Selector) -> list[nn.Parameter]:
        layers = [(p, m) for p, m in unet.named_modules() if isinstance(m, LAYERS) and m.weight is not None and on(p)]
        quiet = not self.progress or all(layer.weight.is_meta for _, layer in layers)  # accounting runs no SVD
        deltas = []
        for path, layer in tqdm(layers, desc=f"{self.name}: SVD of weights", unit="weight", disable=quiet, leave=False):
            shift = SpectralShift(self._factors(path, layer.weight))
            parametrize.register_parametrization(layer, "weight", shift)
            deltas.append(shift.delta)
        return deltas

    def _factors(self, path: str, weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The SVD of the weight at ``path``: from the cache while that weight is unchanged, else computed (and cached).

        Cached copies wait in CPU memory (about the U-Net's size for every site on), leaving the accelerator's to
        training.
        """
        if self.cache is None or weight.is_meta:
            return singular_factors(weight)
        key, cached = fingerprint(weight), self.cache.get(path)
        if cached is None or cached[0] != key:
            cached = key, tuple(t.to("cpu", copy=True) for t in singular_factors(weight))
            self.cache[path] = cached
        return tuple(t.to(weight.device, copy=True) for t in cached[1])  # a copy: training may cast the module's own

    def param_groups(self, unet: nn.Module, params: list[nn.Parameter], learning_rate: float) -> list[dict]:
        norm_deltas = {
            id(shift.delta)
            for layer in unet.modules()
            if isinstance(layer, NORMS)
            for shift in layer.modules()
            if isinstance(shift, SpectralShift)
        }
        groups = [
            {"params": [p for p in params if id(p) not in norm_deltas], "lr": learning_rate},
            {"params": [p for p in params if id(p) in norm_deltas], "lr": self.options.norm_learning_rate},
        ]
        return [g for g in groups if g["params"]]
