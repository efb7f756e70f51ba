"""Does the base model follow its captions? The built-in scenario is meaningless otherwise.

Two measurable checks on captions of the pretraining domain:
- shape: prompts name a shape ("a large bright triangle center"); a classifier of drawn shapes
  (fitted on crops around the bright pixels, so it ignores where the shape is) reads the sample.
  Chance is 25%.
- position: prompts name a quarter; a sample is right when that quarter is the brightest. Chance 25%.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import StableDiffusionPipeline

from memcontrol.pretrain.data import SHAPES, draw_shapes
from memcontrol.sampling import generate

QUARTERS = ("top left", "top right", "bottom left", "bottom right")


def brightest_quarter(images: torch.Tensor) -> torch.Tensor:
    """Index into QUARTERS of the brightest quarter of each image (N, 3, H, W)."""
    gray = images.mean(1)
    h, w = gray.shape[-2] // 2, gray.shape[-1] // 2
    quarters = [gray[:, :h, :w], gray[:, :h, w:], gray[:, h:, :w], gray[:, h:, w:]]
    return torch.stack([q.sum((-1, -2)) for q in quarters], 1).argmax(1)


def shape_crops(images: torch.Tensor, size: int = 8) -> np.ndarray:
    """Grey crop around each image's bright pixels, resized to ``size`` and scaled to max 1: position-free."""
    out = []
    for gray in images.mean(1):
        ys, xs = torch.nonzero(gray >= 0.5 * gray.max(), as_tuple=True)
        crop = gray[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        crop = F.interpolate(crop[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
        out.append((crop / crop.max().clamp_min(1e-6)).flatten().numpy())
    return np.stack(out)


@lru_cache(maxsize=1)
def _shape_classifier():
    from sklearn.linear_model import LogisticRegression

    images, captions = draw_shapes(2000, 16, np.random.default_rng(1))
    large = [i for i, c in enumerate(captions) if " large " in f" {c} "]
    labels = [next(s for s in SHAPES if s in captions[i]) for i in large]
    return LogisticRegression(max_iter=5000).fit(shape_crops((images[large] + 1) / 2), labels)


def shape_accuracy(
    pipe: StableDiffusionPipeline,
    *,
    samples_per_shape: int = 16,
    guidance_scale: float,
    num_inference_steps: int,
    seed: int = 0,
) -> float:
    positions = [*QUARTERS, "center"]
    prompts = [f"a large bright {s} {positions[i % len(positions)]}" for s in SHAPES for i in range(samples_per_shape)]
    images = generate(
        pipe,
        prompts,
        seed=seed,
        guidance_scale=guidance_scale,
        num_inference_steps=num_inference_steps,
        batch_size=64,
        progress=False,
    )
    expected = np.repeat(np.array(SHAPES), samples_per_shape)
    return float((_shape_classifier().predict(shape_crops(images)) == expected).mean())


def position_accuracy(
    pipe: StableDiffusionPipeline,
    *,
    samples_per_quarter: int = 16,
    guidance_scale: float,
    num_inference_steps: int,
    seed: int = 0,
) -> float:
    prompts = [f"a large bright circle {q}" for q in QUARTERS for _ in range(samples_per_quarter)]
    images = generate(
        pipe,
        prompts,
        seed=seed,
        guidance_scale=guidance_scale,
        num_inference_steps=num_inference_steps,
        batch_size=64,
        progress=False,
    )
    expected = torch.arange(len(QUARTERS)).repeat_interleave(samples_per_quarter)
    return float((brightest_quarter(images) == expected).float().mean())
