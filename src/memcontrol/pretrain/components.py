"""The built-in base model's architecture: a Stable Diffusion pipeline small enough for a CPU.

Same components and code path as SD v1.5 (CLIP text encoder, AutoencoderKL, UNet2DConditionModel,
DDIM), sized down: 16 px RGB images, a VAE that keeps the resolution (4 x 16 x 16 latents; a
downsampling VAE costs reconstruction error that a tiny model cannot afford), cross-attention at
8 x 8 and 4 x 4, and a word-level tokenizer.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline
from transformers import CLIPTextConfig, CLIPTextModel

from memcontrol.data.vocabulary import CAPTION_WORDS, CASE_CODES
from memcontrol.models.architectures import build_unet
from memcontrol.models.tokenizer import build_word_tokenizer
from memcontrol.pretrain.data import PRETRAIN_WORDS

RESOLUTION = 16
MAX_TOKENS = 16
VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",),
    up_block_types=("UpDecoderBlock2D",),
    block_out_channels=(16,),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=RESOLUTION,
    mid_block_add_attention=False,
)
TEXT_ENCODER_CONFIG = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=MAX_TOKENS,
)
# Cosine schedule: the linear one of SD leaves too much signal at t = T for 16 px images.
# clip_sample=False: latents are not bounded to [-1, 1].
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_schedule="squaredcos_cap_v2",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
)


def builtin_vocabulary() -> list[str]:
    return sorted({*PRETRAIN_WORDS, *CAPTION_WORDS, *CASE_CODES})


def random_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """Randomly initialised built-in architecture, the starting point of ``memcontrol pretrain``."""
    torch.manual_seed(seed)
    tokenizer = build_word_tokenizer(builtin_vocabulary(), max_length=MAX_TOKENS)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **TEXT_ENCODER_CONFIG,
    )
    return StableDiffusionPipeline(
        vae=AutoencoderKL(**VAE_CONFIG),
        text_encoder=CLIPTextModel(text_config),
        tokenizer=tokenizer,
        unet=build_unet("tiny", device="cpu"),
        scheduler=DDIMScheduler(**SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
