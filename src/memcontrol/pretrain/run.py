"""``memcontrol pretrain``: build the built-in base model from scratch on general-domain data."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator

from memcontrol.config import TrainConfig, as_dict, opt
from memcontrol.data.cache import CaptionEmbeddings, LatentCache
from memcontrol.io import atomic_dir, write_json
from memcontrol.models.pipeline import RECOMMENDATIONS_FILE
from memcontrol.peft import get_method
from memcontrol.pretrain.check import position_accuracy, shape_accuracy
from memcontrol.pretrain.components import RESOLUTION, random_pipeline
from memcontrol.pretrain.data import general_domain
from memcontrol.pretrain.vae import load_conditioned_unet, load_vae, measure_vae, train_vae
from memcontrol.scenario import digit_accuracy
from memcontrol.train.engine import TrainingSet, fine_tune

# Guidance above ~1.5 breaks caption following in a model this small (feasibility notes).
RECOMMENDED_SAMPLING = {"guidance_scale": 1.5, "num_inference_steps": 25}
# TrainConfig defaults for pretraining, where they differ from fine-tuning.
PRETRAIN_DEFAULTS = dict(max_train_steps=2500, learning_rate=1e-3, lr_scheduler="cosine", lr_warmup_steps=100)


@dataclass
class PretrainConfig:
    num_images: int = opt(20000, "general-domain images (shapes, photo crops, printed digits) to pretrain on", min=1)
    digit_share: float = opt(0.0, "share of the images that are printed digits ('a serif digit seven')", min=0, max=0.9)
    vae_from: str | None = opt(None, "reuse the VAE of this base-model folder instead of training one")
    unet_from: str | None = opt(
        None, "continue pretraining this base-model folder's U-Net, under its own text encoder (to add printed digits)"
    )
    vae_steps: int = opt(2000, "VAE optimisation steps (batch 64)", min=0)
    vae_learning_rate: float = opt(2e-3, "VAE AdamW learning rate (cosine decay)", min=0)
    check_samples: int = opt(16, "samples per shape, quarter and digit in the caption-following checks", min=1)


def pretrain(
    output_dir: str | Path, cfg: PretrainConfig, train_cfg: TrainConfig, accelerator: Accelerator, progress: bool = True
) -> dict:
    """Pretrain the VAE (or reuse one), then the U-Net (or continue one) under the frozen text encoder; save the folder.

    The text encoder keeps its random initialisation: with word-level tokens a frozen random encoder
    is followed (feasibility notes), and training it jointly left position words unfollowed (measured).
    """
    pipe = random_pipeline(train_cfg.seed)
    if cfg.vae_from:
        pipe.vae = load_vae(cfg.vae_from)
    if cfg.unet_from:
        # The U-Net learned its captions through that folder's frozen encoder; a reseeded one would mean other words.
        pipe.unet, pipe.text_encoder, pipe.tokenizer = load_conditioned_unet(cfg.unet_from)
    pipe.to(accelerator.device)
    images, captions = general_domain(cfg.num_images, RESOLUTION, seed=train_cfg.seed, digit_share=cfg.digit_share)
    if cfg.vae_from:
        report = measure_vae(pipe.vae, images)
    else:
        report = train_vae(
            pipe.vae,
            images,
            steps=cfg.vae_steps,
            learning_rate=cfg.vae_learning_rate,
            seed=train_cfg.seed,
            progress=progress,
        )
    pipe.vae.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    data = TrainingSet(
        LatentCache.encode(pipe.vae, images.split(256), progress=progress),
        CaptionEmbeddings(pipe.tokenizer, pipe.text_encoder, captions, progress=progress),
    )
    result = fine_tune(pipe, get_method("full"), (), data, train_cfg, accelerator, progress)
    report.update(
        unet_final_loss=result.losses[-1][1] if result.losses else None,
        unet_seconds=round(result.seconds, 1),
        shape_accuracy=shape_accuracy(pipe, samples_per_shape=cfg.check_samples, **RECOMMENDED_SAMPLING),
        position_accuracy=position_accuracy(pipe, samples_per_quarter=cfg.check_samples, **RECOMMENDED_SAMPLING),
        handwritten_digit_accuracy=digit_accuracy(
            pipe, RESOLUTION, per_class=cfg.check_samples, **RECOMMENDED_SAMPLING
        ),
        config={**as_dict(cfg, train_cfg)},
        torch=torch.__version__,
        machine=platform.machine(),
    )
    with atomic_dir(output_dir) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        write_json(tmp / RECOMMENDATIONS_FILE, RECOMMENDED_SAMPLING)
        write_json(tmp / "pretrain_report.json", report)
    return report
