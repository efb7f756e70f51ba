"""The built-in default must show the problem: measured on the shipped base model.

Full fine-tuning with the default budget must regenerate most duplicated D_mem images nearly
exactly (closer than any two distinct training images are), the frozen base none of them, and
fine-tuned samples must show their caption's class. Small sample counts keep this to minutes.
"""

from __future__ import annotations

import pytest

from memcontrol.config import DataConfig, ModelConfig, SampleConfig, TrainConfig
from memcontrol.data.prepare import prepare_data
from memcontrol.models.pipeline import load_pipeline, recommendations
from memcontrol.pretrain.check import shape_accuracy
from memcontrol.scenario import digit_accuracy, extraction_check
from memcontrol.train.checkpoint import load_trained
from memcontrol.train.job import run_train

RESOLUTION = 16


@pytest.fixture(scope="module")
def settings():
    recommended = recommendations(None)
    return {"guidance_scale": recommended["guidance_scale"], "num_inference_steps": recommended["num_inference_steps"]}


@pytest.fixture(scope="module")
def data():
    return prepare_data(DataConfig())


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """`memcontrol train` with every default: full fine-tuning of the built-in base on built-in digits."""
    out = tmp_path_factory.mktemp("builtin-full")
    run_train(ModelConfig(device="cpu"), DataConfig(), TrainConfig(), SampleConfig(), out, progress=False)
    return load_trained(out)[0]


def test_base_model_follows_its_captions(settings):
    """The named shape is drawn in at least 80% of samples (chance 25%)."""
    assert shape_accuracy(load_pipeline(), samples_per_shape=8, **settings) >= 0.8


def test_frozen_base_regenerates_no_dmem_image(data, settings):
    result = extraction_check(load_pipeline(), data.training, data.dmem, RESOLUTION, **settings)
    assert result["extracted"] == 0, result


def test_full_finetuning_regenerates_most_dmem_images(finetuned, data, settings):
    result = extraction_check(finetuned, data.training, data.dmem, RESOLUTION, **settings)
    assert result["extracted"] > len(data.dmem) // 2, result


def test_finetuned_samples_show_their_class(finetuned, settings):
    base = digit_accuracy(load_pipeline(), RESOLUTION, **settings)
    tuned = digit_accuracy(finetuned, RESOLUTION, **settings)
    assert tuned >= 0.5 and tuned > base + 0.2, (base, tuned)
