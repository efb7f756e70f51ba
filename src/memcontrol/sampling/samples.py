"""What sampling after fine-tuning uses: guidance and steps (flags, else the base model's recommendation), and the
grid of samples written next to a fine-tuned model."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from memcontrol.config import SampleConfig
from memcontrol.data.prepare import PreparedData
from memcontrol.io import write_json
from memcontrol.models.pipeline import recommendations
from memcontrol.sampling.generate import generate, save_images

SAMPLE_PROMPTS = 8  # per group (D_mem, validation) in the grid written after training


def sample_settings(base_model: str | None, sample_cfg: SampleConfig) -> dict:
    """Guidance and steps from the flags, else from the base model folder's recommendation."""
    recommended = recommendations(base_model)
    return {
        "guidance_scale": sample_cfg.guidance_scale
        if sample_cfg.guidance_scale is not None
        else recommended["guidance_scale"],
        "num_inference_steps": sample_cfg.num_inference_steps or recommended["num_inference_steps"],
    }


def sample_grid(
    pipe: StableDiffusionPipeline,
    data: PreparedData,
    resolution: int,
    settings: dict,
    batch_size: int,
    seed: int,
    output_dir: Path,
    progress: bool,
    made: dict[str, torch.Tensor] | None = None,
) -> None:
    """Samples for D_mem captions (memorization shows here) and for validation captions (quality), image i of each
    group from seed + i; ``made``: a group's images already generated so (by "dmem" or "validation"), not made again."""
    groups = {"dmem": data.dmem, "validation": data.splits["validation"]}
    groups = {name: [e.text for e in examples[:SAMPLE_PROMPTS]] for name, examples in groups.items() if examples}
    if not groups:
        return
    made = made or {}
    images = [
        made[name]
        if name in made and len(made[name]) == len(prompts)
        else generate(
            pipe, prompts, seed=seed, resolution=resolution, batch_size=batch_size, progress=progress, **settings
        )
        for name, prompts in groups.items()
    ]
    save_images(torch.cat(images), output_dir / "samples", columns=SAMPLE_PROMPTS)
    prompts = [p for group in groups.values() for p in group]
    seeds = [seed + i for group in groups.values() for i in range(len(group))]
    write_json(output_dir / "samples" / "prompts.json", {"prompts": prompts, "seeds": seeds, **settings})
