"""Gaussian noise on the text embeddings (Somepalli et al., NeurIPS 2023: ``--rand_noise_lam`` in their code).

At each step every caption's embedding gets N(0, sigma^2) noise, drawn anew, so that a caption never
gives the U-Net exactly the same conditioning twice.
"""

from __future__ import annotations

import dataclasses

import torch

from memcontrol.config import opt
from memcontrol.data.cache import CaptionEmbeddings
from memcontrol.mitigations.base import Mitigation, MitigationConfig, register


@dataclasses.dataclass(frozen=True)
class EmbeddingNoiseConfig(MitigationConfig):
    embedding_noise_sigma: float = opt(
        0.1, "embedding_noise: std of the Gaussian noise added to caption embeddings at each step", min=0
    )


@register
class EmbeddingNoise(Mitigation):
    name = "embedding_noise"
    config_class = EmbeddingNoiseConfig
    in_default_grid = False  # not among the paper's comparisons

    def embed(self, captions: CaptionEmbeddings, ids: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        embeddings = captions.lookup(ids)
        noise = torch.randn(embeddings.shape, generator=generator) * self.options.embedding_noise_sigma
        noise[ids == captions.empty_id] = 0
        return embeddings + noise.to(embeddings.device, embeddings.dtype)
