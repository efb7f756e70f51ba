"""SV-DIFF: the singular-value shift itself, its learning rates, its precision, and its SD v1.5 counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from memcontrol.peft import MethodOptions, get_method
from memcontrol.peft.accounting import account
from memcontrol.peft.svdiff import SpectralShift, as_matrix

SD15_TOTAL = 859_520_964


@pytest.mark.parametrize("layer", [nn.Linear(6, 4), nn.Conv2d(3, 5, 3), nn.GroupNorm(2, 8), nn.LayerNorm(8), nn.Embedding(7, 3)])
def test_weight_is_u_relu_sigma_plus_delta_vt(layer):
    torch.manual_seed(0)
    with torch.no_grad():
        layer.weight.normal_()
    u, sigma, vh = torch.linalg.svd(as_matrix(layer.weight.detach()), full_matrices=False)
    shift = SpectralShift(layer.weight)
    parametrize.register_parametrization(layer, "weight", shift)
    assert shift.delta.numel() == min(as_matrix(layer.weight).shape)  # a norm weight is one 1 x C matrix: one delta
    with torch.no_grad():
        shift.delta.normal_()
    expected = (u @ torch.diag(torch.relu(sigma + shift.delta)) @ vh).reshape(layer.weight.shape)
    torch.testing.assert_close(layer.weight, expected, rtol=1e-4, atol=1e-5)


def test_half_precision_weights_keep_float32_deltas_and_half_factors():
    layer = nn.Linear(8, 8).half()
    shift = SpectralShift(layer.weight)
    assert shift.delta.dtype == torch.float32 and shift.u.dtype == shift.vh.dtype == torch.float16
    parametrize.register_parametrization(layer, "weight", shift)
    assert layer.weight.dtype == torch.float16
    assert torch.equal(layer.weight, layer.parametrizations.weight.original)  # exactly W at delta = 0


def test_norm_deltas_take_their_own_learning_rate(tiny_unet):
    method = get_method("svdiff", MethodOptions(norm_learning_rate=1e-6))
    unet = tiny_unet()
    params = method.apply(unet, None)
    groups = method.param_groups(unet, params, 1e-3)
    norms = [m for m in unet.modules() if isinstance(m, (nn.GroupNorm, nn.LayerNorm)) and parametrize.is_parametrized(m)]
    assert [g["lr"] for g in groups] == [1e-3, 1e-6]
    assert len(groups[1]["params"]) == len(norms) > 0 and all(p.numel() == 1 for p in groups[1]["params"])
    assert sum(len(g["params"]) for g in groups) == len(params)


def test_accounting_counts_from_shapes_without_an_svd(sd15, monkeypatch):
    def no_svd(*args, **kwargs):
        raise AssertionError("accounting must not decompose")

    monkeypatch.setattr(torch.linalg, "svd", no_svd)
    assert account(sd15(), get_method("svdiff"))["trainable"] == 143_680


def test_sd15_paper_layout_counts(sd15):
    """method-notes: 222,805 with every Linear/Conv/Norm/Embedding layer, 125,486 with all 13 bits 0."""
    paper = get_method("svdiff", MethodOptions(layout="paper"))
    every = account(sd15(), paper, (1,) * 13)
    none = account(sd15(), paper, (0,) * 13)
    assert len(every["sites"]) == 13 and every["total"] == SD15_TOTAL
    assert (every["trainable"], none["trainable"]) == (222_805, 125_486)
    assert every["trainable"] - none["trainable"] == 97_319  # what the bits control
    assert none["fraction"] < 0.019e-2 < every["fraction"]  # the paper's best mask lies between


def test_sd15_blocks_layout_counts(sd15):
    """Inside the 16 transformer blocks only by default; every layer with the outside switch on."""
    assert account(sd15(), get_method("svdiff"))["trainable"] == 143_680
    outside = get_method("svdiff", MethodOptions(train_outside_sites=True))
    assert account(sd15(), outside)["trainable"] == 222_805
    assert account(sd15(), outside, (0,) * 16)["trainable"] == 222_805 - 143_680
