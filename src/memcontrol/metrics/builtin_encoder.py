"""The built-in domain encoder: a classifier of the built-in datasets' caption classes, shipped as weights.

It plays the part of the paper's DenseNet-121 trained on chest X-rays (features for FID and AMD) and
of BioViL-T (does a sample show its caption's class?) for the built-in data, where no public encoder
exists. `memcontrol train-encoder` rebuilds the shipped file from the built-in datasets.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from memcontrol.data.builtin import BUILTIN_DATASETS, builtin_dataset_path
from memcontrol.data.imagefolder import load_imagefolder, load_images
from memcontrol.metrics.domain import save_domain_encoder, train_domain_encoder

BUILTIN_ENCODER = Path(__file__).parent / "weights" / "domain-builtin.safetensors"
_CASE_CODE = re.compile(r"\s+case\s+k\d{3}$")
RESOLUTION = 32


def caption_class(caption: str) -> str:
    """The class a built-in caption names: the caption without its case code."""
    return _CASE_CODE.sub("", caption.strip())


def train_builtin_encoder(
    output: str | Path = BUILTIN_ENCODER, *, steps: int = 1500, seed: int = 0, progress: bool = True
) -> dict:
    """Train on every image of every built-in dataset; report accuracy on a held-out tenth."""
    examples = [e for name in BUILTIN_DATASETS for e in load_imagefolder(builtin_dataset_path(name))]
    classes = sorted({caption_class(e.text) for e in examples})
    images = (load_images(examples, RESOLUTION, progress=progress) + 1) / 2
    labels = torch.tensor([classes.index(caption_class(e.text)) for e in examples])
    held_out = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed))[: len(examples) // 10]
    train = torch.ones(len(examples), dtype=torch.bool)
    train[held_out] = False
    model = train_domain_encoder(images[train], labels[train], classes, steps=steps, seed=seed, progress=progress)
    with torch.no_grad():
        accuracy = float((model(images[held_out]).argmax(-1) == labels[held_out]).float().mean())
    save_domain_encoder(model, output)
    return {"classes": classes, "held_out_accuracy": accuracy, "steps": steps, "path": str(output)}
