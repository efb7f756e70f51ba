"""Gaussian noise on the text embeddings (Somepalli et al., NeurIPS 2023: ``--rand_noise_lam`` in their code).

At each step every caption's embedding gets N(0, sigma^2) noise, drawn anew, so that a caption never
gives the U-Net exactly the same conditioning twice.
"""

from __future__ import annotations

import torch

from memcontrol.data.cache import CaptionEmbeddings
from memcontrol.mitigations.base import Mitigation, register


@register
class EmbeddingNoise(Mitigation):
    name = "embedding_noise"

    def embed(self, captions: CaptionEmbeddings, ids: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        embeddings = captions.lookup(ids)
        noise = torch.randn(embeddings.shape, generator=generator) * self.options.embedding_noise_sigma
        noise[ids == captions.empty_id] = 0
        return embeddings + noise.to(embeddings.device, embeddings.dtype)
