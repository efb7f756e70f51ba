"""Fixtures of the method tests: the tiny U-Net, fresh and identical on every call, and inputs for it."""

from __future__ import annotations

import pytest
import torch

from memcontrol.models.architectures import build_unet


@pytest.fixture
def tiny_unet():
    """A factory: the same randomly initialised tiny U-Net (7 sites) each time, so that two of them share base
    weights."""

    def build():
        torch.manual_seed(0)
        return build_unet("tiny", device="cpu").eval()

    return build


@pytest.fixture
def unet_inputs():
    """(noisy latents, timesteps, caption embeddings) for a batch of two."""
    generator = torch.Generator().manual_seed(1)
    return (
        torch.randn(2, 4, 16, 16, generator=generator),
        torch.tensor([10, 500]),
        torch.randn(2, 5, 64, generator=generator),
    )


@pytest.fixture
def sd15():
    """SD v1.5's U-Net on the meta device: shapes only, built in a fraction of a second."""
    return lambda: build_unet("sd15")
