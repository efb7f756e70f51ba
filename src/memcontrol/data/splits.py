"""Train/validation/test splits grouped by subject.

Images of one patient look alike; if a patient were in both train and test, a test image could
be "reproduced" from a training image of the same patient and inflate both quality and
memorization scores. So every split is made over subjects, never over images.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from memcontrol.data.imagefolder import SPLITS, Example
from memcontrol.errors import UserError


def split_examples(
    examples: Sequence[Example], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, list[Example]]:
    """Return {"train", "validation", "test"} lists, using the dataset's own `split` column if any."""
    _check_fractions(fractions)
    if any(e.split is not None for e in examples):
        return _given_splits(examples)
    subjects = sorted({e.subject_id for e in examples})
    random.Random(seed).shuffle(subjects)
    split_of = _assign(subjects, fractions)
    return _group(examples, lambda e: split_of[e.subject_id])


def _check_fractions(fractions: Sequence[float]) -> None:
    ok = (
        len(fractions) == 3
        and all(isinstance(f, (int, float)) and f >= 0 for f in fractions)
        and math.isclose(sum(fractions), 1.0, abs_tol=1e-6)
    )
    if not ok:
        raise UserError(
            f"split fractions {tuple(fractions)!r}: expected 3 non-negative numbers "
            "(train, validation, test) that sum to 1"
        )


def _assign(subjects: list[str], fractions: Sequence[float]) -> dict[str, str]:
    """Cut the shuffled subjects at the cumulative fractions; train always gets one if any exist."""
    n = len(subjects)
    n_train = min(n, max(1, round(n * fractions[0])))
    n_validation = max(0, min(n, round(n * (fractions[0] + fractions[1]))) - n_train)
    ends = {"train": n_train, "validation": n_train + n_validation, "test": n}
    split_of, start = {}, 0
    for name in SPLITS:
        split_of.update((s, name) for s in subjects[start : ends[name]])
        start = ends[name]
    return split_of


def _given_splits(examples: Sequence[Example]) -> dict[str, list[Example]]:
    """Honour a `split` column, refusing partial columns and subjects that span two splits."""
    missing = [e for e in examples if e.split is None]
    if missing:
        raise UserError(
            f"split column: set for {len(examples) - len(missing)} of {len(examples)} examples "
            f"but not for {missing[0].image_path}; set it for every row or for none"
        )
    split_of: dict[str, str] = {}
    for e in examples:
        first = split_of.setdefault(e.subject_id, e.split)
        if first != e.split:
            raise UserError(
                f"subject_id {e.subject_id!r}: in both the {first} and {e.split} splits "
                f"(e.g. {e.image_path}); a subject must stay in one split"
            )
    return _group(examples, lambda e: e.split)


def _group(examples: Sequence[Example], split_of: Callable[[Example], str]) -> dict[str, list[Example]]:
    groups: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for e in examples:
        groups[split_of(e)].append(e)
    return groups
