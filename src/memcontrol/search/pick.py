"""The Pareto front, the choice of one mask on it, and the hypervolume of the front as trials accrue.

Functions of plain arrays of objective values, oriented so that lower is better (a maximised
objective enters negated): the same code serves one study or the union of several (``--method all``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from memcontrol.registry import Registry


@dataclass(frozen=True)
class PickRule:
    """A scalarisation of the objectives; the lowest score wins. ``score`` takes the raw points (lower is better, so a
    maximised objective counts negated) and their min-max normalised form (each column in [0, 1], 0 the best seen)."""

    name: str
    description: str  # what it minimises, as the report says it
    score: Callable[[np.ndarray, np.ndarray], np.ndarray]


PICK_RULES: Registry[PickRule] = Registry("pick rule", "--pick_rule")
# The paper (Sec. 4.3): the arithmetic mean of the raw values. With FID (hundreds) beside d_mem (about 1) that is FID
# alone; a maximised objective (alignment) is subtracted, one unit of it buying back one unit of the others.
PICK_RULES.register(
    PickRule("mean", "mean of the raw objectives (the paper; a maximised one subtracted)", lambda raw, z: raw.mean(1))
)
PICK_RULES.register(
    PickRule(  # every objective weighs the same over the range the trials span
        "normalized_mean",
        "mean of the objectives min-max normalised over the completed trials",
        lambda raw, z: z.mean(1),
    )
)
PICK_RULES.register(
    PickRule(
        "ideal",
        "distance to the ideal point, objectives min-max normalised over the completed trials",
        lambda raw, z: np.linalg.norm(z, axis=1),
    )
)
PICK_RULES.register(
    PickRule(  # best worst objective
        "chebyshev", "worst of the objectives min-max normalised over the completed trials", lambda raw, z: z.max(1)
    )
)

# Hypervolume reference point, in normalised units: a little beyond the worst value seen, so that
# the worst points of the front still add volume.
REFERENCE = 1.1


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Which rows of (N, K) ``points`` no other row dominates (no worse in all objectives, better in one)."""
    points = np.asarray(points, dtype=float)
    no_worse = (points[:, None, :] <= points[None, :, :]).all(-1)  # [i, j]: i no worse than j everywhere
    better = (points[:, None, :] < points[None, :, :]).any(-1)
    dominated = (no_worse & better).any(0)
    return ~dominated


def normalise(points: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Min-max scale each column of ``points`` by the range of ``reference`` (default: the points themselves)."""
    points = np.asarray(points, dtype=float)
    reference = points if reference is None else np.asarray(reference, dtype=float)
    low, high = reference.min(0), reference.max(0)
    return (points - low) / np.where(high > low, high - low, 1.0)


def pick(points: np.ndarray, rule: str = "normalized_mean") -> int:
    """Row of ``points`` chosen on their Pareto front by ``rule`` (normalised over all the points).

    The front matters for ``chebyshev`` only: a maximum ignores all but the worst objective, so a dominated point can
    tie the point that dominates it. The other rules increase strictly with each objective, so (up to rounding) a
    dominated point scores worse than the point dominating it, and their lowest score lies on the front anyway.
    """
    points = np.asarray(points, dtype=float)
    scores = PICK_RULES.get(rule).score(points, normalise(points))
    scores[~pareto_mask(points)] = np.inf
    return int(np.argmin(scores))


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (exact, by slicing the last objective)."""
    points = np.asarray(points, dtype=float)
    points = points[(points < reference).all(1)]
    if len(points) == 0:
        return 0.0
    points = points[pareto_mask(points)]
    if points.shape[1] == 1:
        return float(reference[0] - points[:, 0].min())
    points = points[np.argsort(points[:, -1])]
    bounds = np.append(points[1:, -1], reference[-1])
    return float(
        sum(
            (upper - points[i, -1]) * hypervolume(points[: i + 1, :-1], reference[:-1])
            for i, upper in enumerate(bounds)
        )
    )


def hypervolume_history(points: np.ndarray) -> list[float]:
    """Hypervolume of the front of the first 1, 2, ... rows, normalised over all rows (reference 1.1 each)."""
    scaled = normalise(points)
    reference = np.full(scaled.shape[1], REFERENCE)
    return [hypervolume(scaled[: n + 1], reference) for n in range(len(scaled))]
