"""DiffFit: gammas on the residual branches, biases and norms, and its SD v1.5 counts."""

from __future__ import annotations

import torch
from diffusers.models.attention import BasicTransformerBlock
from torch.nn.utils import parametrize

from memcontrol.peft import MethodConfig, get_method
from memcontrol.peft.accounting import account


def test_gammas_scale_the_residual_branches_and_fold_into_their_last_linear(tiny_unet):
    unet = tiny_unet()
    get_method("difffit").apply(unet, None)
    block = next(m for m in unet.modules() if isinstance(m, BasicTransformerBlock))
    out = block.attn1.to_out[0]
    gamma = out.parametrizations.weight[0].gamma
    assert torch.equal(gamma, torch.ones_like(gamma)) and gamma.requires_grad
    weight, bias = (
        out.parametrizations.weight.original.detach().clone(),
        out.parametrizations.bias.original.detach().clone(),
    )
    with torch.no_grad():
        gamma.fill_(2.0)
    get_method("difffit").merge(unet)
    assert not parametrize.is_parametrized(out)
    torch.testing.assert_close(out.weight, 2 * weight)
    torch.testing.assert_close(out.bias, 2 * bias)


def test_three_gammas_per_transformer_block_by_default_eleven_in_the_authors_code(tiny_unet):
    def gammas(layout):
        unet = tiny_unet()
        get_method("difffit", MethodConfig(layout=layout)).apply(unet, None)
        return sum(p.numel() for n, p in unet.named_parameters() if n.endswith(".gamma"))

    dims = sum(b.norm1.normalized_shape[0] for b in tiny_unet().modules() if isinstance(b, BasicTransformerBlock))
    assert gammas("blocks") == 3 * dims and gammas("paper") == 11 * dims


def test_sd15_paper_layout_counts(sd15):
    """method-notes: 581,124 with all 13 bits 1, 468,484 with all 0 (the bits control only gammas)."""
    paper = get_method("difffit", MethodConfig(layout="paper"))
    assert account(sd15(), paper, (1,) * 13)["trainable"] == 581_124
    assert account(sd15(), paper, (0,) * 13)["trainable"] == 468_484


def test_sd15_blocks_layout_counts(sd15):
    assert account(sd15(), get_method("difffit"))["trainable"] == 299_520
    outside = get_method("difffit", MethodConfig(train_outside_sites=True))
    assert account(sd15(), outside, (0,) * 16)["trainable"] == 181_764  # biases and norms outside the blocks
