"""A fine-tuning run (`memcontrol train`, stage 2 of `memcontrol run`): data -> base model -> cached latents ->
fine-tune -> save -> sample grid."""

from __future__ import annotations

from pathlib import Path

from accelerate import Accelerator
from diffusers import StableDiffusionPipeline

from memcontrol.config import DataConfig, ModelConfig, SampleConfig, TrainConfig, as_dict
from memcontrol.data.cache import CaptionEmbeddings, LatentCache
from memcontrol.data.imagefolder import Example
from memcontrol.data.prepare import image_batches, prepare_data
from memcontrol.io import ensure_writable_dir, write_json
from memcontrol.mitigations import get_mitigation
from memcontrol.peft import Mask, PeftMethod, get_method
from memcontrol.peft.mask_file import resolve_mask
from memcontrol.peft.trained import base_model_reference, save_trained
from memcontrol.runtime import WEIGHT_DTYPES, load_for_training, make_accelerator, native_resolution
from memcontrol.sampling.samples import sample_grid, sample_settings
from memcontrol.train.engine import TrainingSet, fine_tune
from memcontrol.train.state import CHECKPOINTS_DIR, Checkpoints, TrainResult, recorded_options


def build_training_set(
    pipe: StableDiffusionPipeline, examples: list[Example], resolution: int, num_workers: int = 0, progress: bool = True
) -> TrainingSet:
    """Encode each distinct image once (D_mem copies share their latents) and each caption once."""
    unique = list(dict.fromkeys(examples))
    latents = LatentCache.encode(
        pipe.vae, image_batches(unique, resolution, num_workers=num_workers), progress=progress
    )
    position = {e: i for i, e in enumerate(unique)}
    order = [position[e] for e in examples]
    latents = LatentCache(latents.mean[order], latents.std[order], latents.scaling_factor)
    return TrainingSet(
        latents, CaptionEmbeddings(pipe.tokenizer, pipe.text_encoder, [e.text for e in examples], progress=progress)
    )


def run_train(
    model_cfg: ModelConfig,
    data_cfg: DataConfig,
    train_cfg: TrainConfig,
    sample_cfg: SampleConfig,
    output_dir: str | Path,
    progress: bool = True,
    accelerator: Accelerator | None = None,
) -> dict:
    """Under ``accelerate launch`` every process trains its share of each batch; the main process writes the outputs."""
    output_dir = ensure_writable_dir(output_dir)
    accelerator = accelerator or make_accelerator(model_cfg)
    progress = progress and accelerator.is_main_process  # one set of progress bars
    with accelerator.main_process_first():  # a built-in data set is written on first use: by one process
        data = prepare_data(data_cfg)
    method = get_method(train_cfg.method, train_cfg.plugin_options)
    mitigation = get_mitigation(train_cfg.mitigation, train_cfg.plugin_options)
    pipe = load_for_training(model_cfg, accelerator)
    mask = resolve_mask(train_cfg.mask, method, pipe.unet)
    checkpoints = run_checkpoints(output_dir, model_cfg, data_cfg, train_cfg, mask, accelerator)
    resolution = data_cfg.resolution or native_resolution(pipe)
    training_set = build_training_set(pipe, data.training, resolution, data_cfg.dataloader_num_workers, progress)
    result = fine_tune(
        pipe,
        method,
        mask,
        training_set,
        train_cfg,
        accelerator,
        progress=progress,
        mitigation=mitigation,
        checkpoints=checkpoints,
    )
    summary = train_summary(result)
    if accelerator.is_main_process:  # the other processes trained their shares of the batches: one writes
        save_trained(
            output_dir,
            pipe,
            method,
            mask,
            {
                "base_model": base_model_reference(model_cfg.pretrained_model_name_or_path),
                "resolution": resolution,
                "config": as_dict(model_cfg, data_cfg, train_cfg, sample_cfg),
                "data": data.describe(),
                "result": summary,
            },
        )
        write_json(output_dir / "losses.json", result.losses)
        merge_for_sampling(pipe, method, model_cfg.mixed_precision)
        settings = sample_settings(model_cfg.pretrained_model_name_or_path, sample_cfg)
        batch_size = sample_cfg.sample_batch_size
        sample_grid(pipe, data, resolution, settings, batch_size, train_cfg.seed, output_dir, progress)
    accelerator.wait_for_everyone()  # every process returns once the outputs are there
    return summary


def resumed(train_cfg: TrainConfig) -> str | None:
    """What a stage that was interrupted resumes from: --resume_from_checkpoint if given, else the latest checkpoint
    of its folder when it saves any (a stage run for the first time finds none and starts from step 0)."""
    return train_cfg.resume_from_checkpoint or ("latest" if train_cfg.checkpointing_steps else None)


def run_checkpoints(
    output_dir: Path,
    model_cfg: ModelConfig,
    data_cfg: DataConfig,
    train_cfg: TrainConfig,
    mask: Mask,
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
        output_dir / CHECKPOINTS_DIR,
        train_cfg.checkpointing_steps,
        train_cfg.checkpoints_total_limit,
        train_cfg.resume_from_checkpoint,
        recorded_options(options),
        recorded_options(defaults),
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
        "global_batch_size": result.global_batch_size,
    }


def merge_for_sampling(pipe: StableDiffusionPipeline, method: PeftMethod, mixed_precision: str) -> None:
    """Sample from plain weights in the frozen parts' dtype: base speed, and no fp32/half mix in one pipeline."""
    pipe.unet = method.merge(pipe.unet).to(WEIGHT_DTYPES[mixed_precision]).eval()
