"""Train the built-in VAE: reconstruction plus a small KL term that keeps the latent space smooth."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from tqdm.auto import tqdm

from memcontrol.train.engine import batch_indices


def train_vae(
    vae: AutoencoderKL,
    images: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    kl_weight: float = 1e-4,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    """Fit ``vae`` to ``images`` in [-1, 1], then set its ``scaling_factor`` to 1 / std of the latents."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1), eta_min=learning_rate * 0.05)
    batches = batch_indices(len(images), batch_size, generator)
    vae.train()
    bar = tqdm(range(steps), desc="pretrain vae", disable=not progress, leave=False)
    for _ in bar:
        x = images[next(batches)].to(vae.device)
        posterior = vae.encode(x).latent_dist
        reconstruction = vae.decode(posterior.sample(generator=None)).sample
        loss = F.mse_loss(reconstruction, x) + kl_weight * posterior.kl().mean() / posterior.mean[0].numel()
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.5f}")
    vae.eval()
    return _calibrate(vae, images)


@torch.no_grad()
def _calibrate(vae: AutoencoderKL, images: torch.Tensor) -> dict[str, float]:
    sample = images[: min(len(images), 1024)].to(vae.device)
    latents = vae.encode(sample).latent_dist.mean
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    reconstruction = vae.decode(latents).sample
    rmse = float(((reconstruction - sample) / 2).pow(2).mean().sqrt())  # on the [0, 1] scale
    return {"vae_rmse": rmse, "scaling_factor": vae.config.scaling_factor}
