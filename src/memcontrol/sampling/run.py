"""``memcontrol generate``: images from a base or fine-tuned model, written as PNGs and a grid."""

from __future__ import annotations

from pathlib import Path

from memcontrol.config import DataConfig, ModelConfig, SampleConfig
from memcontrol.data.prepare import prepare_data
from memcontrol.errors import UserError
from memcontrol.io import ensure_writable_dir, write_json
from memcontrol.peft.trained import load_model
from memcontrol.runtime import WEIGHT_DTYPES, make_accelerator, native_resolution
from memcontrol.sampling.generate import generate, save_images
from memcontrol.sampling.samples import sample_settings


def run_generate(
    model_cfg: ModelConfig,
    data_cfg: DataConfig,
    sample_cfg: SampleConfig,
    output_dir: str | Path,
    model_dir: str | None = None,
    prompts: list[str] | None = None,
    num_images: int = 16,
    seed: int = 0,
) -> Path:
    if num_images < 1:
        raise UserError(f"--num_images must be at least 1, got {num_images}")
    output_dir = ensure_writable_dir(output_dir)
    device = make_accelerator(model_cfg).device
    dtype = WEIGHT_DTYPES[model_cfg.mixed_precision]
    pipe, base_model = load_model(model_dir or model_cfg.pretrained_model_name_or_path, device=device, dtype=dtype)
    if not prompts:
        captions = [e.text for e in prepare_data(data_cfg).splits["validation"]]
        prompts = (captions * (num_images // max(len(captions), 1) + 1))[:num_images]
    else:
        prompts = (prompts * num_images)[:num_images] if len(prompts) < num_images else prompts
    settings = sample_settings(base_model, sample_cfg)
    resolution = data_cfg.resolution or native_resolution(pipe)
    images = generate(
        pipe, prompts, seed=seed, resolution=resolution, batch_size=sample_cfg.sample_batch_size, **settings
    )
    grid = save_images(images, output_dir)
    write_json(output_dir / "prompts.json", {"prompts": prompts, "seed": seed, "model_dir": model_dir, **settings})
    return grid
