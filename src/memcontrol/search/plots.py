"""Figures of a search: the trade-off (the paper's Figure 3) and the convergence of the front."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from memcontrol.io import atomic_path
from memcontrol.search.objectives import Objective

MARKERS = "o^vD<>ph"


def _axis_label(objective: Objective) -> str:
    return f"{objective.label} {'↓' if objective.direction == 'minimize' else '↑'}"


def plot_pareto(
    points: np.ndarray,
    *,
    methods: Sequence[str],
    objectives: Sequence[Objective],
    front: np.ndarray,
    chosen: int | None,
    baselines: Sequence[tuple[str, str, np.ndarray]],
    path: str | Path,
) -> Path:
    """Trials (blue, one marker per method), the Pareto front (red), the chosen mask (cyan), and the baselines
    (squares: full fine-tuning green, methods with every site on orange); one panel per pair of objectives.

    ``points`` (N, K) are the trials' objective values, ``front`` marks the front, ``baselines`` are (label, method,
    values).
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend

    pairs = list(itertools.combinations(range(len(objectives)), 2))
    columns = min(3, len(pairs))
    rows = -(-len(pairs) // columns)
    figure = Figure(figsize=(5.2 * columns, 4.2 * rows), layout="constrained")
    for ax, (i, j) in zip(figure.subplots(rows, columns, squeeze=False).flat, pairs):
        _panel(ax, points, methods, front, chosen, baselines, i, j)
        ax.set_xlabel(_axis_label(objectives[i]))
        ax.set_ylabel(_axis_label(objectives[j]))
    figure.axes[0].legend(fontsize=7, loc="best")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return Path(path)


def _panel(ax, points, methods, front, chosen, baselines, i, j) -> None:
    several = len(set(methods)) > 1
    for k, method in enumerate(dict.fromkeys(methods)):
        rows = np.array([m == method for m in methods])
        label = f"trials ({method})" if several else "trials"
        ax.scatter(
            points[rows, i],
            points[rows, j],
            c="tab:blue",
            marker=MARKERS[k % len(MARKERS)],
            s=28,
            alpha=0.7,
            label=label,
        )
    ax.scatter(points[front, i], points[front, j], c="tab:red", s=40, label="Pareto front", zorder=3)
    if len(points[0]) == 2:  # the front as a staircase: what the trials dominate
        order = np.argsort(points[front, i])
        ax.step(points[front, i][order], points[front, j][order], where="post", c="tab:red", lw=1, alpha=0.6)
    if chosen is not None:
        ax.scatter(
            points[chosen, i],
            points[chosen, j],
            c="cyan",
            edgecolors="black",
            marker="*",
            s=220,
            label="chosen",
            zorder=4,
        )
    for label, method, values in baselines:
        color = "tab:green" if method == "full" else "tab:orange"
        ax.scatter(values[i], values[j], c=color, marker="s", s=60, edgecolors="black", zorder=3)
        ax.annotate(label, (values[i], values[j]), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.ticklabel_format(useOffset=False)
    ax.grid(alpha=0.3)


def plot_convergence(history: Sequence[float], path: str | Path) -> Path:
    """Hypervolume of the front after each completed trial (normalised objectives): flat means the search stalled."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.2, 3.4), layout="constrained")
    ax = figure.subplots()
    ax.step(range(1, len(history) + 1), history, where="post", marker="o", ms=3)
    ax.set_xlabel("completed trials")
    ax.set_ylabel("hypervolume of the Pareto front")
    ax.set_title("convergence (objectives min-max normalised, reference 1.1)", fontsize=9)
    ax.grid(alpha=0.3)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return Path(path)
