"""memcontrol: fine-tune text-to-image diffusion models without memorizing their training images."""

__version__ = "0.1.0"
