"""Which sites of a mask space drive memorization and which drive quality, read off a mask table (mask_table.py).

    python benchmarks/mask_effects.py [--table benchmarks/data/mask_table.csv] [--markdown FILE] [--plot FILE]

Per stand-alone metric (d_mem, FID, alignment, AMD, D_mem images regenerated): an additive model over the mask's bits,
fitted by least squares on the table's first-seed rows: the intercept (every site off) and each site's effect (the
metric's change when that site is switched on, the others held), with R² (what interactions between sites leave
unexplained). Any part of a table will do: masks are trained in a shuffled order, so a part is a random sample of
the space. Where masks were trained with a second seed, the seed-to-seed standard deviation of each metric (the
difference's sd over sqrt 2) is the noise an effect has to exceed. Then Spearman's rho between the metrics over the
masks (does d_mem, the search's memorization objective, rank masks as the images they copy do?), and the plot:
every mask's FID against d_mem, coloured by images regenerated, its Pareto front in red.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from memcontrol.errors import UserError  # noqa: E402
from memcontrol.io import atomic_path, write_text  # noqa: E402
from memcontrol.pipeline.report import markdown_table  # noqa: E402
from memcontrol.search.pick import pareto_mask  # noqa: E402

METRICS = ("dmem_mean", "fid", "alignment", "amd", "regenerated")
FRACTION = "trainable_fraction"


def load_rows(path: Path) -> tuple[list[str], dict[int, dict[str, dict]]]:
    """The table's sites (from the setup beside it) and its rows with stand-alone values, by seed and mask."""
    setup = path.with_suffix(".json")
    if not path.is_file() or not setup.is_file():
        raise UserError(f"--table {path}: expected the CSV of benchmarks/mask_table.py and its {setup.name}")
    by_seed: dict[int, dict[str, dict]] = {}
    for row in csv.DictReader(io.StringIO(path.read_text())):
        if row.get("steps"):  # a row joined from the trials before its mask was trained has none
            by_seed.setdefault(int(row["seed"]), {})[row["mask"]] = row
    if not by_seed:
        raise UserError(f"--table {path}: no stand-alone rows yet")
    return json.loads(setup.read_text())["setup"]["sites"], by_seed


def values(rows: dict[str, dict], masks: list[str], columns: tuple[str, ...]) -> np.ndarray:
    return np.array([[float(rows[m][c]) for c in columns] for m in masks])


def additive_effects(masks: list[str], y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of each column of ``y`` on the masks' bits: coefficients (intercept first, then one per site) and
    R² per column."""
    bits = np.array([[1.0, *map(float, m)] for m in masks])
    coefficients, *_ = np.linalg.lstsq(bits, y, rcond=None)
    residual = ((y - bits @ coefficients) ** 2).sum(0)
    total = ((y - y.mean(0)) ** 2).sum(0)
    return coefficients, 1 - residual / np.where(total > 0, total, 1)


def seed_noise(by_seed: dict[int, dict[str, dict]], first: int) -> tuple[np.ndarray | None, int]:
    """Per metric, the sd of one run: that of the difference between two seeds of the same mask, over sqrt 2; and the
    number of such pairs."""
    pairs = [(by_seed[first].get(m), row) for s, rows in by_seed.items() if s != first for m, row in rows.items()]
    pairs = [(a, b) for a, b in pairs if a is not None]
    if len(pairs) < 3:
        return None, 0
    difference = np.array([[float(a[c]) - float(b[c]) for c in METRICS] for a, b in pairs])
    return difference.std(0, ddof=1) / np.sqrt(2), len(pairs)


def report(sites: list[str], by_seed: dict[int, dict[str, dict]]) -> tuple[list[str], list[str], np.ndarray]:
    first = max(by_seed, key=lambda s: len(by_seed[s]))
    rows = by_seed[first]
    masks = sorted(rows)
    if len(masks) <= len(sites) + 1:
        raise UserError(
            f"{len(masks)} masks with stand-alone values: an additive model of {len(sites)} sites needs more"
        )
    y = values(rows, masks, METRICS)
    coefficients, r2 = additive_effects(masks, y)
    noise, pairs = seed_noise(by_seed, first)
    table = [
        ["every site off (intercept)", *coefficients[0]],
        *([f"+ {site}", *coefficients[k + 1]] for k, site in enumerate(sites)),
        ["R² of the additive model", *r2],
        *([[f"sd of one run (seed vs seed, {pairs} masks)", *noise]] if noise is not None else []),
    ]
    rho = spearmanr(np.column_stack([y, values(rows, masks, (FRACTION,))])).statistic
    names = [*METRICS, FRACTION]
    correlations = [
        f"Spearman rho over {len(masks)} masks: "
        + ", ".join(
            f"{names[i]}~{names[j]} {rho[i, j]:+.2f}" for i in range(len(names)) for j in range(i + 1, len(names))
        )
    ]
    lines = [
        f"{len(masks)} masks at seed {first} ({len(sites)} sites); each site's effect on each metric, additive model:",
        "",
        *markdown_table(["", *METRICS], table),
        "",
        *correlations,
    ]
    return lines, masks, y


def plot(masks: list[str], y: np.ndarray, path: Path) -> Path:
    """FID against d_mem per mask, coloured by images regenerated, the front red and its masks named."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend

    dmem, fid, copied = y[:, METRICS.index("dmem_mean")], y[:, METRICS.index("fid")], y[:, METRICS.index("regenerated")]
    front = pareto_mask(np.column_stack([dmem, fid]))
    figure = Figure(figsize=(7, 5), layout="constrained")
    ax = figure.subplots()
    dots = ax.scatter(dmem, fid, c=copied, cmap="viridis", s=22)
    figure.colorbar(dots, ax=ax, label="D_mem images regenerated")
    order = np.argsort(dmem[front])
    ax.step(dmem[front][order], fid[front][order], where="post", c="tab:red", lw=1)
    for k in np.flatnonzero(front):
        ax.annotate(masks[k], (dmem[k], fid[k]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("d_mem on D_mem's prompts ↓")
    ax.set_ylabel("validation FID ↓")
    ax.set_title(f"Every mask trained stand-alone ({len(masks)}); red: the Pareto front", fontsize=9)
    ax.grid(alpha=0.3)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=Path("benchmarks/data/mask_table.csv"))
    parser.add_argument("--markdown", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--plot", type=Path, default=None, help="FID against d_mem per mask (PNG)")
    args = parser.parse_args(argv)
    try:
        sites, by_seed = load_rows(args.table)
        lines, masks, y = report(sites, by_seed)
    except UserError as e:
        print(f"mask_effects: {e}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    if args.markdown:
        write_text(args.markdown, "\n".join(lines) + "\n")
    if args.plot:
        print(f"plot: {plot(masks, y, args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
