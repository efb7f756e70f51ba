"""The built-in scenario, measured on the shipped base model.

What holds today: the base model follows the captions of its pretraining domain (the named shape),
and the frozen base regenerates none of the duplicated D_mem images. Whether full fine-tuning with
the default budget memorises D_mem is measured by `benchmarks/builtin_scenario.py` (README: it does
not yet, which is the open part of the foundation issue).
"""

from __future__ import annotations

import pytest

from memcontrol.config import DataConfig
from memcontrol.data.prepare import prepare_data
from memcontrol.models.pipeline import load_pipeline, recommendations
from memcontrol.pretrain.check import shape_accuracy
from memcontrol.scenario import extraction_check

RESOLUTION = 16


@pytest.fixture(scope="module")
def settings():
    recommended = recommendations(None)
    return {"guidance_scale": recommended["guidance_scale"], "num_inference_steps": recommended["num_inference_steps"]}


def test_base_model_follows_its_captions(settings):
    """The named shape is drawn in at least 80% of samples (chance 25%)."""
    assert shape_accuracy(load_pipeline(), samples_per_shape=8, **settings) >= 0.8


def test_frozen_base_regenerates_no_dmem_image(settings):
    data = prepare_data(DataConfig())
    result = extraction_check(load_pipeline(), data.training, data.dmem, RESOLUTION, **settings)
    assert result["extracted"] == 0, result
