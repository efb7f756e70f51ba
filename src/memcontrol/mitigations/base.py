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
from typing import Any, ClassVar

import torch
from torch import nn

from memcontrol.config import check_fields
from memcontrol.data.cache import CaptionEmbeddings
from memcontrol.registry import Registry


@dataclasses.dataclass(frozen=True)
class MitigationConfig:
    """What a mitigation is built with: none by default; a mitigation with options extends this in its own module."""

    def __post_init__(self):
        check_fields(self)


class Mitigation:
    """Changes the captions a training step is conditioned on, or the samples its loss counts."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[MitigationConfig]] = MitigationConfig  # its options: flags and YAML keys
    # Whether the benchmark's grid has it by default (`memcontrol benchmark --mitigations`).
    in_default_grid: ClassVar[bool] = True

    def __init__(self, options: MitigationConfig | None = None):
        self.options = options or self.config_class()

    def setup(self, captions: CaptionEmbeddings, generator: torch.Generator) -> CaptionEmbeddings:
        """Once before training: the captions of the run, one per training example (``captions`` is left as it is)."""
        return captions

    def embed(self, captions: CaptionEmbeddings, ids: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The conditioning of one batch, whose caption ids (``captions.empty_id`` where dropped) are ``ids``."""
        return captions.lookup(ids)

    def keep(
        self,
        model: nn.Module,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        prediction: torch.Tensor,
        captions: CaptionEmbeddings,
    ) -> torch.Tensor | None:
        """Which samples of the batch count in the loss (a boolean per sample); None: all of them."""
        return None


MITIGATIONS: Registry[type[Mitigation]] = Registry("mitigation", "--mitigation", MitigationConfig)
register = MITIGATIONS.register
mitigation_names = MITIGATIONS.names


@register
class NoMitigation(Mitigation):
    """The plain run."""

    name = "none"


def get_mitigation(name: str, options: Any = None) -> Mitigation:
    """Mitigation ``name`` with its options from ``options``: its config, or option values by name (a TrainConfig's
    ``plugin_options``, a manifest's ``config``; defaults for absent ones), see ``Registry.options``."""
    return MITIGATIONS.get(name)(MITIGATIONS.options(name, options))
