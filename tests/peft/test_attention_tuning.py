"""Attention tuning: attn1/attn2 only, and its SD v1.5 counts."""

from __future__ import annotations

from memcontrol.peft import MethodConfig, get_method
from memcontrol.peft.accounting import account


def test_only_attn1_and_attn2_train(tiny_unet):
    unet = tiny_unet()
    get_method("attention").apply(unet, None)
    names = [n for n, p in unet.named_parameters() if p.requires_grad]
    assert names and all(".attn1." in n or ".attn2." in n for n in names)


def test_sd15_counts(sd15):
    """method-notes: 267.2M with all 16 bits 1, 173.7M with all 0; the bits control attn1/attn2 (93.5M)."""
    assert account(sd15(), get_method("attention"))["trainable"] == 93_536_640
    paper = get_method("attention", MethodConfig(layout="paper"))
    every, none = account(sd15(), paper, (1,) * 16), account(sd15(), paper, (0,) * 16)
    assert len(every["sites"]) == 16
    assert (every["trainable"], none["trainable"]) == (267_239_360, 173_702_720)
    assert round(every["fraction"], 2) == 0.31 and round(none["fraction"], 2) == 0.20
