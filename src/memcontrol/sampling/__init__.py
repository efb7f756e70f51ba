"""Seeded, batched image generation through diffusers' StableDiffusionPipeline."""

from memcontrol.sampling.generate import decode, generate, save_images, to_pil

__all__ = ["decode", "generate", "save_images", "to_pil"]
