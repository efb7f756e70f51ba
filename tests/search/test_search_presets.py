"""Shipped configs (presets) parse, the CPU preset is the built-in default of `search` and `run`, and shared flags."""

import argparse

import pytest

from memcontrol.cli import main
from memcontrol.config import build, preset_names
from memcontrol.search import RunConfig, get_objectives


def _preset(name):
    """Any preset as the run's options (the benchmark's are a superset, so its presets build too)."""
    from memcontrol.benchmark import BenchmarkRunConfig

    *configs, _ = build(BenchmarkRunConfig.classes(), argparse.Namespace(config=name))
    return RunConfig(*configs)


@pytest.mark.parametrize("name", preset_names())
def test_every_shipped_config_parses(name):
    job = _preset(name)
    assert len(get_objectives(job.search.objectives)) >= 2 and job.search.n_trials >= 1


def test_the_paper_preset_has_the_authors_settings():
    assert {"cpu", "paper-sd15"} <= set(preset_names())
    job = _preset("paper-sd15")
    assert (job.data.resolution, job.train.train_batch_size, job.train.max_train_steps) == (224, 128, 3000)
    assert (job.data.dmem_size, job.data.dmem_repeats, job.search.proxy_fraction) == (100, 50, 0.01)
    assert job.search.search_learning_rate and (job.search.learning_rate_min, job.search.learning_rate_max) == (
        1e-5,
        1e-3,
    )


def test_builtin_data_without_a_config_starts_from_the_cpu_preset():
    cpu = _preset("cpu")
    job = RunConfig.from_args(argparse.Namespace(n_trials=5))
    assert job.search.n_trials == 5  # a flag still wins
    assert (job.train.method, job.train.learning_rate) == ("attention", 1e-4)  # the swept rate (docs/benchmark)
    assert job.search.trial_train_steps == cpu.search.trial_train_steps
    yours = RunConfig.from_args(argparse.Namespace(train_data_dir="/data/mimic"))
    assert yours.search.n_trials == 20 and yours.train.method == "full"  # the fields' defaults


def test_the_benchmark_preset_searches_its_memcontrol_row_as_the_cpu_preset_does():
    """The two presets write the search twice; the README's benchmark reuses `memcontrol run`'s best_mask.json."""
    import dataclasses

    cpu, benchmark = _preset("cpu"), _preset("benchmark-cpu")
    assert dataclasses.replace(cpu.search, baselines=[]) == benchmark.search  # baselines: only the run's plot
    for field in ("method", "learning_rate", "train_batch_size", "lr_warmup_steps", "seed"):
        assert getattr(cpu.train, field) == getattr(benchmark.train, field), field


def test_a_shared_flag_sets_every_config_that_has_it():
    from memcontrol.cli import _parser

    job = RunConfig.from_args(_parser().parse_args(["run", "--seed", "3", "--guidance_scale", "2"]))
    assert job.train.seed == job.evaluation.seed == 3
    assert job.sample.guidance_scale == job.evaluation.guidance_scale == 2.0


def test_an_unknown_preset_lists_the_presets(capsys):
    assert main(["search", "--config", "gpu-cluster"]) == 2
    err = capsys.readouterr().err
    assert "gpu-cluster" in err and "cpu" in err and "paper-sd15" in err


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_every_registered_sampler_and_crossover_makes_an_optuna_sampler():
    import optuna

    from memcontrol.config import SearchConfig
    from memcontrol.search.outer_loop import CROSSOVERS, SAMPLERS, make_sampler

    for sampler in SAMPLERS.names():
        assert isinstance(make_sampler(SearchConfig(sampler=sampler), seed=0), optuna.samplers.BaseSampler)
    for crossover in CROSSOVERS.names():
        nsga2 = make_sampler(SearchConfig(sampler="nsga2", plugin_options={"crossover": crossover}), seed=0)
        assert type(nsga2._child_generation_strategy._crossover) is CROSSOVERS.get(crossover).make
    options = {"population_size": 6, "startup_trials": 3}  # each sampler takes its own options
    assert make_sampler(SearchConfig(sampler="nsga2", plugin_options=options), seed=0)._population_size == 6
    assert make_sampler(SearchConfig(sampler="tpe", plugin_options=options), seed=0)._n_startup_trials == 3


@pytest.mark.parametrize("name", ["cpu", "benchmark-cpu", "paper-sd15"])
def test_no_preset_runs_nsga2_as_random_search(name, recwarn):
    from memcontrol.search.outer_loop import warn_if_random_search

    warn_if_random_search(_preset(name).search)  # paper-sd15: not the authors' 20 trials with a population of 50
    assert not recwarn


def test_nsga2_warns_below_twice_its_population_and_other_samplers_never(recwarn):
    from memcontrol.config import SearchConfig
    from memcontrol.search.outer_loop import RandomSearchWarning, warn_if_random_search

    with pytest.warns(RandomSearchWarning, match="10 of the 19 trials are its random first generation"):
        warn_if_random_search(SearchConfig(n_trials=19, sampler="nsga2", plugin_options={"population_size": 10}))
    recwarn.clear()
    bred = SearchConfig(n_trials=20, sampler="nsga2", plugin_options={"population_size": 10})  # a whole generation
    warn_if_random_search(bred)
    warn_if_random_search(SearchConfig(n_trials=5, plugin_options={"population_size": 10}, sampler="tpe"))
    assert not recwarn


def test_a_run_folder_of_the_builtin_default_made_before_normalized_mean_had_its_name_resumes(tmp_path, capsys):
    """Until normalized_mean had its name, run.json recorded the built-in default's normalised mean as "mean"."""
    import json

    from memcontrol.search.run_config import OPERATIONAL

    options = {k: v for k, v in RunConfig.from_args(argparse.Namespace()).options().items() if k not in OPERATIONAL}
    assert options["search.pick_rule"] == "normalized_mean"
    stages = [{"stage": s, "seconds": 1.0} for s in ("search", "train", "evaluate", "report")]
    old = tmp_path / "old"
    old.mkdir()
    (old / "run.json").write_text(json.dumps({"options": {**options, "search.pick_rule": "mean"}, "stages": stages}))
    assert main(["run", "--output_dir", str(old)]) == 0
    assert capsys.readouterr().out.count("done before, skipped") == 4
    # Its mask was not picked by the paper's mean, nor is a new run's by the normalised mean: each refuses the other.
    assert main(["run", "--output_dir", str(old), "--pick_rule", "mean"]) == 2
    assert 'search.pick_rule="normalized_mean", not "mean"' in capsys.readouterr().err
    new = tmp_path / "new"
    new.mkdir()
    recorded = {"version": 2, "options": {**options, "search.pick_rule": "mean"}, "stages": stages}
    (new / "run.json").write_text(json.dumps(recorded))
    assert main(["run", "--output_dir", str(new)]) == 2
    assert 'search.pick_rule="mean", not "normalized_mean"' in capsys.readouterr().err
