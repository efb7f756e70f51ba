from __future__ import annotations

from pathlib import Path

import pytest

from memcontrol.data.imagefolder import Example
from memcontrol.data.splits import split_examples
from memcontrol.errors import UserError


def make(subjects: int, per_subject: int = 2, split=None) -> list[Example]:
    return [
        Example(Path(f"s{s}_{i}.png"), "x", f"s{s}", split(s) if split else None)
        for s in range(subjects)
        for i in range(per_subject)
    ]


def subjects(examples: list[Example]) -> set[str]:
    return {e.subject_id for e in examples}


def test_grouped_by_subject_and_complete():
    examples = make(50)
    splits = split_examples(examples)
    assert list(splits) == ["train", "validation", "test"]
    assert [len(subjects(v)) for v in splits.values()] == [40, 5, 5]
    sets = [subjects(v) for v in splits.values()]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert sorted(e.image_path for v in splits.values() for e in v) == sorted(e.image_path for e in examples)


def test_reproducible_and_seed_dependent():
    examples = make(50)
    assert split_examples(examples, seed=3) == split_examples(examples, seed=3)
    assert split_examples(examples, seed=3)["test"] != split_examples(examples, seed=4)["test"]


@pytest.mark.parametrize("n", [3, 4, 5])
def test_train_never_empty(n):
    assert split_examples(make(n), fractions=(0.1, 0.45, 0.45))["train"]


def test_given_splits_are_honoured():
    names = ["train", "validation", "test"]
    splits = split_examples(make(6, split=lambda s: names[s % 3]), fractions=(1, 0, 0))
    assert [subjects(v) for v in splits.values()] == [{"s0", "s3"}, {"s1", "s4"}, {"s2", "s5"}]


def test_given_splits_must_not_share_a_subject():
    examples = make(2, split=lambda s: "train")
    examples.append(Example(Path("s0_x.png"), "x", "s0", "test"))
    with pytest.raises(UserError, match="subject_id 's0': in both the train and test splits"):
        split_examples(examples)


def test_given_splits_must_cover_every_example():
    examples = make(2, split=lambda s: "train") + make(1)
    with pytest.raises(UserError, match="split column: set for 4 of 6 examples"):
        split_examples(examples)


@pytest.mark.parametrize("fractions", [(0.8, 0.2), (0.8, 0.3, 0.1), (1.2, -0.1, -0.1), ("a", 0, 0)])
def test_bad_fractions(fractions):
    with pytest.raises(UserError, match="split fractions"):
        split_examples(make(5), fractions=fractions)
