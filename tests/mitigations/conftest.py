"""Fixtures of the mitigation tests: caption embeddings from the tiny model, and a short training run."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from memcontrol.data.cache import CaptionEmbeddings
from memcontrol.data.prepare import prepare_data
from memcontrol.models.pipeline import load_pipeline
from memcontrol.peft import get_method
from memcontrol.runtime import load_for_training, make_accelerator
from memcontrol.train.engine import fine_tune
from memcontrol.train.run import build_training_set

CAPTIONS = ["a large bright circle top left", "a large bright square top left", "a large bright circle top left"]


@pytest.fixture(scope="session")
def tiny_text(tiny_model_dir):
    """(tokenizer, text encoder) of the tiny model."""
    pipe = load_pipeline(str(tiny_model_dir), device="cpu")
    return pipe.tokenizer, pipe.text_encoder


@pytest.fixture
def caption_embeddings(tiny_text):
    """A factory: cached embeddings of ``captions`` (default: three, the first and last the same) with the tiny
    model."""
    return lambda captions=CAPTIONS: CaptionEmbeddings(*tiny_text, captions, progress=False)


@pytest.fixture
def train(tiny_configs):
    """A factory: train `full` on the tiny data with TrainConfig overrides; (unet parameters before, after,
    TrainResult)."""

    def run(**overrides):
        model_cfg, data_cfg, train_cfg, _ = tiny_configs
        accelerator = make_accelerator(model_cfg)
        pipe = load_for_training(model_cfg, accelerator)
        before = torch.cat([p.detach().flatten() for p in pipe.unet.parameters()]).clone()
        data = build_training_set(pipe, prepare_data(data_cfg).training, 16, progress=False)
        cfg = dataclasses.replace(train_cfg, **overrides)
        result = fine_tune(pipe, get_method("full"), (), data, cfg, accelerator, progress=False)
        return before, torch.cat([p.detach().flatten() for p in pipe.unet.parameters()]), result

    return run
