"""Stages recorded in a folder: done ones are skipped; a folder made with other options is refused, except for
options added by a later release and left at their defaults."""

import dataclasses

import pytest

from memcontrol.config import SearchConfig, load_yaml
from memcontrol.errors import UserError
from memcontrol.pipeline.stages import run_stages
from memcontrol.search.run_config import RunConfig


def _run(directory, options, defaults, calls):
    def stage(job, folder, progress):
        """record the call"""
        calls.append(folder)

    run_stages({"only": stage}, None, directory, "state.json", options, defaults, progress=False, label="job")


def test_an_option_added_later_resumes_at_its_default_and_is_refused_at_another_value(tmp_path):
    calls = []
    _run(tmp_path, {"train.seed": 1}, {"train.seed": 0}, calls)
    _run(tmp_path, {"train.seed": 1, "train.new_option": 5}, {"train.seed": 0, "train.new_option": 5}, calls)
    assert len(calls) == 1  # the folder made before the option existed is resumed: its stage is done
    with pytest.raises(UserError, match="train.new_option=null, not 6"):
        _run(tmp_path, {"train.seed": 1, "train.new_option": 6}, {"train.seed": 0, "train.new_option": 5}, calls)
    with pytest.raises(UserError, match="train.seed=1, not 0"):  # a recorded option at another value, even the default
        _run(tmp_path, {"train.seed": 0}, {"train.seed": 0}, calls)
    assert len(calls) == 1


def test_with_defaults_is_every_section_at_its_dataclass_defaults_not_a_preset():
    job = RunConfig.with_defaults()
    assert [type(getattr(job, f.name)) for f in dataclasses.fields(job)] == list(RunConfig.classes())
    assert all(getattr(job, f.name) == cls() for f, cls in zip(dataclasses.fields(job), RunConfig.classes()))
    assert job.options()["search.n_trials"] == SearchConfig().n_trials != load_yaml("cpu")["n_trials"]
