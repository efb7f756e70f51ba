"""`memcontrol pretrain` builds a loadable base model whose VAE latents are the pixels."""

from __future__ import annotations

import json

import numpy as np
import torch

from memcontrol.cli import main
from memcontrol.models.pipeline import load_pipeline
from memcontrol.pretrain.components import random_pipeline
from memcontrol.pretrain.data import draw_shapes
from memcontrol.pretrain.vae import POSTERIOR_STD, train_vae


def test_vae_latents_are_the_pixels():
    images, _ = draw_shapes(256, 16, np.random.default_rng(0))
    vae = random_pipeline(0).vae
    report = train_vae(vae, images, steps=150, batch_size=32, learning_rate=2e-3, progress=False)
    assert vae.config.scaling_factor == 1.0
    assert report["latent_pixel_rmse"] < 0.05 and report["vae_rmse"] < 0.05, report
    with torch.no_grad():
        std = vae.encode(images[:8]).latent_dist.std
    assert torch.allclose(std, torch.full_like(std, POSTERIOR_STD))


def test_pretrain_writes_a_diffusers_folder_with_its_report(tmp_path, capsys):
    output_dir = tmp_path / "base"
    assert (
        main(
            [
                "pretrain",
                "--output_dir",
                str(output_dir),
                "--device",
                "cpu",
                "--num_images",
                "64",
                "--vae_steps",
                "2",
                "--max_train_steps",
                "2",
                "--lr_warmup_steps",
                "0",
                "--check_samples",
                "1",
            ]
        )
        == 0
    )
    report = json.loads((output_dir / "pretrain_report.json").read_text())
    assert {"vae_rmse", "latent_pixel_rmse", "shape_accuracy", "position_accuracy", "unet_final_loss"} <= set(report)
    # The text encoder stays at its seeded random initialisation (see memcontrol.pretrain.run).
    saved, initial = (
        load_pipeline(str(output_dir)).text_encoder.state_dict(),
        random_pipeline(0).text_encoder.state_dict(),
    )
    assert all(torch.equal(saved[name], initial[name]) for name in saved)
    assert json.loads(capsys.readouterr().out)["unet_final_loss"] == report["unet_final_loss"]


def test_pretrain_continues_another_base(tmp_path, capsys):
    """--vae_from keeps that folder's VAE as it is; --unet_from keeps the text encoder its U-Net learned under
    (even with another --seed, which would draw another random encoder), and the U-Net trains on."""
    source, folder = load_pipeline(), str(load_pipeline().config._name_or_path)
    output_dir = tmp_path / "base"
    assert (
        main(
            [
                "pretrain",
                "--output_dir",
                str(output_dir),
                "--device",
                "cpu",
                "--num_images",
                "64",
                "--seed",
                "1",
                "--digit_share",
                "0.5",
                "--vae_from",
                folder,
                "--unet_from",
                folder,
                "--max_train_steps",
                "1",
                "--lr_warmup_steps",
                "0",
                "--check_samples",
                "1",
            ]
        )
        == 0
    )
    saved = load_pipeline(str(output_dir))
    for kept in ("vae", "text_encoder"):
        weights, reused = getattr(saved, kept).state_dict(), getattr(source, kept).state_dict()
        assert all(torch.equal(weights[name], reused[name]) for name in reused), kept
    assert not torch.equal(saved.unet.conv_in.weight, source.unet.conv_in.weight)
    assert json.loads(capsys.readouterr().out)["latent_pixel_rmse"] < 0.05


def test_pretrain_refuses_a_folder_without_the_component_to_reuse(tmp_path, capsys):
    for flag in ("--vae_from", "--unet_from"):
        assert main(["pretrain", "--output_dir", str(tmp_path / "base"), "--device", "cpu", flag, str(tmp_path)]) == 2
        assert flag in capsys.readouterr().err
