"""A method, mitigation or search sampler is one file: its options are flags, YAML keys, --help entries and
benchmark cells by themselves; option names stay one flat namespace, and the names runs record are today's."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys

import pytest
import yaml

from memcontrol.benchmark.grid import BenchmarkConfig, check_mitigations, grid_methods, grid_mitigations
from memcontrol.cli import main
from memcontrol.config import SearchConfig, TrainConfig, as_dict, build
from memcontrol.mitigations import Mitigation, MitigationConfig, get_mitigation
from memcontrol.mitigations.base import MITIGATIONS
from memcontrol.peft import MethodConfig, PeftMethod, get_method
from memcontrol.peft.base import METHODS
from memcontrol.registry import Registry
from memcontrol.search.outer_loop import make_sampler

# A new mitigation, PEFT method and search sampler, each with one option, as a user would write them in a file of
# their own.
PLUGIN_FILE = """
import dataclasses

import optuna
from torch import nn

from memcontrol.config import opt
from memcontrol.mitigations import Mitigation, MitigationConfig, register as register_mitigation
from memcontrol.peft import MethodConfig, PeftMethod, register as register_method
from memcontrol.search import SAMPLERS, Sampler, SamplerConfig


@dataclasses.dataclass(frozen=True)
class CaptionShuffleConfig(MitigationConfig):
    shuffle_share: float = opt(0.25, "caption_shuffle: share of the captions shuffled", min=0, max=1)


@register_mitigation
class CaptionShuffle(Mitigation):
    name = "caption_shuffle"
    config_class = CaptionShuffleConfig


@dataclasses.dataclass(frozen=True)
class BiasTuningConfig(MethodConfig):
    bias_learning_rate: float = opt(1e-3, "bias_tuning: learning rate of the biases", min=0)


@register_method
class BiasTuning(PeftMethod):
    name = "bias_tuning"
    config_class = BiasTuningConfig

    def adapt(self, unet: nn.Module, on) -> list[nn.Parameter]:
        return [p for path, p in unet.named_parameters() if path.endswith(".bias") and on(path)]


@dataclasses.dataclass(frozen=True)
class WideTPEConfig(SamplerConfig):
    ei_candidates: int = opt(24, "wide_tpe: candidates TPE weighs for each proposal", min=1)


def wide_tpe(options: WideTPEConfig, seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(n_ei_candidates=options.ei_candidates, seed=seed)


SAMPLERS.register(Sampler("wide_tpe", wide_tpe, WideTPEConfig))
"""


@pytest.fixture
def plugin_file(tmp_path, monkeypatch):
    """Import PLUGIN_FILE as a module of its own; its registrations end with the test."""
    for registry in Registry.every:
        monkeypatch.setattr(registry, "_classes", dict(registry._classes))
    (tmp_path / "my_plugins.py").write_text(PLUGIN_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("my_plugins")
    del sys.modules["my_plugins"]  # the next test imports (and registers) it anew


def _out(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def test_a_plugin_file_is_listed_in_help_with_its_options_under_its_name(plugin_file, capsys):
    assert "caption_shuffle" in _out(capsys, "--help")[1] and "bias_tuning" in _out(capsys, "--help")[1]
    for command in ("train", "search", "run", "benchmark"):
        code, text, _ = _out(capsys, command, "--help")
        assert code == 0
        assert "--mitigation caption_shuffle:\n  --shuffle_share SHUFFLE_SHARE" in text
        assert "--method bias_tuning:\n  --bias_learning_rate BIAS_LEARNING_RATE" in text
        assert "caption_shuffle" in text.split("--mitigation {")[1].split("}")[0]  # a choice of --mitigation
        searches = command != "train"
        assert ("--sampler wide_tpe:\n  --ei_candidates EI_CANDIDATES" in text) == searches
        assert searches == ("--sampler {" in text and "wide_tpe" in text.split("--sampler {")[1].split("}")[0])


def test_a_plugin_files_options_are_yaml_keys_and_flags_with_its_bounds(plugin_file, capsys, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {"method": "bias_tuning", "bias_learning_rate": 0.01, "mitigation": "caption_shuffle", "shuffle_share": 0.5}
        )
    )
    train = build((TrainConfig,), argparse.Namespace(config=str(config)))[0]
    assert get_mitigation(train.mitigation, train.plugin_options).options.shuffle_share == 0.5
    assert get_method(train.method, train.plugin_options).options.bias_learning_rate == 0.01
    assert {"shuffle_share": 0.5, "bias_learning_rate": 0.01}.items() <= as_dict(train).items()  # what a run records

    config.write_text(yaml.safe_dump({"sampler": "wide_tpe", "ei_candidates": 48, "population_size": 6}))
    search = build((SearchConfig,), argparse.Namespace(config=str(config)))[0]
    assert make_sampler(search, seed=0)._n_ei_candidates == 48
    assert {"ei_candidates": 48, "population_size": 6}.items() <= as_dict(search).items()  # recorded: search.*

    code, text, _ = _out(
        capsys, "sites", "--architecture", "tiny", "--method", "bias_tuning", "--bias_learning_rate", "0.1"
    )
    assert code == 0 and "trainable" in text
    code, _, err = _out(
        capsys, "train", "--mitigation", "caption_shuffle", "--shuffle_share", "2", "--output_dir", str(tmp_path)
    )
    assert code == 2 and err == "memcontrol train: error: --shuffle_share: expected at most 1, got 2.0"
    code, _, err = _out(
        capsys, "search", "--sampler", "wide_tpe", "--ei_candidates", "0", "--output_dir", str(tmp_path / "search")
    )
    assert code == 2 and err == "memcontrol search: error: --ei_candidates: expected at least 1, got 0"


def test_a_plugin_file_joins_the_benchmark_grid(plugin_file):
    train = TrainConfig(plugin_options={"threshold_quantile": 0.9})  # the default grid's threshold needs one
    default = BenchmarkConfig()
    assert set(grid_mitigations(default)) == {"none", "rwa", "threshold", "caption_shuffle"}
    check_mitigations(grid_mitigations(default), train)  # each builds with its options
    assert "bias_tuning" in [row.method for row in grid_methods(default)]
    chosen = build((BenchmarkConfig,), argparse.Namespace(mitigations="none,caption_shuffle"))[0]
    assert grid_mitigations(chosen) == ["none", "caption_shuffle"]


def _plugin(base: type, config_base: type, name: str, **fields) -> type:
    """A plug-in class ``name`` whose options dataclass has ``fields`` (name: (type, field))."""
    config = dataclasses.make_dataclass(
        f"{name}Config", [(k, *v) for k, v in fields.items()], bases=(config_base,), frozen=True
    )
    return type(name, (base,), {"name": name, "config_class": config})


def test_two_plugins_may_share_an_option_only_with_one_meaning(monkeypatch):
    monkeypatch.setattr(MITIGATIONS, "_classes", dict(MITIGATIONS._classes))
    monkeypatch.setattr(METHODS, "_classes", dict(METHODS._classes))
    rwa_words = next(f for f in dataclasses.fields(MITIGATIONS.get("rwa").config_class) if f.name == "rwa_words")
    same = dataclasses.field(default=rwa_words.default, metadata=rwa_words.metadata)
    MITIGATIONS.register(_plugin(Mitigation, MitigationConfig, "same_words", rwa_words=(int, same)))
    assert "same_words" in MITIGATIONS.names()
    for other in (
        dataclasses.field(default=5, metadata=rwa_words.metadata),
        dataclasses.field(default=2, metadata={"help": "how many words to remove"}),
    ):
        with pytest.raises(ValueError, match="--rwa_words is already declared"):
            MITIGATIONS.register(_plugin(Mitigation, MitigationConfig, "fewer_words", rwa_words=(int, other)))
    with pytest.raises(ValueError, match="--rwa_words is already declared"):
        METHODS.register(_plugin(PeftMethod, MethodConfig, "word_method", rwa_words=(float, same)))  # across families
    assert "fewer_words" not in MITIGATIONS.names() and "word_method" not in METHODS.names()


def test_a_plugin_option_may_not_take_the_name_of_a_flag_every_run_has(monkeypatch, capsys):
    monkeypatch.setattr(MITIGATIONS, "_classes", dict(MITIGATIONS._classes))
    seed = dataclasses.field(default=0, metadata={"help": "the mitigation's own seed"})
    MITIGATIONS.register(_plugin(Mitigation, MitigationConfig, "seeded", seed=(int, seed)))
    with pytest.raises(ValueError, match="--mitigation seeded: option --seed is already a flag"):
        main(["train", "--help"])


def test_runs_record_the_option_names_they_recorded_before_plugins_owned_them():
    """Old manifests, checkpoints, studies and run.json files name the plug-ins' options flat in TrainConfig's and
    SearchConfig's sections: still so."""
    from memcontrol.search import RunConfig

    moved = (
        "layout",
        "train_outside_sites",
        "lora_rank",
        "norm_learning_rate",
        "rwa_probability",
        "rwa_words",
        "rwa_fixed",
        "threshold",
        "threshold_quantile",
        "embedding_noise_sigma",
        "caption_variants",
    )
    search_moved = (
        "population_size",
        "crossover",
        "crossover_prob",
        "mutation_prob",
        "startup_trials",
        "supernet_train_steps",
        "oneshot_masks",
        "oneshot_fid_samples",
        "oneshot_dmem_prompts",
        "oneshot_inference_steps",
        "oneshot_confirm",
    )
    recorded = RunConfig.with_defaults().options()
    assert {f"train.{name}" for name in moved} <= recorded.keys() and "train.plugin_options" not in recorded
    assert {f"search.{name}" for name in search_moved} <= recorded.keys() and "search.plugin_options" not in recorded
    assert not {f"search.{name}" for name in moved} & recorded.keys()  # --baselines' methods: TrainConfig's options
    assert set(moved) <= as_dict(TrainConfig()).keys()
    old_manifest = {"layout": "paper", "norm_learning_rate": 1e-4, "rwa_words": 4}  # flat, as manifest.json's config
    svdiff = get_method("svdiff", old_manifest).options
    assert (svdiff.layout, svdiff.train_outside_sites, svdiff.norm_learning_rate) == ("paper", False, 1e-4)
    assert get_mitigation("rwa", old_manifest).options.rwa_words == 4
