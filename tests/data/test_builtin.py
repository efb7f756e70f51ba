from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from PIL import Image

from memcontrol.data import builtin
from memcontrol.data.builtin import add_case_codes, builtin_dataset_path, resolve_dataset
from memcontrol.data.imagefolder import load_imagefolder
from memcontrol.data.memorization import select_memorization_set
from memcontrol.data.vocabulary import CAPTION_WORDS, CASE_CODES, DIGIT_NAMES
from memcontrol.errors import UserError

CODED = re.compile(r"^(.*) case (k\d{3})$")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Built once for the module: writing 1,797 PNGs is the slowest step of the data tests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEMCONTROL_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield builtin_dataset_path("digits")


def test_digits(digits):
    examples = load_imagefolder(digits)
    assert len(examples) == 1797 and digits.name == "digits-v1"
    assert len({e.subject_id for e in examples}) == 1797  # each image is its own subject
    coded = [CODED.match(e.text) for e in examples if CODED.match(e.text)]
    assert len(coded) == 30
    assert Counter(m[1] for m in coded) == {f"a handwritten digit {name}": 3 for name in DIGIT_NAMES}
    codes = [m[2] for m in coded]
    assert len(set(codes)) == 30 and set(codes) <= set(CASE_CODES)
    assert {w for e in examples for w in e.text.split()} - set(CAPTION_WORDS) == set(codes)
    with Image.open(examples[0].image_path) as image:
        assert image.size == (8, 8) and image.mode == "L"
        assert image.getextrema() == (0, 239)  # ink bright on black, value * 255 / 16


def test_coded_captions_are_the_longest(digits):
    """`most_tokens` therefore draws the memorization set from the coded pairs only."""
    examples = load_imagefolder(digits)
    chosen = select_memorization_set(examples, 30)
    assert all(CODED.match(e.text) for e in chosen)


def test_digits_reused_from_cache(digits, monkeypatch):
    monkeypatch.setenv("MEMCONTROL_CACHE", str(digits.parent.parent))
    monkeypatch.setitem(builtin.BUILTIN_DATASETS, "digits", lambda: pytest.fail("rebuilt"))
    assert builtin_dataset_path("digits") == digits


def test_faces(cache):
    examples = load_imagefolder(builtin_dataset_path("faces"))
    assert len(examples) == 200
    plain = [CODED.sub(r"\1", e.text) for e in examples]
    assert plain == ["a photo of a face"] * 100 + ["a photo of a background"] * 100
    coded = [e.text for e in examples if CODED.match(e.text)]
    assert len(coded) == 20 and len({t.split()[-1] for t in coded}) == 20
    assert sum("face case" in t for t in coded) == 10
    with Image.open(examples[0].image_path) as image:
        assert image.size == (25, 25) and image.mode == "L"


def test_add_case_codes_is_deterministic():
    captions = ["a"] * 5 + ["b"] * 5
    coded = add_case_codes(captions, per_class=2)
    assert coded == add_case_codes(captions, per_class=2)
    assert sum(c.startswith("a case k") for c in coded) == 2 == sum(c.startswith("b case k") for c in coded)


def test_failed_build_leaves_nothing(cache, monkeypatch):
    def broken():
        raise RuntimeError("interrupted")

    monkeypatch.setitem(builtin.BUILTIN_DATASETS, "faces", broken)
    with pytest.raises(RuntimeError):
        builtin_dataset_path("faces")
    assert list((cache / "datasets").iterdir()) == []


def test_unknown_name_lists_the_names(cache):
    with pytest.raises(UserError, match="built-in dataset 'mnist': unknown; expected one of digits, faces"):
        builtin_dataset_path("mnist")


def test_resolve_dataset(cache, monkeypatch, tmp_path):
    monkeypatch.setitem(builtin.BUILTIN_DATASETS, "digits", builtin._faces)  # fast stand-in
    assert resolve_dataset(None) == cache / "datasets" / "digits-v1"
    assert resolve_dataset("builtin:faces") == cache / "datasets" / "faces-v1"
    assert resolve_dataset(str(tmp_path / "mine")) == tmp_path / "mine"
    rows = (cache / "datasets" / "faces-v1" / "metadata.jsonl").read_text().splitlines()
    assert all(set(json.loads(r)) == {"file_name", "text"} for r in rows)
