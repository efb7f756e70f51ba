"""LoRA through peft: adapters only in the masked sites, the rank option, and its SD v1.5 counts."""

from __future__ import annotations

import pytest
from peft.tuners.tuners_utils import BaseTunerLayer

from memcontrol.errors import UserError
from memcontrol.peft import MethodConfig, get_method
from memcontrol.peft.accounting import account
from memcontrol.peft.lora import LoRAConfig


def test_adapters_only_in_masked_on_sites(tiny_unet):
    method, unet = get_method("lora"), tiny_unet()
    mask = (1, 0, 0, 0, 0, 0, 1)
    method.apply(unet, mask)
    on = [s for s, b in zip(method.sites(unet), mask) if b]
    adapted = [n for n, m in unet.named_modules() if isinstance(m, BaseTunerLayer)]
    assert len(adapted) == 2 * 8  # q, k, v, out of attn1 and attn2 in each of the two sites
    assert all(any(n.startswith(s + ".") for s in on) for n in adapted)


def test_all_sites_off_adds_nothing(tiny_unet):
    unet = tiny_unet()
    assert get_method("lora").apply(unet, (0,) * 7) == []
    assert not any(isinstance(m, BaseTunerLayer) for m in unet.modules())


def test_weights_of_another_rank_are_a_clear_error(tiny_unet):
    trained, other = tiny_unet(), tiny_unet()
    method = get_method("lora", LoRAConfig(lora_rank=2))
    method.apply(trained, None)
    get_method("lora", LoRAConfig(lora_rank=4)).apply(other, None)
    with pytest.raises(UserError, match="has shape"):
        method.load_trained_state(other, method.trained_state(trained))


def test_sd15_counts_scale_with_the_rank(sd15):
    assert account(sd15(), get_method("lora"))["trainable"] == 797_184
    assert account(sd15(), get_method("lora", LoRAConfig(lora_rank=8)))["trainable"] == 2 * 797_184
    assert (
        account(sd15(), get_method("lora", MethodConfig(layout="paper")))["sites"] == []
    )  # the authors' LoRA has no mask
