"""Checks that the built-in scenario shows the problem MemControl is about.

The whole product is meaningless unless, on the built-in default, full fine-tuning memorises the
duplicated D_mem pairs while the frozen base does not, and fine-tuned samples still show their
caption's class. These functions measure exactly that; tests run them on the shipped base model.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from memcontrol.data.imagefolder import Example, load_images
from memcontrol.data.vocabulary import DIGIT_CAPTION, DIGIT_NAMES
from memcontrol.sampling import generate


def min_distinct_distance(images: torch.Tensor) -> float:
    """Smallest L2 distance between two distinct training images: closer than this is a copy."""
    flat = images.flatten(1)
    distances = torch.cdist(flat, flat)
    distances.fill_diagonal_(float("inf"))
    return float(distances.min())


def extraction_check(
    pipe, training: list[Example], dmem: list[Example], resolution: int, *, samples: int = 4, seed: int = 0, **settings
) -> dict:
    """Best of ``samples`` generations per D_mem caption against its own training image, in [0, 1] pixels."""
    distinct = list(dict.fromkeys(training))
    threshold = min_distinct_distance((load_images(distinct, resolution, progress=False) + 1) / 2)
    originals = (load_images(dmem, resolution, progress=False) + 1) / 2
    prompts = [e.text for e in dmem for _ in range(samples)]
    images = generate(pipe, prompts, seed=seed, resolution=resolution, batch_size=64, progress=False, **settings)
    distances = (images.view(len(dmem), samples, -1) - originals.view(len(dmem), 1, -1)).norm(dim=-1)
    best = distances.min(1).values
    return {"threshold": threshold, "best_distance": best.tolist(), "extracted": int((best < threshold).sum())}


@lru_cache(maxsize=1)
def _digit_classifier():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    digits = load_digits()
    return LogisticRegression(max_iter=5000).fit(digits.data, digits.target)


def digit_accuracy(pipe, resolution: int, *, per_class: int = 8, seed: int = 0, **settings) -> float:
    """Share of samples for "a handwritten digit N" that a classifier of real digits reads as N (chance 10%)."""
    prompts = [DIGIT_CAPTION.format(name=name) for name in DIGIT_NAMES for _ in range(per_class)]
    images = generate(pipe, prompts, seed=seed, resolution=resolution, batch_size=80, progress=False, **settings)
    # Back to scikit-learn's format: 8 x 8 grey levels 0..16.
    small = F.adaptive_avg_pool2d(images.mean(1, keepdim=True), 8).flatten(1).numpy() * 16
    predicted = _digit_classifier().predict(small)
    expected = np.repeat(np.arange(len(DIGIT_NAMES)), per_class)
    return float((predicted == expected).mean())
