import torch

from memcontrol.data.prepare import prepare_data
from memcontrol.peft import get_method
from memcontrol.peft.trained import load_trained, read_manifest, save_trained
from memcontrol.runtime import load_for_training, make_accelerator
from memcontrol.sampling import generate
from memcontrol.train.engine import fine_tune
from memcontrol.train.run import build_training_set


def test_save_load_generate_reproduces_the_trained_model(tiny_configs, tmp_path):
    model_cfg, data_cfg, train_cfg, _ = tiny_configs
    accelerator = make_accelerator(model_cfg)
    pipe = load_for_training(model_cfg, accelerator)
    method = get_method("full")
    fine_tune(
        pipe,
        method,
        (),
        build_training_set(pipe, prepare_data(data_cfg).training, 16, progress=False),
        train_cfg,
        accelerator,
        progress=False,
    )
    save_trained(tmp_path / "model", pipe, method, (), {"base_model": str(model_cfg.pretrained_model_name_or_path)})

    loaded, manifest = load_trained(tmp_path / "model")
    prompts = ["a large bright circle top left", "a large bright square top left"]
    settings = dict(seed=7, num_inference_steps=4, guidance_scale=1.5, progress=False)
    assert torch.equal(generate(pipe, prompts, **settings), generate(loaded, prompts, **settings))
    assert manifest["method"] == "full" and read_manifest(tmp_path / "model")["mask"] == ""
