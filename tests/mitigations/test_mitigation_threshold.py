"""Threshold mitigation: exactly the samples at or above the threshold leave the loss; empty batches make no step."""

from __future__ import annotations

import pytest
import torch

from memcontrol.errors import UserError
from memcontrol.mitigations import get_mitigation
from memcontrol.mitigations.threshold import ThresholdConfig, below_threshold, conditional_norms


def test_a_fixed_threshold_drops_exactly_the_norms_at_or_above_it():
    norms = torch.tensor([0.5, 5.0, 4.999, 7.0, 0.0])
    assert below_threshold(norms, threshold=5.0).tolist() == [True, False, True, False, True]
    assert not below_threshold(norms, threshold=0.0).any()


def test_a_quantile_threshold_follows_each_batch():
    norms = torch.arange(10.0)  # the 0.8 quantile is 7.2
    assert below_threshold(norms, quantile=0.8).tolist() == [True] * 8 + [False] * 2
    assert below_threshold(norms * 100, quantile=0.8).sum() == 8  # relative to the batch, whatever the scale
    assert below_threshold(norms, quantile=1.0).tolist() == [True] * 9 + [False]  # the largest always goes


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(), "either --threshold or --threshold_quantile"),
        (dict(threshold=1.0, threshold_quantile=0.9), "one of them"),
    ],
)
def test_threshold_needs_exactly_one_of_its_two_options(options, message):
    with pytest.raises(UserError, match=message):
        get_mitigation("threshold", ThresholdConfig(**options))
    with pytest.raises(UserError, match="--threshold_quantile"):
        ThresholdConfig(threshold_quantile=1.5)


def test_the_norm_is_that_of_the_conditional_minus_the_unconditional_prediction(caption_embeddings):
    captions = caption_embeddings()

    def model(noisy, timesteps, embeddings, return_dict=False):  # a stand-in U-Net: output = input + conditioning mean
        return (noisy + embeddings.mean(dim=(1, 2)).view(-1, 1, 1, 1),)

    noisy = torch.zeros(3, 4, 2, 2)
    prediction = model(noisy, None, captions.lookup(captions.caption_ids))[0]
    empty = captions.lookup(torch.tensor([captions.empty_id])).mean()
    expected = (captions.lookup(captions.caption_ids).mean(dim=(1, 2)) - empty).abs() * 4  # sqrt(16 equal entries)
    torch.testing.assert_close(conditional_norms(model, noisy, None, prediction, captions), expected)


def test_threshold_zero_skips_every_batch_and_changes_no_weight(train):
    before, after, result = train(mitigation="threshold", plugin_options={"threshold": 0.0})
    assert torch.equal(before, after)
    assert result.skipped_batches == result.steps == 4 and result.dropped_samples == 4 * 4 and result.losses == []


def test_a_threshold_nothing_reaches_is_the_unmitigated_run_bit_for_bit(train):
    _, plain, plain_result = train()
    _, mitigated, result = train(mitigation="threshold", plugin_options={"threshold": 1e30})
    assert torch.equal(plain, mitigated) and result.losses == plain_result.losses
    assert result.dropped_samples == result.skipped_batches == 0


def test_a_quantile_threshold_drops_some_samples_and_still_trains(train):
    before, after, result = train(mitigation="threshold", plugin_options={"threshold_quantile": 0.5})
    assert not torch.equal(before, after)
    assert 4 <= result.dropped_samples < 4 * 4 and result.skipped_batches == 0
