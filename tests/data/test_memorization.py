from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from memcontrol.data.imagefolder import Example
from memcontrol.data.memorization import duplicate, select_memorization_set, with_memorization_set
from memcontrol.errors import UserError


def make(texts: list[str]) -> list[Example]:
    return [Example(Path(f"{i}.png"), text, str(i)) for i, text in enumerate(texts)]


def test_most_tokens_picks_longest_captions():
    examples = make(["a b", "a b c d", "a", "a b c", "a b c d e"])
    chosen = select_memorization_set(examples, 2)
    assert [e.text for e in chosen] == ["a b c d e", "a b c d"]


def test_ties_broken_reproducibly_by_seed():
    examples = make([f"long caption number {i}" for i in range(20)] + ["short"] * 5)
    first = select_memorization_set(examples, 5, seed=0)
    assert first == select_memorization_set(examples, 5, seed=0)
    assert first != select_memorization_set(examples, 5, seed=1)
    assert all(e.text.startswith("long") for e in first)


def test_random_rule():
    examples = make([str(i) for i in range(20)])
    chosen = select_memorization_set(examples, 4, rule="random", seed=2)
    assert len(set(chosen)) == 4 and chosen == select_memorization_set(examples, 4, rule="random", seed=2)


def test_most_frequent_caption():
    examples = make(["rare", "common", "other", "common", "other", "common"])
    chosen = select_memorization_set(examples, 3, rule="most_frequent_caption")
    assert {e.text for e in chosen} == {"common"}


@pytest.mark.parametrize(
    "size, rule, expected",
    [
        (4, "most_tokens", "memorization set size 4: expected an integer from 0 to 3"),
        (-1, "random", "memorization set size -1"),
        (1, "longest", "memorization rule 'longest'"),
    ],
)
def test_bad_arguments(size, rule, expected):
    with pytest.raises(UserError, match=expected):
        select_memorization_set(make(["a", "b", "c"]), size, rule=rule)


def test_duplicate():
    examples = make(["a", "b"])
    assert duplicate(examples, 2) == [examples[0], examples[0], examples[1], examples[1]]
    assert duplicate(examples, 0) == []
    with pytest.raises(UserError, match="repeats -1"):
        duplicate(examples, -1)


def test_with_memorization_set_repeats_chosen_examples():
    train = make(["a b c", "a", "a b", "a b c d"])
    training, chosen = with_memorization_set(train, size=2, repeats=5, rule="most_tokens", seed=0)
    counts = Counter(training)
    assert {e.text for e in chosen} == {"a b c", "a b c d"}
    assert all(counts[e] == 5 for e in chosen)
    assert all(counts[e] == 1 for e in train if e not in chosen)
    assert with_memorization_set(train, size=0, repeats=5) == (train, [])
    with pytest.raises(UserError, match="memorization repeats 0"):
        with_memorization_set(train, size=1, repeats=0)
