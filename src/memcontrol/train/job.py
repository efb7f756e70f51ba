"""``memcontrol train``: data -> base model -> cached latents -> fine-tune -> save -> sample grid."""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers import StableDiffusionPipeline

from memcontrol.config import DataConfig, ModelConfig, SampleConfig, TrainConfig, as_dict
from memcontrol.data.imagefolder import Example
from memcontrol.data.prepare import PreparedData, image_batches, prepare_data
from memcontrol.io import ensure_writable_dir, write_json
from memcontrol.mitigations import MitigationOptions, get_mitigation
from memcontrol.models.pipeline import recommendations
from memcontrol.peft import Mask, MethodOptions, PeftMethod, get_method
from memcontrol.peft.mask_file import resolve_mask
from memcontrol.runtime import WEIGHT_DTYPES, load_for_training, make_accelerator, native_resolution
from memcontrol.sampling import generate, save_images
from memcontrol.train.cache import CaptionEmbeddings, LatentCache
from memcontrol.train.checkpoint import base_model_reference, save_trained
from memcontrol.train.engine import TrainingSet, TrainResult, fine_tune
from memcontrol.train.state import CHECKPOINTS_DIR, Checkpoints, recorded_options

SAMPLE_PROMPTS = 8  # per group (D_mem, validation) in the grid written after training


def build_training_set(
    pipe: StableDiffusionPipeline, examples: list[Example], resolution: int, num_workers: int = 0, progress: bool = True
) -> TrainingSet:
    """Encode each distinct image once (D_mem copies share their latents) and each caption once."""
    unique = list(dict.fromkeys(examples))
    latents = LatentCache.encode(pipe.vae, image_batches(unique, resolution, num_workers=num_workers), progress=progress)
    position = {e: i for i, e in enumerate(unique)}
    order = [position[e] for e in examples]
    latents = LatentCache(latents.mean[order], latents.std[order], latents.scaling_factor)
    return TrainingSet(latents, CaptionEmbeddings(pipe.tokenizer, pipe.text_encoder, [e.text for e in examples], progress=progress))


def sample_settings(base_model: str | None, sample_cfg: SampleConfig) -> dict:
    """Guidance and steps from the flags, else from the base model folder's recommendation."""
    recommended = recommendations(base_model)
    return {
        "guidance_scale": sample_cfg.guidance_scale if sample_cfg.guidance_scale is not None else recommended["guidance_scale"],
        "num_inference_steps": sample_cfg.num_inference_steps or recommended["num_inference_steps"],
    }


def run_train(
    model_cfg: ModelConfig,
    data_cfg: DataConfig,
    train_cfg: TrainConfig,
    sample_cfg: SampleConfig,
    output_dir: str | Path,
    progress: bool = True,
    accelerator: Accelerator | None = None,
) -> dict:
    output_dir = ensure_writable_dir(output_dir)
    data = prepare_data(data_cfg)
    method = get_method(train_cfg.method, MethodOptions.from_config(train_cfg))
    mitigation = get_mitigation(train_cfg.mitigation, MitigationOptions.from_config(train_cfg))
    accelerator = accelerator or make_accelerator(model_cfg)
    pipe = load_for_training(model_cfg, accelerator)
    mask = resolve_mask(train_cfg.mask, method, pipe.unet)
    checkpoints = run_checkpoints(output_dir, model_cfg, data_cfg, train_cfg, mask, accelerator)
    resolution = data_cfg.resolution or native_resolution(pipe)
    training_set = build_training_set(pipe, data.training, resolution, data_cfg.dataloader_num_workers, progress)
    result = fine_tune(
        pipe, method, mask, training_set, train_cfg, accelerator,
        progress=progress, mitigation=mitigation, checkpoints=checkpoints,
    )
    summary = train_summary(result)
    save_trained(output_dir, pipe, method, mask, {
        "base_model": base_model_reference(model_cfg.pretrained_model_name_or_path),
        "resolution": resolution,
        "config": as_dict(model_cfg, data_cfg, train_cfg, sample_cfg),
        "data": data.describe(),
        "result": summary,
    })
    write_json(output_dir / "losses.json", result.losses)
    merge_for_sampling(pipe, method, model_cfg.mixed_precision)
    settings = sample_settings(model_cfg.pretrained_model_name_or_path, sample_cfg)
    sample_grid(pipe, data, resolution, settings, sample_cfg.sample_batch_size, train_cfg.seed, output_dir, progress)
    return summary


def resumed(train_cfg: TrainConfig) -> str | None:
    """What a stage that was interrupted resumes from: --resume_from_checkpoint if given, else the latest checkpoint
    of its folder when it saves any (a stage run for the first time finds none and starts from step 0)."""
    return train_cfg.resume_from_checkpoint or ("latest" if train_cfg.checkpointing_steps else None)


def run_checkpoints(
    output_dir: Path, model_cfg: ModelConfig, data_cfg: DataConfig, train_cfg: TrainConfig, mask: Mask,
    accelerator: Accelerator,
) -> Checkpoints | None:
    """The run's checkpoints in ``output_dir/checkpoints``, recording the options (and the mask's bits, whatever
    named them) that a resumed run must share; None when it neither saves nor resumes any."""
    if not train_cfg.checkpointing_steps and train_cfg.resume_from_checkpoint is None:
        return None
    options = {**as_dict(model_cfg, data_cfg, train_cfg), "mask": "".join(map(str, mask))}
    options["num_processes"] = accelerator.num_processes
    defaults = {**as_dict(ModelConfig(), DataConfig(), TrainConfig()), "num_processes": 1}
    return Checkpoints(
        output_dir / CHECKPOINTS_DIR, train_cfg.checkpointing_steps, train_cfg.checkpoints_total_limit,
        train_cfg.resume_from_checkpoint, recorded_options(options), recorded_options(defaults),
    )


def train_summary(result: TrainResult) -> dict:
    """What a fine-tuning run reports: in the manifest, and in a search trial's record."""
    return {
        "trainable_parameters": result.trainable_parameters,
        "total_parameters": result.total_parameters,
        "trainable_fraction": result.trainable_fraction,
        "steps": result.steps,
        "seconds": round(result.seconds, 2),
        "final_loss": result.losses[-1][1] if result.losses else None,
        "dropped_samples": result.dropped_samples,
        "skipped_batches": result.skipped_batches,
    }


def merge_for_sampling(pipe: StableDiffusionPipeline, method: PeftMethod, mixed_precision: str) -> None:
    """Sample from plain weights in the frozen parts' dtype: base speed, and no fp32/half mix in one pipeline."""
    pipe.unet = method.merge(pipe.unet).to(WEIGHT_DTYPES[mixed_precision]).eval()


def sample_grid(
    pipe: StableDiffusionPipeline, data: PreparedData, resolution: int, settings: dict, batch_size: int, seed: int,
    output_dir: Path, progress: bool, made: dict[str, torch.Tensor] | None = None,
) -> None:
    """Samples for D_mem captions (memorization shows here) and for validation captions (quality), image i of each
    group from seed + i; ``made``: a group's images already generated so (by "dmem" or "validation"), not made again."""
    groups = {"dmem": data.dmem, "validation": data.splits["validation"]}
    groups = {name: [e.text for e in examples[:SAMPLE_PROMPTS]] for name, examples in groups.items() if examples}
    if not groups:
        return
    made = made or {}
    images = [
        made[name] if name in made and len(made[name]) == len(prompts)
        else generate(pipe, prompts, seed=seed, resolution=resolution, batch_size=batch_size, progress=progress, **settings)
        for name, prompts in groups.items()
    ]
    save_images(torch.cat(images), output_dir / "samples", columns=SAMPLE_PROMPTS)
    prompts = [p for group in groups.values() for p in group]
    seeds = [seed + i for group in groups.values() for i in range(len(group))]
    write_json(output_dir / "samples" / "prompts.json", {"prompts": prompts, "seeds": seeds, **settings})
