import math

import pytest
import torch

from memcontrol.metrics import amd, nearest_cosine


def _features(n, d=5, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_amd_of_the_training_set_with_itself_is_zero():
    training = _features(40)
    assert amd(training, training) == pytest.approx(0, abs=1e-6)


def test_known_answer_and_nearest_index():
    distances, index = nearest_cosine(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    assert distances.item() == pytest.approx(1 - 1 / math.sqrt(2))
    assert index.item() == 1


def test_a_planted_near_copy_is_at_distance_about_zero():
    training = _features(50)
    generated = torch.cat([_features(3, seed=1), training[17:18] * 2.0 + 1e-4])  # scale does not matter to cosine
    distances, index = nearest_cosine(generated, training)
    assert distances[-1].item() < 1e-6 and index[-1].item() == 17
    assert distances[:3].min().item() > 1e-3


def test_chunking_on_both_sides_gives_the_same_answer():
    generated, training = _features(37, seed=2), _features(101, seed=3)
    whole = nearest_cosine(generated, training)
    chunked = nearest_cosine(generated, training, query_chunk=4, reference_chunk=7)
    assert torch.allclose(whole[0], chunked[0], atol=1e-6) and torch.equal(whole[1], chunked[1])
    assert amd(generated, training, query_chunk=5, reference_chunk=3) == pytest.approx(
        amd(generated, training), abs=1e-6
    )
