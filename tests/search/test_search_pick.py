"""The Pareto front, the pick rules and the hypervolume, on arrays with known answers."""

import numpy as np
import optuna
import pytest

from memcontrol.search.pick import PICK_RULES, hypervolume, hypervolume_history, normalise, pareto_mask, pick


def test_the_front_is_optunas_best_trials():
    points = np.random.default_rng(0).random((40, 2))
    study = optuna.create_study(directions=["minimize", "minimize"])
    for p in points:
        study.add_trial(optuna.trial.create_trial(values=list(p)))
    assert {t.number for t in study.best_trials} == set(np.flatnonzero(pareto_mask(points)).tolist())


def test_equal_points_are_both_on_the_front():
    assert pareto_mask(np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]])).tolist() == [True, True, False]


def test_normalise_to_the_unit_range_and_constant_columns_to_zero():
    scaled = normalise(np.array([[1.0, 5.0], [3.0, 5.0], [2.0, 5.0]]))
    assert scaled.tolist() == [[0.0, 0.0], [1.0, 0.0], [0.5, 0.0]]


@pytest.mark.parametrize("rule, expected", [("mean", 1), ("normalized_mean", 1), ("chebyshev", 2), ("ideal", 2)])
def test_pick_rules_choose_on_the_front(rule, expected):
    points = np.array([[0.0, 1.0], [0.1, 0.85], [0.5, 0.5], [1.0, 0.0], [0.6, 0.6]])
    assert pick(points, rule) == expected


def test_mean_is_the_papers_mean_of_the_raw_values_and_normalized_mean_weighs_each_objective_alike():
    # FID in the hundreds beside d_mem near 1: the raw mean is FID's choice, the normalised one a compromise.
    fid_dmem = np.array([[100.0, 1.0], [150.0, 0.1], [300.0, 0.0]])
    assert pick(fid_dmem, "mean") == 0 and pick(fid_dmem, "normalized_mean") == 1
    # A maximised objective enters negated: the raw mean then trades one unit of it for one unit of the other.
    fid_alignment = np.array([[10.0, 0.0], [12.0, -5.0], [20.0, -9.0]])
    assert pick(fid_alignment, "mean") == 1  # (10 - 0) / 2, (12 - 5) / 2, (20 - 9) / 2


def test_a_dominated_point_tying_on_the_worst_objective_is_not_picked():
    """The Pareto filter matters for chebyshev: the maximum sees only the worst objective, so the dominated
    (0.3, 0.5) ties (0.0, 0.5), which is better in the other objective, and without the filter wins by coming first.

    The other rules (mean, normalized_mean, ideal) increase strictly with each objective: a dominated point always
    scores worse than the point dominating it, so their lowest score is on the front with or without the filter.
    """
    points = np.array([[0.3, 0.5], [0.0, 0.5], [1.0, 0.0], [0.5, 1.0]])  # each column spans [0, 1]: z == points
    assert pareto_mask(points).tolist() == [False, True, True, False]
    assert pick(points, "chebyshev") == 1
    rng = np.random.default_rng(0)
    for points in rng.integers(0, 5, size=(200, 12, 3)).astype(float):  # a coarse grid: many ties
        for rule in ("mean", "normalized_mean", "ideal"):
            assert pareto_mask(points)[np.argmin(PICK_RULES.get(rule).score(points, normalise(points)))], rule


def test_hypervolume_known_answers():
    assert hypervolume(np.array([[0.5, 0.5]]), np.array([1.0, 1.0])) == pytest.approx(0.25)
    assert hypervolume(np.array([[0.0, 0.5], [0.5, 0.0], [0.6, 0.6]]), np.array([1.0, 1.0])) == pytest.approx(0.75)
    # Two boxes of 0.5 and 0.25 overlapping in 0.125.
    assert hypervolume(np.array([[0.0, 0.0, 0.5], [0.5, 0.5, 0.0]]), np.ones(3)) == pytest.approx(0.625)
    assert hypervolume(np.array([[2.0, 0.0]]), np.array([1.0, 1.0])) == 0.0  # beyond the reference


def test_hypervolume_history_never_decreases():
    history = hypervolume_history(np.random.default_rng(1).random((15, 3)))
    assert len(history) == 15 and all(b >= a for a, b in zip(history, history[1:])) and history[-1] > 0
