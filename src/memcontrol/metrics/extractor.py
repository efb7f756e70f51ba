"""The feature extractor interface (images (N, 3, H, W) in [0, 1] -> (N, D) float features), which the extractors of
features.py and the domain encoder (domain.py) implement."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
import torch.nn.functional as F

from memcontrol.errors import UserError
from memcontrol.registry import Registry


class FeatureExtractor(ABC):
    """Subclasses set ``name`` and ``num_features`` (the attribute torchmetrics' FID also expects) and embed one
    batch."""

    name: ClassVar[str]
    num_features: int

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)

    @classmethod
    def load(cls, device: str | torch.device, weights: str | os.PathLike | None) -> FeatureExtractor:
        """The extractor on ``device``, from its ``weights`` file where it takes one (``--feature_weights``)."""
        if weights is not None:
            raise UserError(f"feature extractor {cls.name!r}: takes no weights path (got {weights})")
        return cls(device)

    @abstractmethod
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """One batch, float32 in [0, 1] on ``self.device`` -> (n, num_features)."""

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Features of any number of images, in batches; float32 on the CPU."""
        out = [
            self.embed(images[i : i + batch_size].to(self.device, torch.float32)).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(out) if out else torch.empty(0, self.num_features)


# memcontrol.metrics.features registers them all: its own and DomainFeatures (memcontrol.metrics.domain).
EXTRACTORS: Registry[type[FeatureExtractor]] = Registry("feature extractor", "--feature_extractor")


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
