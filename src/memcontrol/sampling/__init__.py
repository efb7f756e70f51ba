"""Seeded, batched image generation through diffusers' StableDiffusionPipeline."""

from memcontrol.sampling.generate import generate, save_images, to_pil

__all__ = ["generate", "save_images", "to_pil"]
