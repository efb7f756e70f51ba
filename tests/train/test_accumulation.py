"""--gradient_accumulation_steps: a step over several forward passes is the step over their samples as one batch."""

import dataclasses

import pytest
import torch
from diffusers import DDPMScheduler

from memcontrol.data.prepare import prepare_data
from memcontrol.errors import UserError
from memcontrol.mitigations import Mitigation, get_mitigation
from memcontrol.peft import get_method
from memcontrol.runtime import load_for_training, make_accelerator
from memcontrol.train.engine import Batch, accumulate_gradients, draw_batch, fine_tune
from memcontrol.train.run import build_training_set


class KeepTimesteps(Mitigation):
    """Keeps the samples drawn at the given timesteps: a per-sample choice, as a fixed threshold makes."""

    def __init__(self, timesteps: torch.Tensor):
        super().__init__()
        self.timesteps = timesteps

    def keep(self, model, noisy, timesteps, prediction, captions):
        return torch.isin(timesteps, self.timesteps)


@pytest.fixture
def step_gradients(tiny_configs):
    """A batch of four drawn once, and the full fine-tuning gradients of one step on it (or on some of its rows) in
    forward passes of ``per_device`` samples, with the loss and kept count that step reports."""
    model_cfg, data_cfg, _, _ = tiny_configs
    accelerator = make_accelerator(model_cfg)
    pipe = load_for_training(model_cfg, accelerator)
    data = build_training_set(pipe, prepare_data(data_cfg).training, 16, progress=False)
    params = get_method("full").apply(pipe.unet, ())
    model = accelerator.prepare(pipe.unet)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    batch = draw_batch(data, torch.arange(4), 1000, 0.3, torch.Generator().manual_seed(0), get_mitigation("none"))

    def gradients(per_device: int, mitigation: Mitigation | None = None, rows: list[int] | None = None):
        part = batch
        if rows is not None:
            part = Batch(batch.latents[rows], batch.noise[rows], batch.timesteps[rows], batch.conditioning[rows])
        mitigation = mitigation or get_mitigation("none")
        loss, kept = accumulate_gradients(
            model, noise_scheduler, part, data.captions, params, per_device, accelerator, mitigation
        )
        grads = torch.cat([p.grad.flatten() for p in params])
        model.zero_grad(set_to_none=True)
        return grads, loss, kept

    return batch, gradients


def test_passes_sum_to_the_gradient_of_the_whole_batch(step_gradients):
    _, gradients = step_gradients
    whole, loss, kept = gradients(per_device=4)
    for per_device in (2, 1):
        split, split_loss, split_kept = gradients(per_device)
        torch.testing.assert_close(split, whole, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(split_loss, loss)
        assert split_kept == kept == 4


@pytest.mark.parametrize("per_device", [4, 2, 1])
def test_a_mitigation_that_drops_samples_trains_on_the_mean_over_those_the_batch_keeps(step_gradients, per_device):
    """Three of four kept: with passes of two one pass keeps both and one keeps one, with passes of one a pass keeps
    none; whatever the split, the gradient and loss are those of the three kept samples as one batch."""
    batch, gradients = step_gradients
    assert len(batch.timesteps.unique()) == 4
    reference, reference_loss, _ = gradients(per_device=3, rows=[0, 1, 2])
    mitigated, loss, kept = gradients(per_device, KeepTimesteps(batch.timesteps[:3]))
    assert kept == 3
    torch.testing.assert_close(mitigated, reference, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(loss, reference_loss)


def test_a_batch_the_mitigation_empties_has_no_loss_and_no_gradient(step_gradients):
    _, gradients = step_gradients
    grads, loss, kept = gradients(2, KeepTimesteps(torch.tensor([-1])))
    assert loss is None and kept == 0 and not grads.any()


def _train(configs, **train_overrides):
    """How full fine-tuning changed the U-Net's weights (flat), and the run's result."""
    model_cfg, data_cfg, train_cfg, _ = configs
    train_cfg = dataclasses.replace(train_cfg, **train_overrides)
    accelerator = make_accelerator(model_cfg)
    pipe = load_for_training(model_cfg, accelerator)

    def weights():
        return torch.cat([p.detach().flatten() for p in pipe.unet.parameters()])

    before = weights().clone()
    data = build_training_set(pipe, prepare_data(data_cfg).training, 16, progress=False)
    result = fine_tune(pipe, get_method("full"), (), data, train_cfg, accelerator, progress=False)
    return weights() - before, result


def _relative_difference(update: torch.Tensor, reference: torch.Tensor) -> float:
    """Adam divides by each gradient's own size, so float rounding of near-zero gradients moves single weights by a
    visible fraction of the learning rate: updates are compared as a whole."""
    return ((update - reference).norm() / reference.norm()).item()


@pytest.mark.parametrize("mitigation", [{}, {"mitigation": "threshold", "plugin_options": {"threshold": 1.0}}])
def test_two_passes_of_two_make_the_step_of_one_batch_of_four(tiny_configs, mitigation):
    """Same seed, same global batches: the weights and losses agree to float rounding. Under the threshold
    mitigation (whose norms at 1.0 drop some samples, whole passes and a whole batch here) the loss is the mean over
    the samples the global batch keeps, as in one large batch."""
    common = dict(max_train_steps=4, latent_sampling="sample", caption_dropout=0.3, **mitigation)
    large, large_result = _train(tiny_configs, train_batch_size=4, gradient_accumulation_steps=1, **common)
    accumulated, result = _train(tiny_configs, train_batch_size=2, gradient_accumulation_steps=2, **common)
    assert _relative_difference(accumulated, large) < 1e-3  # measured: 4e-5 (plain), 9e-5 (threshold)
    assert [s for s, _ in result.losses] == [s for s, _ in large_result.losses]
    assert [loss for _, loss in result.losses] == pytest.approx([loss for _, loss in large_result.losses], rel=1e-5)

    def counters(r):
        return (r.dropped_samples, r.skipped_batches)

    assert counters(result) == counters(large_result)
    if mitigation:
        assert 0 < result.dropped_samples < 16 and result.skipped_batches < 4  # it drops, yet it trains

    small, _ = _train(tiny_configs, train_batch_size=2, gradient_accumulation_steps=1, **common)
    assert _relative_difference(small, large) > 0.1  # batches of two alone do not give that (measured: 1.2-1.4)


def test_accumulation_steps_below_one_are_refused(tiny_configs):
    with pytest.raises(UserError, match="--gradient_accumulation_steps must be at least 1, got 0"):
        _train(tiny_configs, gradient_accumulation_steps=0)
