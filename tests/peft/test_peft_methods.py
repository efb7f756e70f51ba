"""The contract every registered method keeps, checked on the tiny U-Net in both layouts."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file

from memcontrol.cli import main
from memcontrol.errors import UserError
from memcontrol.peft import MethodConfig, get_method, method_names
from memcontrol.peft.base import LAYOUTS
from memcontrol.peft.lora import LoRAConfig
from memcontrol.peft.svdiff import SVDiffConfig

METHODS = method_names()


def alternating_mask(method, unet) -> tuple[int, ...]:
    """1, 0, 1, ... over the method's sites: some on, some off."""
    return tuple((i + 1) % 2 for i in range(len(method.sites(unet))))


def output(unet, inputs) -> torch.Tensor:
    with torch.no_grad():
        return unet(*inputs).sample


def train_step(method, unet, mask, inputs) -> None:
    """Adapt ``unet`` and take one AdamW step on a made-up loss, with the method's parameter groups."""
    params = method.apply(unet, mask)
    if params:
        optimizer = torch.optim.AdamW(method.param_groups(unet, params, 1e-2))
        unet(*inputs).sample.square().mean().backward()
        optimizer.step()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", METHODS)
def test_adapted_unet_starts_as_the_base(name, layout, tiny_unet, unet_inputs):
    method, unet = get_method(name, MethodConfig(layout=layout)), tiny_unet()
    method.apply(unet, alternating_mask(method, unet))
    torch.testing.assert_close(output(unet, unet_inputs), output(tiny_unet(), unet_inputs))


@pytest.mark.parametrize("name", METHODS)
def test_a_training_step_changes_only_masked_on_sites(name, tiny_unet, unet_inputs):
    """Off sites keep their weights; outside every site only a method that trains outside changes anything."""
    method, unet = get_method(name), tiny_unet()
    mask = alternating_mask(method, unet)
    sites = dict(zip(method.sites(unet), mask))
    train_step(method, unet, mask, unet_inputs)
    before, after = tiny_unet().state_dict(), method.merge(unet).state_dict()
    assert after.keys() == before.keys()
    changed = [key for key in before if not torch.equal(before[key], after[key])]
    for key in changed:
        site = next((s for s in sites if key.startswith(s + ".")), None)
        assert sites[site] if site else method.trains_outside(), key
    assert bool(changed) == (name != "freeze")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", METHODS)
def test_save_load_merge_reproduces_the_trained_model(name, layout, tiny_unet, unet_inputs, tmp_path):
    options = MethodConfig(layout=layout)
    method, unet = get_method(name, options), tiny_unet()
    mask = alternating_mask(method, unet)
    train_step(method, unet, mask, unet_inputs)
    trained = output(unet, unet_inputs)
    save_file(method.trained_state(unet), str(tmp_path / "trained.safetensors"))

    method, rebuilt = get_method(name, options), tiny_unet()
    method.apply(rebuilt, mask)
    method.load_trained_state(rebuilt, load_file(str(tmp_path / "trained.safetensors")))
    merged = method.merge(rebuilt)
    assert type(merged) is UNet2DConditionModel and merged.state_dict().keys() == tiny_unet().state_dict().keys()
    merged.save_pretrained(tmp_path / "unet")
    plain = UNet2DConditionModel.from_pretrained(tmp_path / "unet")
    torch.testing.assert_close(output(plain, unet_inputs), trained, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", METHODS)
def test_a_mask_of_the_wrong_length_is_a_clear_error(name, tiny_unet, capsys):
    with pytest.raises(UserError, match="--mask: .* expects 7 bits"):
        get_method(name).apply(tiny_unet(), (1, 0))
    assert main(["sites", "--architecture", "tiny", "--method", name, "--mask", "10"]) == 2
    assert "expects 7 bits" in capsys.readouterr().err


def test_an_unknown_method_is_a_clear_error(capsys):
    with pytest.raises(UserError, match="unknown method 'magic'"):
        get_method("magic")
    assert main(["sites", "--architecture", "tiny", "--method", "magic"]) == 2
    assert "--method" in capsys.readouterr().err


def test_trained_weights_of_other_options_are_a_clear_error(tiny_unet):
    trained, other = tiny_unet(), tiny_unet()
    method = get_method("svdiff")
    method.apply(trained, None)
    get_method("svdiff", MethodConfig(train_outside_sites=True)).apply(other, None)
    with pytest.raises(UserError, match="do not fit method 'svdiff'"):
        method.load_trained_state(other, method.trained_state(trained))


def test_bad_options_are_clear_errors():
    for config, bad in (
        (MethodConfig, {"layout": "rows"}),
        (LoRAConfig, {"lora_rank": 0}),
        (SVDiffConfig, {"norm_learning_rate": -1.0}),
    ):
        with pytest.raises(UserError, match=f"--{next(iter(bad))}"):
            config(**bad)
