"""Device and precision, chosen at run time: the same code runs on a laptop CPU and on a GPU."""

from __future__ import annotations

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from diffusers import StableDiffusionPipeline

from memcontrol.config import ModelConfig
from memcontrol.models.pipeline import load_pipeline

WEIGHT_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def make_accelerator(cfg: ModelConfig) -> Accelerator:
    # accelerate keeps one process-wide state; a search or a test suite trains many models in one
    # process, possibly at different precisions, so each run starts from a fresh state.
    AcceleratorState._reset_state()
    return Accelerator(mixed_precision=cfg.mixed_precision, cpu=cfg.device == "cpu")


def load_for_training(cfg: ModelConfig, accelerator: Accelerator) -> StableDiffusionPipeline:
    """The pipeline on the accelerator's device; frozen VAE and text encoder in the mixed-precision dtype.

    The U-Net stays in float32 so that its trainable weights are updated at full precision.
    """
    pipe = load_pipeline(cfg.pretrained_model_name_or_path, device=accelerator.device)
    weight_dtype = WEIGHT_DTYPES[cfg.mixed_precision]
    for frozen in (pipe.vae, pipe.text_encoder):
        frozen.requires_grad_(False)
        frozen.to(dtype=weight_dtype)
    return pipe


def native_resolution(pipe: StableDiffusionPipeline) -> int:
    return pipe.unet.config.sample_size * pipe.vae_scale_factor
