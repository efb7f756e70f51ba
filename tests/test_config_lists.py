"""List options (--objectives, --baselines, the benchmark's --methods, --seeds ...) and plug-in choices read from the
registries: parsed once, from flags and YAML alike, each item checked, and old run folders still match."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json

import pytest

from memcontrol.benchmark.grid import BenchmarkConfig
from memcontrol.cli import main
from memcontrol.config import MethodRate, SearchConfig, build, changed_option
from memcontrol.errors import UserError
from memcontrol.search import PICK_RULES, RunConfig
from memcontrol.search.pick import PickRule


def _search(config_text: str | None = None, tmp_path=None, **flags) -> SearchConfig:
    args = argparse.Namespace(**flags)
    if config_text is not None:
        args.config = tmp_path / "options.yaml"
        args.config.write_text(config_text)
    (search,) = build((SearchConfig,), args)
    return search


def test_a_list_option_reads_a_flag_a_yaml_list_or_yaml_text_alike_and_drops_repeats(tmp_path):
    assert _search(objectives="fid, dmem_mean,,fid").objectives == ["fid", "dmem_mean"]
    assert _search("objectives: [fid, amd, fid]\n", tmp_path).objectives == ["fid", "amd"]
    assert _search("objectives: fid,amd  # as presets and earlier releases wrote it\n", tmp_path).objectives == [
        "fid",
        "amd",
    ]
    assert _search("baselines:\n", tmp_path).baselines == []
    (grid,) = build((BenchmarkConfig,), argparse.Namespace(seeds="2,0,2"))
    assert grid.seeds == [2, 0]
    assert SearchConfig().objectives == ["dmem_mean", "fid"] and SearchConfig().baselines == []


@pytest.mark.parametrize(
    "argv, error",
    [
        (
            ["search", "--objectives", "fid,sharpness"],
            "--objectives: expected one of alignment, amd, clip_score, dmem_max, "
            "dmem_mean, extracted, fid, got 'sharpness'",
        ),
        (
            ["search", "--objectives", "fid,fid"],
            "--objectives: expected at least 2 distinct values, comma-separated, got 1",
        ),
        (["search", "--global_methods", "svdiff,magic"], "--global_methods: expected one of"),
        (
            ["search", "--baselines", "full@nan"],
            "--baselines: expected a finite learning rate of at least 0 after the @, got 'full@nan'",
        ),
        (
            ["search", "--baselines", "svdiff,full@-1"],
            "--baselines: expected a finite learning rate of at least 0 after the @",
        ),
        (
            ["search", "--baselines", "nosuch@1e-3"],
            "--baselines: expected one of attention, difffit, freeze, full, lora, svdiff, got 'nosuch@1e-3'",
        ),
        (
            ["search", "--baselines", "full@fast"],
            "--baselines: expected METHOD or METHOD@LEARNING_RATE, e.g. full@5e-4, got 'full@fast'",
        ),
        (["benchmark", "--methods", "full@nan"], "--methods: expected a finite learning rate"),
        (
            ["benchmark", "--methods", "memcontrol,nosuch@1e-3"],
            "--methods: expected one of attention, difffit, freeze, full, lora, svdiff, memcontrol, got 'nosuch@1e-3'",
        ),
        (["benchmark", "--mitigations", "none,forget"], "--mitigations: expected one of"),
        (["benchmark", "--seeds", "0,-1"], "--seeds: expected at least 0, got -1"),
        (["benchmark", "--seeds", "0,one"], "--seeds: expected int values, got 'one'"),
    ],
)
def test_a_bad_list_item_is_one_line_naming_the_option(argv, error, capsys, tmp_path):
    assert main([*argv, "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"memcontrol {argv[0]}: error: {error}") and "\n" not in err
    assert not (tmp_path / "out").exists()  # refused before any work


def test_a_bad_list_item_in_yaml_names_the_file_and_option(tmp_path):
    with pytest.raises(UserError, match=r"option 'baselines': expected a finite learning rate .* got 'full@-1'"):
        _search("baselines: [svdiff, full@-1]\n", tmp_path)


def test_method_at_rate_is_parsed_once_into_its_parts_and_keeps_its_text():
    search = _search(baselines="full@5.0e-4, svdiff")
    full, svdiff = search.baselines
    assert (full.method, full.learning_rate, svdiff.method, svdiff.learning_rate) == ("full", 5e-4, "svdiff", None)
    assert full == "full@5.0e-4"  # the text as given names its folder and row, as before
    copied = copy.deepcopy(full)  # as dataclasses.asdict (the recorded options) and worker processes copy it
    assert (copied.method, copied.learning_rate) == ("full", 5e-4)
    assert json.loads(json.dumps(dataclasses.asdict(search)))["baselines"] == ["full@5.0e-4", "svdiff"]
    assert MethodRate("memcontrol@1e-3").learning_rate == 1e-3


def test_list_options_recorded_as_text_by_earlier_releases_still_match():
    current = json.loads(json.dumps(RunConfig.from_args(argparse.Namespace(baselines="full@5.0e-4")).options()))
    old = {
        **current,
        "search.objectives": "dmem_mean, fid",
        "search.global_methods": "svdiff,difffit,attention",
        "search.baselines": "full@5.0e-4",
    }
    assert changed_option(old, current, {}) is None
    assert changed_option({**old, "search.objectives": "fid,amd"}, current, {}) == "search.objectives"


def test_a_run_folder_recorded_with_list_options_as_text_resumes(tmp_path, capsys):
    from memcontrol.search.run_config import OPERATIONAL

    options = {k: v for k, v in RunConfig.from_args(argparse.Namespace()).options().items() if k not in OPERATIONAL}
    text = {k: ",".join(v) for k, v in options.items() if isinstance(v, list)}
    assert set(text) == {"search.objectives", "search.global_methods", "search.baselines"}
    stages = [{"stage": s, "seconds": 1.0} for s in ("search", "train", "evaluate", "report")]
    (tmp_path / "run.json").write_text(json.dumps({"version": 2, "options": {**options, **text}, "stages": stages}))
    assert main(["run", "--output_dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("done before, skipped") == 4
    assert main(["run", "--output_dir", str(tmp_path), "--objectives", "fid,dmem_mean"]) == 2  # the order is the axes'
    assert "search.objectives" in capsys.readouterr().err


def test_a_newly_registered_plugin_is_a_choice_of_its_flag(monkeypatch, capsys):
    with pytest.raises(UserError, match="--pick_rule: expected one of"):
        _search(pick_rule="throw_away_rule")
    monkeypatch.setattr(PICK_RULES, "_classes", dict(PICK_RULES._classes))  # the registration ends with the test
    PICK_RULES.register(PickRule("throw_away_rule", "the first point", lambda raw, z: raw[:, 0] * 0))
    assert _search(pick_rule="throw_away_rule").pick_rule == "throw_away_rule"
    assert main(["search", "--help"]) == 0
    assert "throw_away_rule" in capsys.readouterr().out
