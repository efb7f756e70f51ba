"""Numeric options are finite and within their declared bounds, from flags and from YAML alike."""

from __future__ import annotations

import argparse
import dataclasses
import typing

import pytest

from memcontrol.cli import main
from memcontrol.config import _base_type, _checked, build, preset_names


def _run(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


OUT_OF_BOUNDS = {
    ("train", "--learning_rate", "nan"): "--learning_rate: expected a finite number, got nan",
    ("train", "--learning_rate", "inf"): "--learning_rate: expected a finite number, got inf",
    ("train", "--max_train_steps", "-5"): "--max_train_steps: expected at least 0, got -5",
    ("train", "--resolution", "0"): "--resolution: expected at least 1, got 0",
    ("train", "--caption_dropout", "1.5"): "--caption_dropout: expected at most 1, got 1.5",
    ("train", "--max_grad_norm", "0"): "--max_grad_norm: expected more than 0, got 0.0",
    ("generate", "--guidance_scale=-inf"): "--guidance_scale: expected a finite number, got -inf",
    ("audit", "--model_dir", "m", "--fid_samples", "1"): "--fid_samples: expected at least 2, got 1",
    ("search", "--population_size", "1"): "--population_size: expected at least 2, got 1",
    ("pretrain", "--vae_learning_rate", "nan"): "--vae_learning_rate: expected a finite number, got nan",
}


@pytest.mark.parametrize("argv", list(OUT_OF_BOUNDS), ids=" ".join)
def test_out_of_bounds_flag_is_one_line_naming_it(argv, capsys, tmp_path):
    code, err = _run(capsys, *argv, "--output_dir", str(tmp_path / "out"))
    assert code == 2 and err == f"memcontrol {argv[0]}: error: {OUT_OF_BOUNDS[argv]}"
    assert not (tmp_path / "out").exists()  # refused before any work


def test_out_of_bounds_yaml_value_names_the_file_and_option(capsys, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("max_train_steps: -5\nlearning_rate: .nan\n")
    out = ["--output_dir", str(tmp_path / "out")]
    code, err = _run(capsys, "train", "--config", str(config), "--learning_rate", "1e-4", *out)  # the flag wins: no nan
    assert code == 2
    assert err == f"memcontrol train: error: --config {config}: option 'max_train_steps': expected at least 0, got -5"

    config.write_text("learning_rate: .nan\n")
    code, err = _run(capsys, "train", "--config", str(config), *out)
    assert code == 2 and err.endswith(f"--config {config}: option 'learning_rate': expected a finite number, got nan")


def test_an_unknown_lr_scheduler_is_one_line_naming_the_choices(capsys, tmp_path):
    code, err = _run(capsys, "train", "--lr_scheduler", "bogus", "--output_dir", str(tmp_path / "out"))
    assert code == 2 and "\n" not in err  # refused before training, not a traceback from diffusers' get_scheduler
    assert err.startswith("memcontrol train: error: argument --lr_scheduler: invalid choice: 'bogus'")
    assert "'cosine'" in err and "'constant_with_warmup'" in err  # the names diffusers accepts
    assert not (tmp_path / "out").exists()


def _config_classes() -> list[type]:
    from memcontrol.benchmark import BenchmarkRunConfig
    from memcontrol.pretrain.run import PretrainConfig
    from memcontrol.search import RunConfig

    return list(dict.fromkeys([*RunConfig.classes(), *BenchmarkRunConfig.classes(), PretrainConfig]))


def _plugin_config_classes() -> list[type]:
    """The options dataclasses of the registered methods and mitigations (their fields are flags too)."""
    from memcontrol.registry import Registry

    return list(dict.fromkeys(config for registry in Registry.every for config in registry.config_classes().values()))


def test_every_numeric_option_declares_its_bounds():
    """A new count or rate must say what it accepts (``min``, ``above`` or ``max`` in its ``opt``)."""
    numeric = [
        (cls, f)
        for cls in _config_classes() + _plugin_config_classes()
        for f in dataclasses.fields(cls)
        if _base_type(typing.get_type_hints(cls)[f.name]) in (int, float)
    ]
    assert len(numeric) > 50
    unbounded = [f"{cls.__name__}.{f.name}" for cls, f in numeric if not {"min", "above", "max"} & set(f.metadata)]
    assert unbounded == []


def test_defaults_and_presets_are_within_bounds():
    """The shipped values pass the checks they impose on users."""
    classes = _config_classes()
    for cls in classes + _plugin_config_classes():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.metadata.get("plugins"):  # the plug-ins' options, checked in their own classes
                default = f.default_factory() if f.default is dataclasses.MISSING else f.default
                _checked(f, _base_type(hints[f.name]), default, f"{cls.__name__}.{f.name}")
    for preset in preset_names():
        assert build(tuple(classes), argparse.Namespace(config=preset))
