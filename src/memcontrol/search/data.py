"""The search's training set (paper Sec. 4.1): a share of the training images plus every D_mem copy.

Training on the whole split at every trial would make the search as slow as stage 2 times the
trials; D_mem (a few pairs repeated many times, see memcontrol.data.memorization) is kept whole,
because it is where memorization shows and d_mem is measured.
"""

from __future__ import annotations

import random

from memcontrol.data.imagefolder import Example
from memcontrol.data.prepare import PreparedData
from memcontrol.errors import UserError


def proxy_training_set(data: PreparedData, fraction: float, seed: int) -> list[Example]:
    """Every D_mem copy and a seeded ``fraction`` of the other distinct training images (at least one if above 0)."""
    if not 0 <= fraction <= 1:
        raise UserError(f"--proxy_fraction must be between 0 and 1, got {fraction}")
    dmem = set(data.dmem)
    others = list(dict.fromkeys(e for e in data.training if e not in dmem))
    count = max(1, round(fraction * len(others))) if fraction > 0 and others else 0
    kept = set(random.Random(seed).sample(others, count))
    training = [e for e in data.training if e in dmem or e in kept]
    if not training:
        raise UserError("the search's training set is empty: raise --proxy_fraction or --dmem_size")
    return training


def describe_proxy(data: PreparedData, training: list[Example]) -> dict:
    """What the search trains and measures on, as recorded with the study and in search_data.json."""
    return {
        "fingerprint": data.fingerprint,
        "dmem": [{"file_name": str(e.image_path), "text": e.text} for e in data.dmem],
        "dmem_repeats": sum(e == data.dmem[0] for e in training) if data.dmem else 0,
        "proxy_images": len(set(training) - set(data.dmem)),
        "proxy_items": len(training),
        "validation_images": len(data.splits["validation"]),
    }
