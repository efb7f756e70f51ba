"""A random-weight diffusers folder with Stable Diffusion v1.5's exact architecture (test and benchmark support).

It exercises the real SD v1.5 code path (shapes, memory, time, mask sites) without its weights, which
cannot be downloaded here: the U-Net is ``architectures/sd15.json``; the VAE, the CLIP ViT-L/14 text
encoder and the PNDM scheduler use the configs the runwayml/stable-diffusion-v1-5 folder ships.

The tokenizer is the one honest compromise. SD v1.5's CLIP BPE vocabulary (49,408 tokens and 48,894
merges) is not available offline, so the folder gets a ``CLIPTokenizer`` (the class SD v1.5 uses, the same
padding to 77 tokens with ``<|endoftext|>`` and truncation) built from a character-level vocabulary: the
256 byte-level characters and their ``</w>`` (end of word) forms, with no merges, and the two special
tokens. Every id is the one the real CLIP vocabulary gives that character or special token (a character
is id 0-511, ``<|startoftext|>`` 49406, ``<|endoftext|>`` 49407), so all ids fall in the text encoder's
49,408-row embedding; a caption simply takes one token per character instead of one per word piece.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from memcontrol.data.imagefolder import write_metadata
from memcontrol.models.architectures import unet_config

# Parameter counts of the published SD v1.5 components, which the configs below reproduce.
PARAMETER_COUNTS = {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}

VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
TEXT_ENCODER_CONFIG = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}
SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "skip_prk_steps": True,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}
START_TOKEN, END_TOKEN = "<|startoftext|>", "<|endoftext|>"
SPECIAL_TOKEN_IDS = {START_TOKEN: 49406, END_TOKEN: 49407}
MAX_TOKENS = 77


def byte_level_characters() -> list[str]:
    """The 256 printable stand-ins of bytes that GPT-2 and CLIP BPE work on, in CLIP's vocabulary order."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    others = [b for b in range(256) if b not in printable]
    return [chr(c) for c in printable] + [chr(256 + i) for i in range(len(others))]


def character_tokenizer() -> CLIPTokenizer:
    """A CLIPTokenizer on a character-level vocabulary whose ids are CLIP's own (see the module docstring)."""
    characters = byte_level_characters()
    vocab = {c: i for i, c in enumerate(characters + [c + "</w>" for c in characters])}
    return CLIPTokenizer(
        vocab={**vocab, **SPECIAL_TOKEN_IDS},
        merges=[],
        bos_token=START_TOKEN,
        eos_token=END_TOKEN,
        pad_token=END_TOKEN,
        unk_token=END_TOKEN,
        model_max_length=MAX_TOKENS,
    )


def random_sd15_pipeline(seed: int = 0, sample_size: int = 64) -> StableDiffusionPipeline:
    """SD v1.5's U-Net, VAE, text encoder and PNDM scheduler with random weights (about 4.3 GB in float32).

    ``sample_size``: the U-Net's latent side, SD v1.5's 64 (512 px) by default. It changes no weight, only the
    resolution of commands that use the model's native size (``audit``): 8 makes that 64 px, minutes faster on a CPU.
    """
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config({**unet_config("sd15"), "sample_size": sample_size})
    return StableDiffusionPipeline(
        vae=AutoencoderKL(**VAE_CONFIG),
        text_encoder=CLIPTextModel(CLIPTextConfig(**TEXT_ENCODER_CONFIG)),
        tokenizer=character_tokenizer(),
        unet=unet,
        scheduler=PNDMScheduler(**SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def write_random_sd15(path: str | Path, seed: int = 0, sample_size: int = 64) -> Path:
    """Write the random-weight SD v1.5 folder (safetensors) to ``path``; about 35 s and 4.3 GB on disk."""
    path = Path(path)
    random_sd15_pipeline(seed, sample_size).save_pretrained(path, safe_serialization=True)
    return path


FINDINGS = (
    "no acute cardiopulmonary process",
    "small left pleural effusion",
    "mild cardiomegaly",
    "right lower lobe opacity",
)


def write_random_imagefolder(path: str | Path, count: int = 12, size: int = 64, seed: int = 0) -> Path:
    """``count`` random RGB images of ``size`` px with report-like captions, two images per subject: data to push
    through the SD v1.5 architecture (what the images show does not matter to a random-weight model)."""
    path = Path(path)
    (path / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        name = f"images/{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path / name)
        rows.append(
            {"file_name": name, "text": f"chest x-ray {i}: {FINDINGS[i % len(FINDINGS)]}", "subject_id": f"p{i // 2}"}
        )
    write_metadata(path, rows)
    return path
