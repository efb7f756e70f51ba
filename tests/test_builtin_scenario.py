"""The built-in scenario shows the problem MemControl is about, measured on the shipped base model.

- the base model follows the captions of its pretraining domain (named quarter, named shape and printed digit);
- the frozen base regenerates none of the duplicated D_mem images;
- `memcontrol train` with its defaults (full fine-tuning) regenerates at least 8 of 10, and its samples for
  ordinary captions show the caption's digit;
- d_mem (Wen et al.) on the duplicated prompts rises with full fine-tuning (above the base model's).

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


def test_full_fine_tuning_regenerates_at_least_8_of_10_dmem_images(fine_tuned, data, settings):
    result = extraction_check(fine_tuned, data.training, data.dmem, RESOLUTION, **settings)
    assert result["extracted"] >= 0.8 * len(data.dmem), result


def test_base_and_fine_tuned_samples_show_their_caption_class(fine_tuned, base, settings):
    """A classifier of real digits agrees with the caption far above chance (10%): the base learned the digits from
    printed ones (measured 36%), and full fine-tuning on the handwritten ones keeps them."""
    assert digit_accuracy(base, RESOLUTION, **settings) >= 0.3
    assert digit_accuracy(fine_tuned, RESOLUTION, **settings) >= 0.25


def test_dmem_rises_on_the_duplicated_prompts_with_fine_tuning(fine_tuned, base, data, settings):
    """d_mem on D_mem's prompts is higher after full fine-tuning than on the base.

    It does not single out the duplicated prompts among coded captions of the same length seen once or never
    (measured on the shipped base: 1.63 on D_mem, 1.75 on those, 1.28 on the base): the digit prior makes every
    coded caption of a learned class bring up its image, so the search's d_mem compares masks on D_mem's prompts
    rather than flagging which prompts are memorised.
    """

    def score(pipe, examples):
        return dmem_scores(
            pipe, examples, resolution=RESOLUTION, samples_per_prompt=4, progress=False, **settings
        ).mean()

    tuned_dmem, base_dmem = score(fine_tuned, data.dmem), score(base, data.dmem)
    assert tuned_dmem > 1.1 * base_dmem, (tuned_dmem, base_dmem)
