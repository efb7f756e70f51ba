"""Generation with DDIM. Image ``i`` of a call is drawn from seed ``seed + i`` on a CPU generator, so it
does not depend on the batch size or the device's random number generator."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from diffusers.utils import make_image_grid
from PIL import Image
from tqdm.auto import tqdm

from memcontrol.io import atomic_path, ensure_writable_dir


@torch.no_grad()
def generate(
    pipe: StableDiffusionPipeline,
    prompts: Sequence[str],
    *,
    seed: int = 0,
    num_inference_steps: int = 25,
    guidance_scale: float = 7.5,
    batch_size: int = 16,
    resolution: int | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Images for ``prompts`` as a float tensor (N, 3, H, W) in [0, 1] on the CPU."""
    if not isinstance(pipe.scheduler, DDIMScheduler):
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.unet.eval()
    pipe.set_progress_bar_config(disable=True)  # one bar for the whole call instead
    out = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="generate", disable=not progress, leave=False):
        chunk = list(prompts[start : start + batch_size])
        generators = [torch.Generator().manual_seed(seed + start + i) for i in range(len(chunk))]
        images = pipe(
            chunk,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=generators,
            height=resolution,
            width=resolution,
            output_type="pt",
        ).images
        out.append(images.float().cpu())
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def decode(pipe: StableDiffusionPipeline, latents: torch.Tensor) -> torch.Tensor:
    """Final latents -> images (N, 3, H, W) in [0, 1] on the CPU, decoded as the pipeline decodes ``generate``'s."""
    images = pipe.vae.decode(latents.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor, return_dict=False)[0]
    return pipe.image_processor.postprocess(images, output_type="pt").float().cpu()


def to_pil(images: torch.Tensor, upscale: int = 1) -> list[Image.Image]:
    """[0, 1] tensors -> PIL images, optionally enlarged (nearest) so tiny images can be looked at."""
    arrays = (images.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    pils = [Image.fromarray(a) for a in arrays]
    if upscale > 1:
        pils = [p.resize((p.width * upscale, p.height * upscale), Image.NEAREST) for p in pils]
    return pils


def save_images(images: torch.Tensor, output_dir: str | Path, *, columns: int = 8, grid_name: str = "grid.png") -> Path:
    """Write each image as ``NNNN.png`` and a grid of all of them; returns the grid's path."""
    output_dir = ensure_writable_dir(output_dir)
    pils = to_pil(images)
    for i, image in enumerate(pils):
        with atomic_path(output_dir / f"{i:04d}.png") as tmp:
            image.save(tmp, format="PNG")
    return save_grid(images, output_dir / grid_name, columns=columns)


def save_grid(images: torch.Tensor, path: str | Path, *, columns: int = 8) -> Path:
    upscale = max(1, 64 // images.shape[-1])
    pils = to_pil(images, upscale)
    rows = -(-len(pils) // columns)
    pils += [Image.new("RGB", pils[0].size)] * (rows * columns - len(pils))
    with atomic_path(path) as tmp:
        make_image_grid(pils, rows, columns).save(tmp, format="PNG")
    return Path(path)
