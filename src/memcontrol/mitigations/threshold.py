"""Threshold mitigation (Wen et al., ICLR 2024, github.com/YuxinWenRick/diffusion_memorization).

A memorised caption pulls the model's prediction far from the unconditional one. Per sample, an extra
no-grad unconditional pass gives the norm ||eps(x_t, c) - eps(x_t, "")|| (of the raw model outputs,
flattened, as their code computes it); the samples at or above the threshold are left out of the
loss, and the engine skips a batch with none left. The threshold is a fixed value (``--threshold``) or
a quantile of each batch's norms (``--threshold_quantile``).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from memcontrol.config import opt
from memcontrol.data.cache import CaptionEmbeddings
from memcontrol.errors import UserError
from memcontrol.mitigations.base import Mitigation, MitigationConfig, register


def conditional_norms(
    model: nn.Module,
    noisy: torch.Tensor,
    timesteps: torch.Tensor,
    prediction: torch.Tensor,
    captions: CaptionEmbeddings,
) -> torch.Tensor:
    """||prediction - model(noisy, timesteps, "")|| per sample, without gradients."""
    with torch.no_grad():
        empty = captions.lookup(torch.full((len(noisy),), captions.empty_id))
        unconditional = model(noisy, timesteps, empty, return_dict=False)[0]
        return (prediction.detach().float() - unconditional.float()).flatten(1).norm(dim=1)


def below_threshold(norms: torch.Tensor, threshold: float | None = None, quantile: float | None = None) -> torch.Tensor:
    """The samples to keep: norms below ``threshold``, or below the ``quantile`` of ``norms`` when that is given."""
    limit = torch.quantile(norms, quantile) if quantile is not None else threshold
    return norms < limit


@dataclasses.dataclass(frozen=True)
class ThresholdConfig(MitigationConfig):
    threshold: float | None = opt(
        None,
        "threshold: leave out of the loss the samples whose text-conditional noise norm is at least this (Wen et al.)",
        min=0,
    )
    threshold_quantile: float | None = opt(
        None,
        "threshold: instead of --threshold, this quantile of the norms in each forward pass's batch, e.g. 0.9",
        min=0,
        max=1,
    )


@register
class ThresholdMitigation(Mitigation):
    name = "threshold"
    config_class = ThresholdConfig

    def __init__(self, options: ThresholdConfig | None = None):
        super().__init__(options)
        if (self.options.threshold is None) == (self.options.threshold_quantile is None):
            raise UserError("--mitigation threshold needs either --threshold or --threshold_quantile (one of them)")

    def keep(
        self,
        model: nn.Module,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        prediction: torch.Tensor,
        captions: CaptionEmbeddings,
    ) -> torch.Tensor:
        norms = conditional_norms(model, noisy, timesteps, prediction, captions)
        return below_threshold(norms, self.options.threshold, self.options.threshold_quantile)
