"""full and freeze: the paper's baselines by default, and what a mask does to them."""

from __future__ import annotations

from memcontrol.peft import MethodConfig, get_method
from memcontrol.peft.accounting import account


def test_full_trains_everything_but_masked_off_sites(sd15):
    assert account(sd15(), get_method("full"))["fraction"] == 1.0
    none = account(sd15(), get_method("full"), (0,) * 16)
    assert none["trainable"] == 592_281_604 and all(s["trainable"] == 0 for s in none["sites"])
    assert account(sd15(), get_method("full", MethodConfig(layout="paper")))["fraction"] == 1.0


def test_an_empty_mask_means_every_site_on(tiny_unet):
    """What callers without a mask pass (pretraining, checkpoints of unmasked runs)."""
    unet = tiny_unet()
    assert len(get_method("full").apply(unet, ())) == len(list(tiny_unet().parameters()))


def test_freeze_trains_nothing_whatever_the_mask(sd15):
    assert account(sd15(), get_method("freeze"))["trainable"] == 0
    assert account(sd15(), get_method("freeze", MethodConfig(train_outside_sites=True)))["trainable"] == 0
