"""Does the base model follow its captions? The built-in scenario is meaningless otherwise.

Prompts name a quarter of the image ("a large bright circle top left"); a sample is right when
that quarter holds more of the image's brightness than any other quarter. Chance is 25%.
"""

from __future__ import annotations

import torch
from diffusers import StableDiffusionPipeline

from memcontrol.sampling import generate

QUARTERS = ("top left", "top right", "bottom left", "bottom right")


def brightest_quarter(images: torch.Tensor) -> torch.Tensor:
    """Index into QUARTERS of the brightest quarter of each image (N, 3, H, W)."""
    gray = images.mean(1)
    h, w = gray.shape[-2] // 2, gray.shape[-1] // 2
    quarters = [gray[:, :h, :w], gray[:, :h, w:], gray[:, h:, :w], gray[:, h:, w:]]
    return torch.stack([q.sum((-1, -2)) for q in quarters], 1).argmax(1)


def position_accuracy(
    pipe: StableDiffusionPipeline, *, samples_per_quarter: int = 16, guidance_scale: float, num_inference_steps: int, seed: int = 0
) -> float:
    prompts = [f"a large bright circle {q}" for q in QUARTERS for _ in range(samples_per_quarter)]
    images = generate(
        pipe, prompts, seed=seed, guidance_scale=guidance_scale, num_inference_steps=num_inference_steps, batch_size=64, progress=False
    )
    expected = torch.arange(len(QUARTERS)).repeat_interleave(samples_per_quarter)
    return float((brightest_quarter(images) == expected).float().mean())
