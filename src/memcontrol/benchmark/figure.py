"""The paper's Figure 4 for a benchmark: each D_mem training image beside every method's generation nearest it.

Nearest as the extraction attack measures it (the worst tile's RMS difference, see
memcontrol.metrics.extraction) among the attack's generations for the image's caption; each evaluation
keeps those generations in its closest/ folder, so the figure is drawn from files alone.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from PIL import Image

from memcontrol.data.imagefolder import load_image
from memcontrol.io import atomic_path
from memcontrol.metrics.run import METRICS_FILE

CELL_INCHES = 1.4


def plot_closest(columns: list[tuple[str, Path]], path: Path, *, rows: int, title: str) -> Path | None:
    """A grid: per D_mem image (at most ``rows``) the image, then the nearest generation of each of ``columns``,
    (label, evaluation folder), with its distance, red where under the attack's threshold. None without D_mem."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend

    evaluations = [json.loads((directory / METRICS_FILE).read_text()) for _, directory in columns]
    shown = min(rows, *(len(e["closest"]) for e in evaluations))
    if shown == 0:
        return None
    threshold = evaluations[0]["settings"]["extraction_threshold"]
    figure = Figure(figsize=(CELL_INCHES * (len(columns) + 1), CELL_INCHES * shown + 0.5), layout="constrained")
    figure.suptitle(
        f"{title}\nd: tile distance to the training image (red: under the extraction threshold {threshold})", fontsize=7
    )
    grid = figure.subplots(shown, len(columns) + 1, squeeze=False)
    for i, axes in enumerate(grid):
        generated = [
            _open(directory / evaluation["closest"][i]["file"])
            for (_, directory), evaluation in zip(columns, evaluations)
        ]
        training = evaluations[0]["closest"][i]
        _show(
            axes[0], load_image(training["training_image"], generated[0].width).add(1).div(2).permute(1, 2, 0).numpy()
        )
        axes[0].set_ylabel(textwrap.fill(textwrap.shorten(training["prompt"], 48), 24), fontsize=5)
        for ax, image, evaluation in zip(axes[1:], generated, evaluations):
            distance = evaluation["closest"][i]["distance"]
            _show(ax, image)
            ax.set_xlabel(f"d={distance:.3f}", fontsize=6, color="tab:red" if distance < threshold else "black")
    for ax, label in zip(grid[0], ["training image", *(label for label, _ in columns)]):
        ax.set_title(label.replace("@", "\n@"), fontsize=7)  # full@5e-4: the learning rate under the method
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return Path(path)


def _show(ax, image) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _open(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")
