"""The built-in scenario shows the problem MemControl is about, measured on the shipped base model.

- the base model follows the captions of its pretraining domain (named quarter and named shape);
- the frozen base regenerates none of the duplicated D_mem images;
- `memcontrol train` with its defaults (full fine-tuning) regenerates most of them, and its samples for
  ordinary captions show the caption's digit;
- d_mem (Wen et al.) flags the duplicated prompts: higher than on coded captions of the same length
  that were not duplicated, and higher than the base model's on the same prompts.

One fine-tuning run with the defaults (about four and a half minutes on two cores) serves the module.
"""

from __future__ import annotations

import pytest

from memcontrol.config import DataConfig, ModelConfig, SampleConfig, TrainConfig
from memcontrol.data.prepare import prepare_data
from memcontrol.metrics import dmem_scores
from memcontrol.models.pipeline import load_pipeline, recommendations
from memcontrol.peft.trained import load_trained
from memcontrol.pretrain.check import position_accuracy, shape_accuracy
from memcontrol.scenario import digit_accuracy, extraction_check
from memcontrol.train.run import run_train

RESOLUTION = 16
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def settings():
    recommended = recommendations(None)
    return {"guidance_scale": recommended["guidance_scale"], "num_inference_steps": recommended["num_inference_steps"]}


@pytest.fixture(scope="module")
def data():
    return prepare_data(DataConfig())


@pytest.fixture(scope="module")
def base():
    return load_pipeline()


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("full-defaults")
    run_train(ModelConfig(), DataConfig(), TrainConfig(), SampleConfig(), output_dir, progress=False)
    return load_trained(output_dir)[0]


def test_base_model_follows_its_captions(base, settings):
    """The named quarter holds the shape in at least 80% of samples, the named shape is drawn in most (chance 25%)."""
    assert position_accuracy(base, samples_per_quarter=8, **settings) >= 0.8
    assert shape_accuracy(base, samples_per_shape=8, **settings) >= 0.5


def test_frozen_base_regenerates_no_dmem_image(base, data, settings):
    result = extraction_check(base, data.training, data.dmem, RESOLUTION, **settings)
    assert result["extracted"] == 0, result


def test_full_fine_tuning_regenerates_most_dmem_images(fine_tuned, data, settings):
    result = extraction_check(fine_tuned, data.training, data.dmem, RESOLUTION, **settings)
    assert result["extracted"] > len(data.dmem) / 2, result


def test_fine_tuned_samples_show_their_caption_class(fine_tuned, base, settings):
    """A classifier of real digits agrees with the caption far above chance (10%; measured 36%), the base's does not."""
    assert digit_accuracy(fine_tuned, RESOLUTION, **settings) >= 0.25
    assert digit_accuracy(base, RESOLUTION, **settings) < 0.2


def test_dmem_flags_the_duplicated_prompts(fine_tuned, base, data, settings):
    """Compared on captions of one length: D_mem's coded captions against coded captions seen once or never."""
    dmem = set(data.dmem)
    controls = [e for split in data.splits.values() for e in split if "case" in e.text.split() and e not in dmem]
    assert {len(e.text.split()) for e in [*data.dmem, *controls]} == {len(data.dmem[0].text.split())}

    def score(pipe, examples):
        return dmem_scores(
            pipe, examples, resolution=RESOLUTION, samples_per_prompt=4, progress=False, **settings
        ).mean()

    tuned_dmem, tuned_controls, base_dmem = (
        score(fine_tuned, data.dmem),
        score(fine_tuned, controls),
        score(base, data.dmem),
    )
    # Measured: 1.83 against 1.43-1.55 (controls) and 1.61 (base). In a model this small the signal is
    # modest, since unseen codes of a memorised class also bring up its image (feasibility notes).
    assert tuned_dmem > tuned_controls and tuned_dmem > base_dmem, (tuned_dmem, tuned_controls, base_dmem)
