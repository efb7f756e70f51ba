"""A sampler that keeps proposing a mask already tried (GP, TPE on a small space) still gets a new mask per trial.

The outer loop runs here with a toy inner loop (no training): each trial's objectives are read off its mask.
"""

import gc

import optuna
import pytest

from memcontrol.errors import UserError
from memcontrol.search.inner_loop import MaskObjective, TrialFailed
from memcontrol.search.objectives import get_objectives
from memcontrol.search.outer_loop import DUPLICATE_OF, REPLACED_DUPLICATE_OF, run_trials
from memcontrol.search.space import SearchSpace

SPACE = SearchSpace({"svdiff": ("down.0", "mid", "up.0")}, 1e-4)  # 8 masks
OBJECTIVES = get_objectives(["dmem_mean", "fid"])


@pytest.fixture(autouse=True)
def _no_gc_after_trial(monkeypatch):
    """run_trials collects garbage after each trial (0.3 s with torch loaded); toy trials leave none to collect."""
    monkeypatch.setattr(gc, "collect", lambda generation=2: 0)


class SameMaskSampler(optuna.samplers.BaseSampler):
    """Proposes every bit 0, whatever the study holds: the worst case of a model the skipped trials leave unchanged."""

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return param_distribution.low


def _toy_inner(proposal, output_dir, record):
    return {**record, "state": "complete", "metrics": {"dmem_mean": sum(proposal.mask), "fid": -sum(proposal.mask)}}


def _search(tmp_path, n_trials, study=None, replace_seed=0):
    study = study or optuna.create_study(directions=[o.direction for o in OBJECTIVES], sampler=SameMaskSampler())
    objective = MaskObjective(
        _toy_inner, SPACE, OBJECTIVES, n_trials=n_trials, trials_dir=tmp_path, replace_seed=replace_seed
    )
    run_trials(study, objective, n_trials=n_trials, catch=(TrialFailed,), poll_seconds=0.01)
    return study


def _complete(study):
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def test_a_repeated_proposal_is_replaced_by_an_untried_mask(tmp_path):
    study = _search(tmp_path, n_trials=6)
    masks = [t.user_attrs["mask"] for t in _complete(study)]
    assert len(masks) == 6 and len(set(masks)) == 6 and masks[0] == "000"
    for replaced in _complete(study)[1:]:  # each in the stead of a skipped repeat, recorded as such
        skipped = study.trials[replaced.user_attrs[REPLACED_DUPLICATE_OF]]
        assert skipped.state == optuna.trial.TrialState.PRUNED and skipped.user_attrs[DUPLICATE_OF] == 0
    # Drawn with a seed per trial number: another search (a resumed one, another worker) draws the same masks.
    assert [t.user_attrs["mask"] for t in _complete(_search(tmp_path, n_trials=6))] == masks

    # The whole space: every mask once; asked for more, the search ends with what the space holds.
    _search(tmp_path, n_trials=8, study=study)
    assert sorted(t.user_attrs["mask"] for t in _complete(study)) == [f"{i:03b}" for i in range(8)]
    with pytest.warns(UserWarning, match="every mask of its space was tried; it ends with 8 finished trials"):
        _search(tmp_path, n_trials=10, study=study)
    assert len(_complete(study)) == 8


def test_without_replacement_a_repeating_sampler_stops_the_search(tmp_path):
    with pytest.raises(UserError, match="keeps proposing what was tried already"):
        _search(tmp_path, n_trials=3, replace_seed=None)


def test_untried_draws_each_remaining_mask_of_a_categorical_space():
    import random

    space = SearchSpace({"svdiff": ("a", "b"), "lora": ("a",)}, 1e-4)  # 4 + 2 pairs
    tried = {("svdiff", "00"), ("svdiff", "11"), ("lora", "1")}
    drawn = {space.untried(tried, random.Random(seed)) for seed in range(200)}
    assert drawn == {("svdiff", (0, 1)), ("svdiff", (1, 0)), ("lora", (0,))}
    assert space.untried(tried | {(m, "".join(map(str, k))) for m, k in drawn}, random.Random(0)) is None
    assert space.params("lora", (0,), 1e-4) == {"method": "lora", "a": 0}
