"""d_mem (paper Eq. 6, Wen et al. 2024): how far a prompt pulls the noise prediction from the unconditional one.

    d_mem(p) = 1/T sum_t || eps(x_t, e_p) - eps(x_t, e_empty) ||_2   (L2 over the flattened latent)

A memorised prompt steers the model towards one image from any starting noise, so its conditional
prediction stays far from the unconditional one; a generic prompt barely moves it.

Two modes, because the paper and its code disagree (see method-notes.md):
- ``trajectory`` (the paper's definition, Wen et al.): x_t follows the DDIM sampling trajectory,
  guided with ``guidance_scale``, from the noise that ``generate`` draws for the same seed; so two
  models (or two trials of a search) are compared on the same noise, and d_mem is measured on the
  very trajectories that produce the generated images.
- ``training-noise`` (the authors' code): each example's training latent noised at one random
  timestep, a single forward pass per example.
Both run the conditional and unconditional inputs in one batch, as classifier-free guidance does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionPipeline
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from memcontrol.data.cache import LatentCache
from memcontrol.data.imagefolder import Example, load_images
from memcontrol.errors import UserError
from memcontrol.sampling import decode

DMEM_MODES = ("trajectory", "training-noise")


def _embeddings(
    pipe: StableDiffusionPipeline, prompts: Sequence[str], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt, empty prompt) embeddings exactly as the pipeline computes them, in the U-Net's dtype."""
    cond, uncond = pipe.encode_prompt(list(prompts), device, 1, True)
    return cond.to(pipe.unet.dtype), uncond.to(pipe.unet.dtype)


def _epsilon(
    output: torch.Tensor, latents: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """The noise implied by a model output, whatever the model predicts (SD 1.x: noise; SD 2.x: velocity)."""
    if prediction_type == "epsilon":
        return output
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    if prediction_type == "v_prediction":
        return a * output + s * latents
    if prediction_type == "sample":
        return (latents - a * output) / s
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def _guidance_pass(
    unet, scheduler, latents, timesteps, cond, uncond
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Model outputs for (empty, prompt) in one forward pass, and the L2 norm of their noise difference per sample."""
    t = torch.cat([timesteps, timesteps]) if timesteps.dim() else timesteps
    model_input = scheduler.scale_model_input(torch.cat([latents, latents]), timesteps)
    out_uncond, out_cond = unet(model_input, t, encoder_hidden_states=torch.cat([uncond, cond]), return_dict=False)[
        0
    ].chunk(2)
    alpha_bar = scheduler.alphas_cumprod.to(latents.device)[timesteps].float().view(-1, 1, 1, 1)
    kind, x = scheduler.config.prediction_type, latents.float()
    gap = _epsilon(out_cond.float(), x, alpha_bar, kind) - _epsilon(out_uncond.float(), x, alpha_bar, kind)
    return out_uncond, out_cond, gap.flatten(1).norm(dim=1)


def _batches(n: int, batch_size: int, desc: str, progress: bool) -> Iterator[slice]:
    for start in tqdm(range(0, n, batch_size), desc=desc, disable=not progress, leave=False):
        yield slice(start, min(start + batch_size, n))


@torch.no_grad()
def dmem_trajectory(
    pipe: StableDiffusionPipeline,
    prompts: Sequence[str],
    *,
    num_inference_steps: int = 50,
    guidance_scale: float = 7.5,
    samples_per_prompt: int = 1,
    seed: int = 0,
    batch_size: int = 16,
    resolution: int | None = None,
    progress: bool = True,
    on_images: Callable[[torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """d_mem of each prompt (P,), averaged over the DDIM steps and ``samples_per_prompt`` starting noises.

    Sample j of prompt i starts from the noise that ``generate(pipe, prompts repeated, seed=seed)``
    draws for image i * samples_per_prompt + j, so batching does not change the values. ``on_images``, when
    given, receives each batch's images in that order: the trajectories' ends, which are ``generate``'s images.
    """
    expanded = [p for p in prompts for _ in range(samples_per_prompt)]
    values = []
    for b in _batches(len(expanded), batch_size, "d_mem", progress):
        seeds = range(seed + b.start, seed + b.stop)
        value, latents = _trajectory(pipe, expanded[b], seeds, num_inference_steps, guidance_scale, resolution)
        values.append(value)
        if on_images is not None:
            on_images(decode(pipe, latents))
    return torch.cat(values).view(len(prompts), samples_per_prompt).mean(1) if values else torch.empty(0)


def _trajectory(
    pipe, prompts, seeds, num_inference_steps, guidance_scale, resolution
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each prompt's d_mem on the CPU, and the final latents."""
    device = pipe._execution_device
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(num_inference_steps, device=device)
    cond, uncond = _embeddings(pipe, prompts, device)
    side = (resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor) // pipe.vae_scale_factor
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    shape = (len(prompts), pipe.unet.config.in_channels, side, side)
    latents = randn_tensor(shape, generator=generators, device=device, dtype=cond.dtype) * scheduler.init_noise_sigma
    total = torch.zeros(len(prompts), device=device)
    for t in scheduler.timesteps:
        out_uncond, out_cond, gap = _guidance_pass(pipe.unet, scheduler, latents, t, cond, uncond)
        total += gap
        # As diffusers does: guidance at or below 1 means the conditional prediction alone.
        guided = out_uncond + guidance_scale * (out_cond - out_uncond) if guidance_scale > 1 else out_cond
        latents = scheduler.step(guided, t, latents, return_dict=False)[0]
    return (total / len(scheduler.timesteps)).cpu(), latents


@torch.no_grad()
def dmem_training_noise(
    pipe: StableDiffusionPipeline,
    prompts: Sequence[str],
    latents: LatentCache,
    *,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
) -> torch.Tensor:
    """d_mem of each (prompt, training latent) pair (P,) at one random timestep, as the authors' code computes it.

    The authors then take the maximum (or mean) per batch and average the batches, which depends on
    the batch size; here every value is returned and ``dmem_summary`` gives their mean and maximum.
    Latent samples, noise and timesteps are drawn up front from one CPU generator seeded with ``seed``.
    """
    if len(prompts) != len(latents):
        raise ValueError(f"{len(prompts)} prompts but {len(latents)} latents")
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)  # the training noise schedule
    generator = torch.Generator().manual_seed(seed)
    clean = latents.sample(torch.arange(len(latents)), generator)
    noise = torch.randn(clean.shape, generator=generator)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(clean),), generator=generator)
    noisy = scheduler.add_noise(clean, noise, timesteps)
    device, dtype = pipe._execution_device, pipe.unet.dtype
    values = []
    for b in _batches(len(prompts), batch_size, "d_mem", progress):
        cond, uncond = _embeddings(pipe, prompts[b], device)
        _, _, gap = _guidance_pass(
            pipe.unet, scheduler, noisy[b].to(device, dtype), timesteps[b].to(device), cond, uncond
        )
        values.append(gap.cpu())
    return torch.cat(values) if values else torch.empty(0)


def encode_latents(
    pipe: StableDiffusionPipeline, examples: Sequence[Example], resolution: int, batch_size: int = 16
) -> LatentCache:
    """VAE posteriors of the examples' images, read a batch at a time."""
    batches = (
        load_images(examples[i : i + batch_size], resolution, progress=False)
        for i in range(0, len(examples), batch_size)
    )
    return LatentCache.encode(pipe.vae, batches, progress=False)


def dmem_scores(
    pipe: StableDiffusionPipeline,
    examples: Sequence[Example],
    *,
    mode: str = "trajectory",
    resolution: int | None = None,
    seed: int = 0,
    batch_size: int = 16,
    num_inference_steps: int = 50,
    guidance_scale: float = 7.5,
    samples_per_prompt: int = 1,
    progress: bool = True,
    on_images: Callable[[torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """d_mem of each example (P,): of its caption in ``trajectory`` mode, of its caption and image in
    ``training-noise`` mode.

    ``on_images``: see ``dmem_trajectory``; the training-noise mode generates no images and never calls it.
    """
    prompts = [e.text for e in examples]
    if mode == "trajectory":
        settings = dict(
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            samples_per_prompt=samples_per_prompt,
            on_images=on_images,
        )
        return dmem_trajectory(
            pipe, prompts, seed=seed, batch_size=batch_size, resolution=resolution, progress=progress, **settings
        )
    if mode == "training-noise":
        resolution = resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor
        latents = encode_latents(pipe, examples, resolution, batch_size)
        return dmem_training_noise(pipe, prompts, latents, seed=seed, batch_size=batch_size, progress=progress)
    raise UserError(f"d_mem mode {mode!r}: expected one of {', '.join(DMEM_MODES)}")


def dmem_summary(values: torch.Tensor) -> dict[str, float]:
    """Mean and maximum over prompts: the mean is the search objective, the maximum flags single memorised prompts."""
    return {"dmem_mean": float(values.mean()), "dmem_max": float(values.max())}
