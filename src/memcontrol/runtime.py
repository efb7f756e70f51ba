"""Device and precision, chosen at run time: the same code runs on a laptop CPU and on a GPU."""

from __future__ import annotations

import os

import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from diffusers import StableDiffusionPipeline

from memcontrol.config import ModelConfig
from memcontrol.models.pipeline import load_pipeline

WEIGHT_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def make_accelerator(cfg: ModelConfig) -> Accelerator:
    # accelerate keeps one process-wide state; a search or a test suite trains many models in one
    # process, possibly at different precisions, so each run starts from a fresh state.
    AcceleratorState._reset_state()
    torch.backends.cuda.matmul.allow_tf32 = cfg.allow_tf32  # set either way: a process may run jobs with either value
    return Accelerator(mixed_precision=cfg.mixed_precision, cpu=cfg.device == "cpu")


# What torchrun (accelerate launch) tells each process it started; without them a process runs alone.
LAUNCHER_VARIABLES = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "GROUP_WORLD_SIZE",
    "ROLE_RANK",
    "ROLE_WORLD_SIZE",
    "ROLE_NAME",
    "MASTER_ADDR",
    "MASTER_PORT",
)


def launched_processes() -> int:
    """How many processes accelerate launch (torchrun) started for this command: 1 when run directly."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    """This process's number among them (0: the main one), read without starting the process group."""
    return int(os.environ.get("RANK", "0"))


def one_process_environment() -> dict[str, str]:
    """This process's environment for a child that is to run alone: without the launcher's variables (so that its
    accelerate state is not distributed), and on this process's own GPU."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES and not k.startswith("TORCHELASTIC_")}
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    env["CUDA_VISIBLE_DEVICES"] = visible[local_rank] if local_rank < len(visible) else str(local_rank)
    return env


def is_main_process() -> bool:
    """Whether this process is the one that writes and prints (always, unless accelerate launch started several)."""
    return PartialState().is_main_process


def load_for_training(cfg: ModelConfig, accelerator: Accelerator) -> StableDiffusionPipeline:
    """The pipeline on the accelerator's device; frozen VAE and text encoder in the mixed-precision dtype.

    The U-Net stays in float32 so that its trainable weights are updated at full precision; training casts
    the parts a method freezes (``cast_frozen``).
    """
    pipe = load_pipeline(cfg.pretrained_model_name_or_path, device=accelerator.device)
    weight_dtype = WEIGHT_DTYPES[cfg.mixed_precision]
    for frozen in (pipe.vae, pipe.text_encoder):
        frozen.requires_grad_(False)
        frozen.to(dtype=weight_dtype)
    return pipe


def cast_frozen(module: torch.nn.Module, trainable: list[torch.nn.Parameter], dtype: torch.dtype) -> None:
    """Frozen floating-point parameters and buffers of ``module`` to ``dtype``, in place; ``trainable`` stay as they
    are.

    As diffusers' LoRA scripts do: under mixed precision a PEFT run keeps the frozen bulk of the U-Net in half
    (half the memory, no per-step casts of frozen weights) and its few trainable weights in float32.
    """
    if dtype == torch.float32:
        return
    keep = {id(p) for p in trainable}
    for tensor in (*module.parameters(), *module.buffers()):
        if id(tensor) not in keep and tensor.is_floating_point():
            tensor.data = tensor.data.to(dtype)


def native_resolution(pipe: StableDiffusionPipeline) -> int:
    return pipe.unet.config.sample_size * pipe.vae_scale_factor
