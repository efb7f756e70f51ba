"""The benchmark's grid: rows (methods) x mitigations x seeds, each cell fine-tuned and evaluated in its own folder.

    cells/ROW-MITIGATION-seedN/
      model/        `memcontrol train` of the cell
      evaluation/   `memcontrol evaluate` of that model: metrics.json, extraction.png, closest/
      cell.json     the cell's options and the stages done, with their wall times

A stage done is skipped when the benchmark runs again; a cell made with other options is refused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from memcontrol.config import MethodRate, TrainConfig, opt
from memcontrol.io import ensure_writable_dir
from memcontrol.metrics.run import run_evaluate
from memcontrol.mitigations import get_mitigation
from memcontrol.mitigations.base import MITIGATIONS
from memcontrol.peft.base import METHODS
from memcontrol.peft.mask_file import SearchedMask
from memcontrol.pipeline.stages import Stage, run_stages, stages_done
from memcontrol.registry import Registry
from memcontrol.search.run_config import OPERATIONAL, RunConfig
from memcontrol.train.run import resumed, run_train

MEMCONTROL = "memcontrol"  # the row of the searched method, mask and learning rate
CELLS_DIR, CELL_FILE, MODEL_DIR, EVALUATION_DIR = "cells", "cell.json", "model", "evaluation"


@dataclass
class BenchmarkConfig:
    """What `memcontrol benchmark` compares; training and evaluation take the other options as `memcontrol run` does."""

    methods: list[MethodRate] | None = opt(
        None,
        "methods (the table's rows): a method with every site on at --learning_rate, or METHOD@LEARNING_RATE; "
        f"{MEMCONTROL}: the searched method, mask and learning rate; default: the registered methods that the grid has "
        f"by default (the paper's: freeze, full, svdiff, difffit, attention) and {MEMCONTROL}",
        registry="method",
        also=(MEMCONTROL,),
        min_items=1,
    )
    mitigations: list[str] | None = opt(
        None,
        "mitigations, each with its own options (listed under its name); default: the registered mitigations "
        "that the grid has by default (the paper's: none, rwa, threshold)",
        registry="mitigation",
        min_items=1,
    )
    seeds: list[int] = opt(
        [0, 1, 2], "seeds: every cell is trained and evaluated once per seed (in place of --seed)", min=0, min_items=1
    )
    mask_file: str | None = opt(
        None, "best_mask.json of a search for the memcontrol row; default: search once into OUTPUT_DIR/search"
    )
    figure_rows: int = opt(8, "D_mem images (rows) in each closest-generation figure", min=1)
    workers: int = opt(
        1, "processes running cells at once, one torch thread each, into one --output_dir; 1: in this one", min=1
    )


@dataclass(frozen=True)
class Row:
    """One method of the table: what it trains and at which learning rate."""

    label: str
    method: str
    mask: str | None  # None: every site on
    learning_rate: float


@dataclass(frozen=True)
class Cell:
    row: Row
    mitigation: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.row.label}-{self.mitigation}-seed{self.seed}"

    def job(self, job: RunConfig) -> RunConfig:
        """``job`` as this cell trains and evaluates it."""
        train = dataclasses.replace(
            job.train,
            method=self.row.method,
            mask=self.row.mask,
            learning_rate=self.row.learning_rate,
            mitigation=self.mitigation,
            seed=self.seed,
        )
        return dataclasses.replace(job, train=train, evaluation=dataclasses.replace(job.evaluation, seed=self.seed))

    def options(self, job: RunConfig) -> dict:
        """What the cell's results depend on (the search's options only through the memcontrol row's mask)."""
        options = {
            k: v for k, v in self.job(job).options().items() if k not in OPERATIONAL and not k.startswith("search.")
        }
        return {"row": self.row.label, **options}


def grid_methods(cfg: BenchmarkConfig) -> list[MethodRate]:
    """``--methods``, or the registered methods the grid has by default (``in_default_grid``) and memcontrol."""
    return cfg.methods or [*map(MethodRate, default_grid(METHODS)), MethodRate(MEMCONTROL)]


def grid_mitigations(cfg: BenchmarkConfig) -> list[str]:
    """``--mitigations``, or the registered mitigations the grid has by default (``in_default_grid``)."""
    return cfg.mitigations or default_grid(MITIGATIONS)


def default_grid(registry: Registry) -> list[str]:
    """The names in ``registry`` of the plug-ins that the grid has by default, in the order they were registered."""
    return [plugin.name for plugin in registry if plugin.in_default_grid]


def make_row(entry: MethodRate, learning_rate: float, searched: SearchedMask | None) -> Row:
    """A method trains every site, at its own learning rate or ``learning_rate``; memcontrol the searched method and
    mask, at the searched learning rate unless memcontrol@LR."""
    if entry.learning_rate is not None:
        learning_rate = entry.learning_rate
    if entry.method != MEMCONTROL:
        return Row(entry, entry.method, None, learning_rate)
    if entry.learning_rate is None and searched.learning_rate is not None:
        learning_rate = searched.learning_rate
    return Row(entry, searched.method, searched.mask, learning_rate)


def check_mitigations(names: list[str], train: TrainConfig) -> None:
    """Build each of ``--mitigations`` once now, so that a missing option fails before any training."""
    for name in names:
        get_mitigation(name, train.plugin_options)


def run_cell(job: RunConfig, cell: Cell, directory: Path, progress: bool) -> None:
    """Train and evaluate ``cell`` in ``directory``, skipping the stages done there before."""
    directory = ensure_writable_dir(directory)
    run_stages(
        STAGES,
        cell.job(job),
        directory,
        CELL_FILE,
        cell.options(job),
        RunConfig.with_defaults().options(),
        progress=progress,
        label=f"cell {cell.name}",
    )


def check_cell(job: RunConfig, cell: Cell, directory: Path) -> None:
    """Refuse a folder holding ``cell`` made with other options now, before any cell trains (no stage runs)."""
    no_stage: dict[str, Stage] = {}
    defaults, label = RunConfig.with_defaults().options(), f"cell {cell.name}"
    run_stages(no_stage, cell.job(job), directory, CELL_FILE, cell.options(job), defaults, progress=False, label=label)


def cell_finished(directory: Path) -> bool:
    """Whether every stage of the cell in ``directory`` is done."""
    return stages_done(directory / CELL_FILE) >= STAGES.keys()


def _train(job: RunConfig, directory: Path, progress: bool) -> None:
    """fine-tune the cell's method with its mitigation"""
    train = dataclasses.replace(job.train, resume_from_checkpoint=resumed(job.train))
    run_train(job.model, job.data, train, job.sample, directory / MODEL_DIR, progress=progress)


def _evaluate(job: RunConfig, directory: Path, progress: bool) -> None:
    """evaluate the cell's model on the test split"""
    run_evaluate(str(directory / MODEL_DIR), directory / EVALUATION_DIR, job.model, job.features, job.evaluation)


STAGES: dict[str, Stage] = {"train": _train, "evaluate": _evaluate}
