"""Cached latents enter the U-Net in the standard memory format, whatever strides the VAE gave them."""

import os
import subprocess
import sys
from pathlib import Path

import torch

import memcontrol
from memcontrol.data.cache import LatentCache

# Fine-tunes the norm-training methods for 2 steps on cached latents in channels-last strides, as the VAE's CPU
# convolutions return them, on the tiny U-Net with its blocks in SD v1.5's order: there the first attention's
# GroupNorm trains and gets channels-last input that needs no gradient (conv_in's output through a resnet
# without shortcut), which torch 2.13's CPU GroupNorm backward crashes on (SIGSEGV). Hence its own process: a
# crash fails the test instead of killing pytest.
CHANNELS_LAST_FINE_TUNE = """
import dataclasses, sys
import torch
from diffusers import UNet2DConditionModel
from memcontrol.config import DataConfig, ModelConfig, TrainConfig
from memcontrol.data.prepare import prepare_data
from memcontrol.models.architectures import unet_config
from memcontrol.peft import get_method
from memcontrol.runtime import load_for_training, make_accelerator
from memcontrol.data.cache import LatentCache
from memcontrol.train.engine import fine_tune
from memcontrol.train.run import build_training_set

model_cfg = ModelConfig(pretrained_model_name_or_path=sys.argv[1], device="cpu")
data_cfg = DataConfig(train_data_dir=sys.argv[2], validation_fraction=0.2, test_fraction=0.2)
sd15_order = dict(
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
)
for method in ("svdiff", "difffit"):
    accelerator = make_accelerator(model_cfg)
    pipe = load_for_training(model_cfg, accelerator)
    data = build_training_set(pipe, prepare_data(data_cfg).training, 16, progress=False)
    mean, std = (t.contiguous(memory_format=torch.channels_last) for t in (data.latents.mean, data.latents.std))
    data = dataclasses.replace(data, latents=LatentCache(mean, std, data.latents.scaling_factor))
    torch.manual_seed(0)
    pipe.unet = UNet2DConditionModel.from_config({**unet_config("tiny"), **sd15_order})
    train_cfg = TrainConfig(train_batch_size=4, max_train_steps=2, lr_warmup_steps=0)
    result = fine_tune(pipe, get_method(method), (), data, train_cfg, accelerator, progress=False)
    print(method, result.steps, result.losses)
"""


def _channels_last_cache() -> LatentCache:
    mean, std = torch.randn(6, 4, 8, 8), torch.rand(6, 4, 8, 8)
    return LatentCache(*(t.contiguous(memory_format=torch.channels_last) for t in (mean, std)), scaling_factor=0.5)


def test_sampled_latents_are_contiguous_in_the_standard_format():
    cache = _channels_last_cache()
    index, generator = torch.tensor([4, 0, 2]), torch.Generator().manual_seed(0)
    assert cache.sample(index, generator).is_contiguous()
    assert cache.posterior_means().sample(index, generator).is_contiguous()


def test_methods_training_norms_fine_tune_on_channels_last_latents(tiny_model_dir, tiny_data_dir):
    source = Path(memcontrol.__file__).parents[1]  # this checkout's package, whatever is installed
    done = subprocess.run(
        [sys.executable, "-c", CHANNELS_LAST_FINE_TUNE, str(tiny_model_dir), str(tiny_data_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(source)},
    )
    assert done.returncode == 0, f"exit status {done.returncode}: {done.stderr[-2000:]}"
    assert [line.split()[:2] for line in done.stdout.splitlines()] == [["svdiff", "2"], ["difffit", "2"]]
