"""d_mem's known answer on the shipped base model: fine-tuning on one duplicated pair raises d_mem on its prompt.

Prompts of equal length are compared, since longer captions alone raise the score (feasibility notes).
"""

import dataclasses

from memcontrol.config import DataConfig, ModelConfig, TrainConfig
from memcontrol.data.prepare import prepare_data
from memcontrol.metrics.dmem import dmem_trajectory
from memcontrol.models.pipeline import load_pipeline
from memcontrol.peft import get_method
from memcontrol.runtime import load_for_training, make_accelerator
from memcontrol.train.engine import fine_tune
from memcontrol.train.job import build_training_set

SETTINGS = dict(num_inference_steps=10, guidance_scale=1.5, samples_per_prompt=2, progress=False)


def test_dmem_is_highest_on_the_duplicated_prompt_and_above_the_base():
    data = prepare_data(DataConfig(dmem_size=1, dmem_repeats=50, max_train_samples=40))
    memorised = data.dmem[0].text
    words = len(memorised.split())
    others = {e.text for split in data.splits.values() for e in split} - {memorised}
    controls = sorted(t for t in others if len(t.split()) == words)[:4]
    assert len(controls) >= 2, "the built-in digits carry coded captions of equal length"

    model_cfg = ModelConfig(device="cpu")
    accelerator = make_accelerator(model_cfg)
    pipe = load_for_training(model_cfg, accelerator)
    training_set = build_training_set(pipe, data.training, 16, progress=False)
    train_cfg = dataclasses.replace(TrainConfig(), max_train_steps=150, train_batch_size=16, learning_rate=1e-3)
    fine_tune(pipe, get_method("full"), (), training_set, train_cfg, accelerator, progress=False)
    pipe.unet.eval()

    tuned = dmem_trajectory(pipe, [memorised, *controls], **SETTINGS)
    base = dmem_trajectory(load_pipeline(), [memorised], **SETTINGS)
    assert tuned[0] > tuned[1:].max(), tuned
    assert tuned[0] > base[0], (tuned, base)
