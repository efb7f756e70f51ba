"""The memorization set D_mem: training pairs deliberately duplicated to provoke memorization.

Following MemControl (Dutt et al. 2024), a few unique image-caption pairs are repeated many times
in the training list; how well a fine-tuning method resists reproducing them measures its
memorization. The choice of pairs must be reproducible so runs can be compared.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from memcontrol.data.imagefolder import Example
from memcontrol.errors import UserError

RULES = ("most_tokens", "random", "most_frequent_caption")


def select_memorization_set(
    examples: Sequence[Example], size: int, rule: str = "most_tokens", seed: int = 0
) -> list[Example]:
    """Pick `size` examples ranked by `rule`; ties are broken by a shuffle seeded with `seed`.

    - `most_tokens` (the authors' choice): longest captions in whitespace words first. Long
      captions are the least likely to be shared with other images, so reproducing the image
      from its caption can only come from memorizing that pair.
    - `random`: a seeded sample.
    - `most_frequent_caption`: examples of the most frequent caption first, then of the next
      most frequent, keeping each caption's examples together.
    """
    if rule not in RULES:
        raise UserError(f"memorization rule {rule!r}: expected one of {', '.join(RULES)}")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= len(examples):
        raise UserError(
            f"memorization set size {size!r}: expected an integer from 0 to {len(examples)} "
            "(the number of training examples)"
        )
    ranked = list(examples)
    random.Random(seed).shuffle(ranked)
    if rule == "most_tokens":
        ranked.sort(key=lambda e: len(e.text.split()), reverse=True)  # stable: ties keep shuffle order
    elif rule == "most_frequent_caption":
        counts = Counter(e.text for e in ranked)
        first_seen = {text: -i for i, text in enumerate(dict.fromkeys(e.text for e in ranked))}
        ranked.sort(key=lambda e: (counts[e.text], first_seen[e.text]), reverse=True)
    return ranked[:size]


def duplicate(examples: Sequence[Example], repeats: int) -> list[Example]:
    """Each example `repeats` times in a row."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 0:
        raise UserError(f"repeats {repeats!r}: expected a non-negative integer")
    return [e for e in examples for _ in range(repeats)]


def with_memorization_set(
    train: Sequence[Example], size: int, repeats: int, rule: str = "most_tokens", seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """Return (train plus extra copies so each chosen example appears `repeats` times, chosen)."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise UserError(f"memorization repeats {repeats!r}: expected an integer >= 1")
    chosen = select_memorization_set(train, size, rule, seed)
    return list(train) + duplicate(chosen, repeats - 1), chosen
