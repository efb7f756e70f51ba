"""tradeoff.png and tradeoff.csv: every line of the table as a point of FID against memorisation, with its front.

The paper's Figure 3 draws the searched masks' FID against d_mem with their Pareto front; here the points are
the table's lines (method x mitigation), in two panels: FID against regenerated (both lower is better) and FID
against AMD (higher is better), each mean with the standard deviation over the seeds as error bars.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from memcontrol.io import atomic_path
from memcontrol.search.pick import pareto_mask

TRADEOFF_PNG, TRADEOFF_CSV = "tradeoff.png", "tradeoff.csv"
X = ("fid", "FID ↓")
# (measure, axis label, +1 where lower is better, -1 where higher is better)
PANELS = (("regenerated", "regenerated ↓ (of the D_mem images)", 1), ("amd", "AMD ↑", -1))
MARKERS = "os^vDph<>"
TRADEOFF_COLUMNS = (
    "row",
    "mitigation",
    *(f"{key}_{stat}" for key in (X[0], *(p[0] for p in PANELS)) for stat in ("mean", "sd")),
    *(f"on_front_{p[0]}" for p in PANELS),
)


def tradeoff_points(summaries: list[dict]) -> list[dict]:
    """Per line of the table (``table.summarise``): what the figure plots and, per panel, whether the line is on the
    Pareto front of the lines that have both values (None where it has not: it is not drawn in that panel)."""
    points = [{key: summary.get(key) for key in TRADEOFF_COLUMNS} for summary in summaries]
    for key, _, sign in PANELS:
        drawn = [p for p in points if p["fid_mean"] is not None and p[f"{key}_mean"] is not None]
        front = pareto_mask(np.array([[p["fid_mean"], sign * p[f"{key}_mean"]] for p in drawn]).reshape(-1, 2))
        for point in points:
            point[f"on_front_{key}"] = None
        for point, on_front in zip(drawn, front):
            point[f"on_front_{key}"] = int(on_front)
    return points


def plot_tradeoff(points: list[dict], path: Path) -> Path:
    """Both panels of ``points`` (``tradeoff_points``): the front in red joined as a staircase, the others blue, one
    marker per mitigation, every point numbered as in the key beside the panels (a cluster of names is unreadable)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend

    figure = Figure(figsize=(13, 4.8), layout="constrained")
    *panels, key = figure.subplots(1, len(PANELS) + 1, width_ratios=[1] * len(PANELS) + [0.45])
    mitigations = list(dict.fromkeys(p["mitigation"] for p in points))
    marker = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(mitigations)}
    for ax, (measure, label, _) in zip(panels, PANELS):
        drawn = [(number, p) for number, p in enumerate(points, start=1) if p[f"on_front_{measure}"] is not None]
        for _, point in drawn:
            _errorbar(ax, point, measure, marker[point["mitigation"]])
        front = sorted((p["fid_mean"], p[f"{measure}_mean"]) for _, p in drawn if p[f"on_front_{measure}"])
        ax.step([x for x, _ in front], [y for _, y in front], where="post", c="tab:red", lw=1, alpha=0.6)
        _numbers(ax, drawn, measure)
        ax.set_xlabel(X[1])
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    _key(key, points, marker)
    figure.suptitle("The table's lines: mean ± standard deviation over the seeds; red: the Pareto front", fontsize=9)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return Path(path)


def _errorbar(ax, point: dict, measure: str, marker: str) -> None:
    color = "tab:red" if point[f"on_front_{measure}"] else "tab:blue"
    ax.errorbar(
        point["fid_mean"],
        point[f"{measure}_mean"],
        xerr=point["fid_sd"],
        yerr=point[f"{measure}_sd"],  # None: no bar
        fmt=marker,
        color=color,
        ms=6,
        elinewidth=1,
        capsize=2,
        zorder=3,
    )


def _numbers(ax, drawn: list[tuple[int, dict]], measure: str) -> None:
    """Each point's number; points at one place (the frozen model under every mitigation) share one label."""
    at: dict[tuple[float, float], list[str]] = {}
    for number, point in drawn:
        at.setdefault((point["fid_mean"], point[f"{measure}_mean"]), []).append(str(number))
    for (x, y), numbers in at.items():
        ax.annotate(",".join(numbers), (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)


def _key(ax, points: list[dict], marker: dict[str, str]) -> None:
    ax.axis("off")
    handles = [ax.scatter([], [], c="gray", marker=m, label=f"mitigation {name}") for name, m in marker.items()]
    ax.legend(handles=handles, fontsize=7, loc="upper left", frameon=False)
    lines = [f"{number:>2}  {p['row']} · {p['mitigation']}" for number, p in enumerate(points, start=1)]
    below_legend = 1 - 0.07 * (len(marker) + 1)
    ax.text(0, below_legend, "\n".join(lines), transform=ax.transAxes, va="top", fontsize=7, family="monospace")
