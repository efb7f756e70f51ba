"""`memcontrol sites` and `memcontrol train --method ... --mask ...` from the command line."""

from __future__ import annotations

import json

import pytest
import yaml
from diffusers import UNet2DConditionModel
from torch.nn.utils import parametrize

from memcontrol.cli import main
from memcontrol.peft import method_names
from memcontrol.peft.trained import load_trained


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_sites_json_on_sd15(capsys):
    out = _run(
        capsys,
        "sites",
        "--architecture",
        "sd15",
        "--method",
        "svdiff",
        "--layout",
        "paper",
        "--mask",
        "0" * 13,
        "--json",
    )
    report = json.loads(out)
    assert set(report) == {"sites", "trainable", "total", "fraction"}
    assert (report["trainable"], report["total"]) == (125_486, 859_520_964)
    assert report["sites"][0] == {"site": "down_blocks.0.attentions.0.transformer_blocks", "bit": 0, "trainable": 0}


def test_sites_table_reads_the_yaml_and_the_model_folder(capsys, tiny_model_dir, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"method": "difffit", "mask": "1000000", "train_outside_sites": True}))
    out = _run(capsys, "sites", "--config", str(config), "--pretrained_model_name_or_path", str(tiny_model_dir))
    lines = out.splitlines()
    assert len(lines) == 1 + 7 + 1 and lines[1].split()[0] == "1" and lines[2].split()[:2] == ["0", "0"]
    assert lines[-1].startswith("trainable ") and "U-Net parameters" in lines[-1]


@pytest.mark.parametrize("name", method_names())
def test_train_with_every_method_and_a_mask(fast_train_flags, name, capsys, tmp_path):
    _run(capsys, "train", *fast_train_flags(tmp_path / "out"), "--method", name, "--mask", "1010101")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (
        manifest["method"] == name
        and manifest["mask"] == "1010101"
        and manifest["result"]["total_parameters"] == 1_687_652
    )
    pipe, _ = load_trained(tmp_path / "out")
    assert type(pipe.unet) is UNet2DConditionModel
    assert not any(parametrize.is_parametrized(m) for m in pipe.unet.modules())


def test_train_passes_the_method_options(fast_train_flags, capsys, tmp_path):
    argv = fast_train_flags(tmp_path / "out")
    _run(
        capsys,
        "train",
        *argv,
        "--method",
        "svdiff",
        "--layout",
        "paper",
        "--mask",
        "10101",
        "--norm_learning_rate",
        "1e-4",
    )
    config = json.loads((tmp_path / "out" / "manifest.json").read_text())["config"]
    assert (config["layout"], config["norm_learning_rate"]) == ("paper", 1e-4)
    load_trained(tmp_path / "out")  # rebuilt with the paper layout, else its deltas would not fit
