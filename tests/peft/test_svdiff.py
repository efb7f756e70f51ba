"""SV-DIFF: the singular-value shift itself, its learning rates, its precision, and its SD v1.5 counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from memcontrol.peft import MethodConfig, get_method
from memcontrol.peft.accounting import account
from memcontrol.peft.svdiff import SpectralShift, SVDiffConfig, as_matrix, singular_factors

SD15_TOTAL = 859_520_964


@pytest.mark.parametrize(
    "layer", [nn.Linear(6, 4), nn.Conv2d(3, 5, 3), nn.GroupNorm(2, 8), nn.LayerNorm(8), nn.Embedding(7, 3)]
)
def test_weight_is_u_relu_sigma_plus_delta_vt(layer):
    torch.manual_seed(0)
    with torch.no_grad():
        layer.weight.normal_()
    u, sigma, vh = torch.linalg.svd(as_matrix(layer.weight.detach()), full_matrices=False)
    shift = SpectralShift(singular_factors(layer.weight))
    parametrize.register_parametrization(layer, "weight", shift)
    assert shift.delta.numel() == min(as_matrix(layer.weight).shape)  # a norm weight is one 1 x C matrix: one delta
    with torch.no_grad():
        shift.delta.normal_()
    expected = (u @ torch.diag(torch.relu(sigma + shift.delta)) @ vh).reshape(layer.weight.shape)
    torch.testing.assert_close(layer.weight, expected, rtol=1e-4, atol=1e-5)


def test_half_precision_weights_keep_float32_deltas_and_half_factors():
    layer = nn.Linear(8, 8).half()
    shift = SpectralShift(singular_factors(layer.weight))
    assert shift.delta.dtype == torch.float32 and shift.u.dtype == shift.vh.dtype == torch.float16
    parametrize.register_parametrization(layer, "weight", shift)
    assert layer.weight.dtype == torch.float16
    assert torch.equal(layer.weight, layer.parametrizations.weight.original)  # exactly W at delta = 0
    with torch.no_grad():
        shift.delta.fill_(1e-3)  # below half's resolution next to sigma ~ 1: the shift must not round it away
    assert not torch.equal(layer.weight, layer.parametrizations.weight.original)


def test_a_cache_computes_each_svd_once_for_copies_of_one_base_and_anew_for_a_changed_weight(tiny_unet, monkeypatch):
    from memcontrol.peft import svdiff

    calls = []
    monkeypatch.setattr(svdiff, "singular_factors", lambda w: calls.append(1) or singular_factors(w))
    cache = {}
    trained = []
    for _ in range(2):  # two trials: copies of one base U-Net
        unet = tiny_unet()
        params = get_method("svdiff", cache=cache).apply(unet, None)
        trained.append(unet)
    assert len(calls) == len(params) == len(cache)  # the second copy computed nothing
    first, second = (dict(u.named_buffers()) for u in trained)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert all(first[k].data_ptr() != second[k].data_ptr() for k in first)  # each U-Net has its own factors

    changed, path = tiny_unet(), next(iter(cache))
    with torch.no_grad():
        changed.get_submodule(path).weight.add_(1.0)
    get_method("svdiff", cache=cache).apply(changed, None)
    assert len(calls) == len(params) + 1  # only the changed weight is decomposed again
    weight = changed.get_submodule(path).parametrizations.weight
    u, sigma, vh = weight[0].u, weight[0].sigma, weight[0].vh
    torch.testing.assert_close((u * sigma) @ vh, as_matrix(weight.original), rtol=1e-4, atol=1e-5)


def test_norm_deltas_take_their_own_learning_rate(tiny_unet):
    method = get_method("svdiff", SVDiffConfig(norm_learning_rate=1e-6))
    unet = tiny_unet()
    params = method.apply(unet, None)
    groups = method.param_groups(unet, params, 1e-3)
    norms = [
        m for m in unet.modules() if isinstance(m, (nn.GroupNorm, nn.LayerNorm)) and parametrize.is_parametrized(m)
    ]
    assert [g["lr"] for g in groups] == [1e-3, 1e-6]
    assert len(groups[1]["params"]) == len(norms) > 0 and all(p.numel() == 1 for p in groups[1]["params"])
    assert sum(len(g["params"]) for g in groups) == len(params)


def test_decomposing_shows_progress_over_the_weights_unless_progress_is_off(tiny_unet, capsys):
    """At SD v1.5 size the SVDs take minutes: a bar counts the weights decomposed."""
    params = get_method("svdiff", MethodConfig(train_outside_sites=True)).apply(tiny_unet(), ())
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert any(line.startswith("svdiff: SVD of weights:") and f"/{len(params)} [" in line for line in bar)

    quiet = get_method("svdiff")
    quiet.progress = False
    quiet.apply(tiny_unet(), ())
    assert capsys.readouterr().err == ""


def test_accounting_counts_from_shapes_without_an_svd(sd15, monkeypatch):
    def no_svd(*args, **kwargs):
        raise AssertionError("accounting must not decompose")

    monkeypatch.setattr(torch.linalg, "svd", no_svd)
    assert account(sd15(), get_method("svdiff"))["trainable"] == 143_680


def test_sd15_paper_layout_counts(sd15):
    """method-notes: 222,805 with every Linear/Conv/Norm/Embedding layer, 125,486 with all 13 bits 0."""
    paper = get_method("svdiff", MethodConfig(layout="paper"))
    every = account(sd15(), paper, (1,) * 13)
    none = account(sd15(), paper, (0,) * 13)
    assert len(every["sites"]) == 13 and every["total"] == SD15_TOTAL
    assert (every["trainable"], none["trainable"]) == (222_805, 125_486)
    assert every["trainable"] - none["trainable"] == 97_319  # what the bits control
    assert none["fraction"] < 0.019e-2 < every["fraction"]  # the paper's best mask lies between


def test_sd15_blocks_layout_counts(sd15):
    """Inside the 16 transformer blocks only by default; every layer with the outside switch on."""
    assert account(sd15(), get_method("svdiff"))["trainable"] == 143_680
    outside = get_method("svdiff", MethodConfig(train_outside_sites=True))
    assert account(sd15(), outside)["trainable"] == 222_805
    assert account(sd15(), outside, (0,) * 16)["trainable"] == 222_805 - 143_680
