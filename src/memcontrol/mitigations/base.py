"""The interface every memorization mitigation implements, its options, and the registry that finds them by name.

A mitigation changes what one training step sees, never the engine's loop: the captions of the run
(``setup``), their embeddings at each step (``embed``), and which samples count in the loss (``keep``).
Each hook's default leaves the step as it is, so a mitigation overrides only what it changes, and
``none`` is the plain run: cached embeddings, bit-for-bit the same results. As in memcontrol.peft,
each mitigation lives in its own module and registers itself.

Mitigations act on captions only: the empty caption that guidance dropout puts in stays as it is,
since sampling uses it unchanged as the unconditional input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from memcontrol.config import TrainConfig, options_from
from memcontrol.data.cache import CaptionEmbeddings
from memcontrol.errors import UserError
from memcontrol.registry import Registry


@dataclasses.dataclass(frozen=True)
class MitigationOptions:
    """What a mitigation is built with. The defaults are TrainConfig's, so that the library and the flags agree."""

    rwa_probability: float = TrainConfig.rwa_probability
    rwa_words: int = TrainConfig.rwa_words
    rwa_fixed: bool = TrainConfig.rwa_fixed
    threshold: float | None = TrainConfig.threshold
    threshold_quantile: float | None = TrainConfig.threshold_quantile
    embedding_noise_sigma: float = TrainConfig.embedding_noise_sigma
    caption_variants: str | None = TrainConfig.caption_variants

    def __post_init__(self):
        if not 0 <= self.rwa_probability <= 1:
            raise UserError(f"--rwa_probability must lie in [0, 1], got {self.rwa_probability}")
        if self.rwa_words < 1:
            raise UserError(f"--rwa_words must be at least 1, got {self.rwa_words}")
        if self.threshold_quantile is not None and not 0 <= self.threshold_quantile <= 1:
            raise UserError(f"--threshold_quantile must lie in [0, 1], got {self.threshold_quantile}")
        if self.embedding_noise_sigma < 0:
            raise UserError(f"--embedding_noise_sigma must not be negative, got {self.embedding_noise_sigma}")

    @classmethod
    def from_config(cls, config: TrainConfig | Mapping[str, Any]) -> MitigationOptions:
        """The options among ``config``'s values: a TrainConfig, or the ``config`` a manifest saved."""
        return options_from(cls, config)


class Mitigation:
    """Changes the captions a training step is conditioned on, or the samples its loss counts."""

    name: ClassVar[str] = ""

    def __init__(self, options: MitigationOptions | None = None):
        self.options = options or MitigationOptions()

    def setup(self, captions: CaptionEmbeddings, generator: torch.Generator) -> CaptionEmbeddings:
        """Once before training: the captions of the run, one per training example (``captions`` is left as it is)."""
        return captions

    def embed(self, captions: CaptionEmbeddings, ids: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The conditioning of one batch, whose caption ids (``captions.empty_id`` where dropped) are ``ids``."""
        return captions.lookup(ids)

    def keep(
        self, model: nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor, prediction: torch.Tensor, captions: CaptionEmbeddings
    ) -> torch.Tensor | None:
        """Which samples of the batch count in the loss (a boolean per sample); None: all of them."""
        return None


MITIGATIONS: Registry[type[Mitigation]] = Registry("mitigation", "--mitigation")
register = MITIGATIONS.register
mitigation_names = MITIGATIONS.names


@register
class NoMitigation(Mitigation):
    """The plain run."""

    name = "none"


def get_mitigation(name: str, options: MitigationOptions | None = None) -> Mitigation:
    return MITIGATIONS.get(name)(options)
