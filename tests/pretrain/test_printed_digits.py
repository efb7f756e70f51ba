"""Printed digits teach the base the digit concepts, in the fine-tuning captions' words, without handwriting."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as F
from sklearn.datasets import load_digits

from memcontrol.data.vocabulary import DIGIT_CAPTION, DIGIT_NAMES
from memcontrol.pretrain.components import builtin_vocabulary
from memcontrol.pretrain.data import SLOT_WORDS, TYPEFACES, draw_digits, general_domain, typeface_paths
from memcontrol.scenario import _digit_classifier


@pytest.fixture(scope="module")
def printed():
    return draw_digits(200, 16, np.random.default_rng(0), SLOT_WORDS)


def test_every_typeface_ships_with_matplotlib():
    assert len(TYPEFACES) == 21 and all(path.is_file() for path in typeface_paths())


def test_printed_digits_show_their_caption_digit(printed):
    """A classifier of real handwritten 8x8 digits reads the caption's digit far above chance (10%; measured 65%)."""
    images, captions = printed
    assert images.shape == (200, 3, 16, 16) and images.min() >= -1 and images.max() <= 1
    small = F.adaptive_avg_pool2d((images.mean(1, keepdim=True) + 1) / 2, 8).flatten(1).numpy() * 16
    expected = [DIGIT_NAMES.index(caption.split()[-1]) for caption in captions]
    assert (_digit_classifier().predict(small) == expected).mean() >= 0.5


def test_printed_digits_fill_the_frame_as_the_handwritten_set_does(printed):
    """Same layout as the fine-tuning digits (centred, full height, thick strokes): only the glyphs' style differs.

    Drawn off-centre and thin, the frozen base drew the handwritten caption's digit at 16% (measured).
    """
    images, _ = printed
    printed = F.adaptive_avg_pool2d((images.mean(1, keepdim=True) + 1) / 2, 8)[:, 0].numpy()
    handwritten = load_digits().images / 16
    assert abs(printed.mean() - handwritten.mean()) < 0.05
    assert np.abs(printed.mean((0, 2)) - handwritten.mean((0, 2))).max() < 0.1  # rows: full height, not raised
    assert np.abs(printed.mean((0, 1)) - handwritten.mean((0, 1))).max() < 0.15  # columns: centred


def test_digit_captions_are_the_fine_tuning_captions_with_another_style_word(printed):
    """'a cat digit seven': the words of 'a handwritten digit seven', any pretraining word in the style slot."""
    _, captions = printed
    fine_tuning_words = set(DIGIT_CAPTION.format(name="").split()) - {"handwritten"}
    assert all(len(c.split()) == 4 and fine_tuning_words <= set(c.split()) for c in captions)
    assert {c.split()[-1] for c in captions} == set(DIGIT_NAMES)
    assert {c.split()[1] for c in captions} == set(SLOT_WORDS) and "handwritten" not in SLOT_WORDS
    assert {w for c in captions for w in c.split()} <= set(builtin_vocabulary())


def test_general_domain_has_no_digits_unless_asked():
    _, captions = general_domain(40, 16, digit_share=0.0)
    _, mixed = general_domain(40, 16, digit_share=0.5)
    assert not any("digit" in c for c in captions) and sum("digit" in c for c in mixed) == 20
