"""Train the built-in VAE so that its latents are the image itself: pixel-space diffusion on SD's code path.

Measured on this architecture: a U-Net trained on freely learned latents of this VAE drew the named
shape but put it in the named quarter only at chance (22%), while the same U-Net, data and steps on
the pixels put it there 97% of the time (and only a model that follows its captions this closely
can memorise a caption's image). So the encoder is trained to output the pixels as its latent
(channels R, G, B and grey) and the decoder to map such latents back: the latent space is the
pixel space, and every component stays the one Stable Diffusion has.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel
from tqdm.auto import tqdm
from transformers import AutoTokenizer, CLIPTextModel, PreTrainedTokenizerBase

from memcontrol.errors import UserError
from memcontrol.train.state import BatchIndices

# The posterior's spread, fixed rather than learned (no loss trains it): about one pixel grey level on
# the [-1, 1] scale, so that drawing latents from the posterior (--latent_sampling sample) stays faithful.
POSTERIOR_STD = 0.01


def pixel_latents(images: torch.Tensor) -> torch.Tensor:
    """The latent the encoder is trained to give: R, G, B and their mean (grey), in [-1, 1]."""
    return torch.cat([images, images.mean(1, keepdim=True)], 1)


def train_vae(
    vae: AutoencoderKL,
    images: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    """Fit ``vae`` to ``images`` in [-1, 1] with pixel latents; latents need no scaling (``scaling_factor`` 1)."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1), eta_min=learning_rate * 0.05)
    batches = BatchIndices(len(images), batch_size, generator)
    vae.train()
    bar = tqdm(range(steps), desc="pretrain vae", disable=not progress, leave=False)
    for _ in bar:
        x = images[next(batches)].to(vae.device)
        target = pixel_latents(x)
        posterior = vae.encode(x).latent_dist
        # The decoder also learns from the exact pixel latents, since sampling hands it latents the encoder never gave.
        loss = (
            F.mse_loss(posterior.mean, target)
            + F.mse_loss(vae.decode(posterior.mean).sample, x)
            + F.mse_loss(vae.decode(target).sample, x)
        )
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.5f}")
    vae.eval()
    fix_posterior_std(vae, POSTERIOR_STD)
    vae.register_to_config(scaling_factor=1.0)
    return measure_vae(vae, images)


@torch.no_grad()
def fix_posterior_std(vae: AutoencoderKL, std: float) -> None:
    """Make the posterior's standard deviation ``std`` for every image; its mean is left exactly as it was.

    The log-variance channels are the last half of ``quant_conv``'s outputs, a 1x1 convolution: their rows
    are zeroed and their bias set, which leaves the mean's rows untouched.
    """
    logvar = slice(vae.config.latent_channels, None)
    vae.quant_conv.weight[logvar] = 0
    vae.quant_conv.bias[logvar] = 2 * math.log(std)


def _component_folder(model_dir: str | Path, component: str, flag: str) -> Path:
    folder = Path(model_dir) / component
    if not (folder / "config.json").is_file():
        raise UserError(
            f"{flag} {model_dir}: expected a base-model folder with {component}/config.json"
            " (memcontrol pretrain's output)"
        )
    return folder


def load_vae(model_dir: str | Path) -> AutoencoderKL:
    """The VAE of a base-model folder (``memcontrol pretrain``'s output), frozen."""
    return AutoencoderKL.from_pretrained(_component_folder(model_dir, "vae", "--vae_from")).eval()


def load_conditioned_unet(model_dir: str | Path) -> tuple[UNet2DConditionModel, CLIPTextModel, PreTrainedTokenizerBase]:
    """The U-Net of a base-model folder with the text encoder and tokenizer it was trained under."""
    unet = UNet2DConditionModel.from_pretrained(_component_folder(model_dir, "unet", "--unet_from"))
    text_encoder = CLIPTextModel.from_pretrained(_component_folder(model_dir, "text_encoder", "--unet_from"))
    return unet, text_encoder, AutoTokenizer.from_pretrained(Path(model_dir) / "tokenizer")


@torch.no_grad()
def measure_vae(vae: AutoencoderKL, images: torch.Tensor) -> dict[str, float]:
    """Errors on the [0, 1] scale: reconstruction, and latent against the pixels."""
    sample = images[: min(len(images), 1024)].to(vae.device)
    latents = vae.encode(sample).latent_dist.mean
    reconstruction = vae.decode(latents).sample
    return {"vae_rmse": _rmse(reconstruction, sample), "latent_pixel_rmse": _rmse(latents, pixel_latents(sample))}


def _rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    """Root mean square difference of two [-1, 1] tensors, on the [0, 1] scale."""
    return float(((a - b) / 2).pow(2).mean().sqrt())
