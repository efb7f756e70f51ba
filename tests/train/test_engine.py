import dataclasses

import pytest
import torch

from memcontrol.data.prepare import prepare_data
from memcontrol.peft import get_method
from memcontrol.runtime import load_for_training, make_accelerator
from memcontrol.train.engine import NonFiniteLoss, fine_tune
from memcontrol.train.run import build_training_set


def _train(configs, method="full", **train_overrides):
    model_cfg, data_cfg, train_cfg, _ = configs
    train_cfg = dataclasses.replace(train_cfg, **train_overrides)
    accelerator = make_accelerator(model_cfg)
    pipe = load_for_training(model_cfg, accelerator)
    before = {n: p.detach().clone() for n, p in pipe.unet.named_parameters()}
    data = build_training_set(pipe, prepare_data(data_cfg).training, 16, progress=False)
    result = fine_tune(pipe, get_method(method), (), data, train_cfg, accelerator, progress=False)
    return pipe, before, result


def test_full_changes_weights_and_freeze_changes_nothing(tiny_configs):
    pipe, before, result = _train(tiny_configs, "full")
    assert result.trainable_fraction == 1.0 and result.steps == 4
    assert any(not torch.equal(before[n], p) for n, p in pipe.unet.named_parameters())

    pipe, before, result = _train(tiny_configs, "freeze")
    assert result.trainable_parameters == 0
    assert all(torch.equal(before[n], p) for n, p in pipe.unet.named_parameters())


@pytest.mark.parametrize("method", ["full", "lora"])
def test_same_seed_gives_identical_weights(tiny_configs, method):
    """--seed seeds initialisation too: LoRA's random A matrices, which peft draws from torch's global generator."""
    first, _, _ = _train(tiny_configs, method, seed=3)
    second, _, _ = _train(tiny_configs, method, seed=3)
    third, _, _ = _train(tiny_configs, method, seed=4)
    params = lambda pipe: torch.cat([p.flatten() for p in pipe.unet.parameters()])  # noqa: E731
    assert torch.equal(params(first), params(second))
    assert not torch.equal(params(first), params(third))


def test_diverging_loss_is_reported(tiny_configs):
    """A corrupt latent (NaN) makes the loss non-finite: the run stops with a NonFiniteLoss, which a search records."""
    model_cfg, data_cfg, train_cfg, _ = tiny_configs
    accelerator = make_accelerator(model_cfg)
    pipe = load_for_training(model_cfg, accelerator)
    data = build_training_set(pipe, prepare_data(data_cfg).training, 16, progress=False)
    data.latents.mean[:] = float("nan")
    with pytest.raises(NonFiniteLoss):
        fine_tune(
            pipe,
            get_method("full"),
            (),
            data,
            dataclasses.replace(train_cfg, max_train_steps=10),
            accelerator,
            progress=False,
        )


def test_v_prediction_models_train(tiny_configs, tiny_model_dir, tmp_path):
    """The target follows the scheduler's prediction_type (SD 2.x style models use v-prediction)."""
    import json
    import shutil

    model = shutil.copytree(tiny_model_dir, tmp_path / "v-model")
    config_path = model / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "prediction_type": "v_prediction"}))
    model_cfg = dataclasses.replace(tiny_configs[0], pretrained_model_name_or_path=str(model))
    _, _, result = _train((model_cfg, *tiny_configs[1:]))
    assert result.losses and all(loss == loss for _, loss in result.losses)


@pytest.mark.parametrize("method", ["svdiff", "difffit", "attention", "lora"])
def test_mixed_precision_trains_float32_weights_on_a_frozen_rest_in_half(tiny_configs, method):
    """As diffusers' LoRA scripts: under bf16 (or fp16) the frozen U-Net is cast to it, what trains stays float32."""
    model_cfg, *others = tiny_configs
    pipe, _, result = _train((dataclasses.replace(model_cfg, mixed_precision="bf16"), *others), method)
    trained = {n: p for n, p in pipe.unet.named_parameters() if p.requires_grad}
    frozen = [p for n, p in pipe.unet.named_parameters() if n not in trained] + list(pipe.unet.buffers())
    assert trained and all(p.dtype == torch.float32 for p in trained.values())
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen if p.is_floating_point())
    assert result.steps == 4 and all(loss == loss for _, loss in result.losses)

    fresh = load_for_training(model_cfg, make_accelerator(model_cfg)).unet
    get_method(method).apply(fresh, ())
    assert any(not torch.equal(p, trained[n]) for n, p in fresh.named_parameters() if p.requires_grad)  # it trained
