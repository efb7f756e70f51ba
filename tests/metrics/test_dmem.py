import pytest
import torch
from diffusers import DDIMScheduler

from memcontrol.data.cache import LatentCache
from memcontrol.data.imagefolder import load_imagefolder
from memcontrol.errors import UserError
from memcontrol.metrics import dmem_scores, dmem_summary, dmem_training_noise, dmem_trajectory
from memcontrol.models.pipeline import load_pipeline
from memcontrol.sampling import generate

PROMPTS = ["a large bright circle top left", "", "a small dark square center"]
FAST = dict(num_inference_steps=3, guidance_scale=1.5, progress=False)
LATENT_SIZE = 4 * 16 * 16  # the tiny model's latents


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return load_pipeline(str(tiny_model_dir))


def _embedding_means(pipe, prompts):
    cond, uncond = pipe.encode_prompt(prompts, pipe.device, 1, True)
    return cond.mean((1, 2)), uncond.mean((1, 2))


@pytest.fixture
def prompt_mean_unet(pipe, monkeypatch):
    """The U-Net replaced by a known answer: it predicts, everywhere, the mean of the prompt's embedding,
    so ||eps(x, e_p) - eps(x, e_empty)|| = |mean(e_p) - mean(e_empty)| * sqrt(latent size) at every step."""

    def forward(sample, timestep, encoder_hidden_states, return_dict=False, **kwargs):
        return (encoder_hidden_states.mean((1, 2)).view(-1, 1, 1, 1).expand_as(sample) + 0 * sample,)

    monkeypatch.setattr(pipe.unet, "forward", forward)
    cond, uncond = _embedding_means(pipe, PROMPTS)
    return (cond - uncond).abs() * LATENT_SIZE**0.5


def test_trajectory_known_answer(pipe, prompt_mean_unet):
    assert torch.allclose(dmem_trajectory(pipe, PROMPTS, **FAST), prompt_mean_unet, rtol=1e-4, atol=1e-5)


def test_velocity_models_are_measured_in_noise_units(pipe, prompt_mean_unet, monkeypatch):
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config, prediction_type="v_prediction")
    monkeypatch.setattr(pipe, "scheduler", scheduler)
    scheduler.set_timesteps(3)
    # eps = sqrt(alpha_bar) v + sqrt(1 - alpha_bar) x_t: the prompt's share of eps is sqrt(alpha_bar) times that of v.
    scale = scheduler.alphas_cumprod[scheduler.timesteps].sqrt().mean()
    assert torch.allclose(dmem_trajectory(pipe, PROMPTS, **FAST), prompt_mean_unet * scale, rtol=1e-4, atol=1e-5)


def test_training_noise_known_answer(pipe, prompt_mean_unet):
    latents = LatentCache(torch.zeros(3, 4, 16, 16), torch.ones(3, 4, 16, 16), 1.0)
    assert torch.allclose(
        dmem_training_noise(pipe, PROMPTS, latents, progress=False), prompt_mean_unet, rtol=1e-4, atol=1e-5
    )


def test_trajectory_is_the_one_generate_follows(pipe):
    """Same seed, same noise, same steps: the U-Net sees exactly the inputs it sees when generating."""
    inputs = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: inputs.append(args[0].clone()))
    try:
        generate(pipe, PROMPTS, seed=3, batch_size=3, **FAST)
        dmem_trajectory(pipe, PROMPTS, seed=3, batch_size=3, **FAST)
    finally:
        hook.remove()
    assert len(inputs) == 6
    assert all(torch.allclose(a, b) for a, b in zip(inputs[:3], inputs[3:]))


def test_values_do_not_depend_on_batching_and_vanish_for_the_empty_prompt(pipe):
    together = dmem_trajectory(pipe, PROMPTS, batch_size=3, samples_per_prompt=2, **FAST)
    alone = dmem_trajectory(pipe, PROMPTS, batch_size=1, samples_per_prompt=2, **FAST)
    assert torch.allclose(together, alone, rtol=1e-4, atol=1e-4)
    assert together[1] < 1e-3 < together[0]
    assert not torch.allclose(
        together, dmem_trajectory(pipe, PROMPTS, seed=1, batch_size=3, samples_per_prompt=2, **FAST)
    )


def test_training_noise_mode_reads_the_images(pipe, tiny_data_dir):
    examples = load_imagefolder(tiny_data_dir)[:3]
    settings = dict(mode="training-noise", resolution=16, progress=False)
    together = dmem_scores(pipe, examples, batch_size=3, **settings)
    alone = dmem_scores(pipe, examples, batch_size=1, **settings)
    assert together.shape == (3,) and (together > 0).all()
    assert torch.allclose(together, alone, rtol=1e-4, atol=1e-4)


def test_unknown_mode_and_summary(pipe):
    with pytest.raises(UserError, match="d_mem mode 'exact'"):
        dmem_scores(pipe, [], mode="exact")
    assert dmem_summary(torch.tensor([1.0, 3.0, 2.0])) == {"dmem_mean": 2.0, "dmem_max": 3.0}


def test_the_trajectories_end_in_the_images_generate_draws_for_the_same_seeds(pipe):
    """d_mem is measured on the very trajectories that produce the generated images: their ends, decoded, are those
    images."""
    ends = []
    dmem_trajectory(pipe, PROMPTS, seed=5, batch_size=2, on_images=ends.append, **FAST)
    settings = {k: v for k, v in FAST.items() if k != "progress"}
    generated = generate(pipe, PROMPTS, seed=5, batch_size=3, progress=False, **settings)
    assert [len(e) for e in ends] == [2, 1]
    torch.testing.assert_close(torch.cat(ends), generated, rtol=0, atol=1e-4)
