"""A benchmark (`memcontrol benchmark`): methods x mitigations x seeds on one dataset, as tables and the paper's
Figure 4.

output_dir/
  search/                  the search for the memcontrol row (`memcontrol search`), unless --mask_file is given
  cells/ROW-MITIGATION-seedN/   each cell's model/, evaluation/ and cell.json (see memcontrol.benchmark.grid);
                           failure.txt where the cell failed under --workers (see memcontrol.benchmark.workers)
  table.md, table.csv      per method and mitigation, mean and spread over the seeds; cells.csv: every seed
  tradeoff.png, .csv       every line of the table as FID against regenerated and against AMD, with the front
  closest-MITIGATION.png   per mitigation, each D_mem image and every method's nearest generation (first seed)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from memcontrol.benchmark.figure import plot_closest
from memcontrol.benchmark.grid import (
    CELLS_DIR,
    EVALUATION_DIR,
    MEMCONTROL,
    BenchmarkConfig,
    Cell,
    Row,
    cell_finished,
    check_cell,
    check_mitigations,
    grid_methods,
    grid_mitigations,
    make_row,
    run_cell,
)
from memcontrol.benchmark.table import cell_record, write_tables
from memcontrol.benchmark.workers import FAILURE_FILE, run_cells_in_workers
from memcontrol.config import build, load_yaml
from memcontrol.data.prepare import is_builtin
from memcontrol.errors import UserError
from memcontrol.io import ensure_writable_dir
from memcontrol.peft import get_method
from memcontrol.peft.accounting import meta_unet
from memcontrol.peft.mask_file import SearchedMask, read_mask_file
from memcontrol.search.results import BEST_MASK
from memcontrol.search.run import run_search
from memcontrol.search.run_config import RunConfig

CPU_PRESET = "benchmark-cpu"
SEARCH_DIR = "search"


@dataclass(frozen=True)
class BenchmarkRunConfig:
    """Every option of `memcontrol benchmark`: those of `memcontrol run` and the grid's."""

    job: RunConfig
    benchmark: BenchmarkConfig

    @staticmethod
    def classes() -> tuple[type, ...]:
        return (*RunConfig.classes(), BenchmarkConfig)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BenchmarkRunConfig:
        """From the flags and ``--config``; on built-in data without ``--config``, over the benchmark's CPU preset."""
        builtin = is_builtin(getattr(args, "train_data_dir", None))
        defaults = load_yaml(CPU_PRESET) if builtin and not getattr(args, "config", None) else None
        *configs, benchmark = build(cls.classes(), args, defaults=defaults)
        return cls(RunConfig(*configs), benchmark)


def run_benchmark(bench: BenchmarkRunConfig, output_dir: str | Path, *, progress: bool = True) -> Path:
    """Run the cells not done yet in ``output_dir``, then write the tables and figures; return table.md's path."""
    job, grid = bench.job, bench.benchmark
    _refuse_single_cell_options(job)
    methods, mitigations, seeds = grid_methods(grid), grid_mitigations(grid), grid.seeds
    check_mitigations(mitigations, job.train)
    output_dir = ensure_writable_dir(output_dir)
    searched = _searched_mask(job, grid, output_dir, progress) if any(m.method == MEMCONTROL for m in methods) else None
    rows = [make_row(entry, job.train.learning_rate, searched) for entry in methods]
    grid_cells = [Cell(row, mitigation, seed) for row in rows for mitigation in mitigations for seed in seeds]
    cells = {cell: output_dir / CELLS_DIR / cell.name for cell in grid_cells}
    for cell, directory in cells.items():
        check_cell(job, cell, directory)
    failures = _run_cells(job, cells, grid.workers, progress)
    done = [cell for cell in cells if cell not in failures]
    if not done:
        raise UserError(f"every cell failed: {_failed(failures)}")
    figures = [
        _figure(rows, mitigation, seeds[0], grid.figure_rows, output_dir, failures) for mitigation in mitigations
    ]
    records = [cell_record(cells[cell]) for cell in done]
    table = write_tables(
        records, output_dir, [name for name in figures if name], failed=[cell.name for cell in failures]
    )
    if failures:
        raise UserError(
            f"{len(failures)} of {len(cells)} cells failed, the table holds the others: {_failed(failures)}"
        )
    return table


def _run_cells(job: RunConfig, cells: dict[Cell, Path], workers: int, progress: bool) -> dict[Cell, str]:
    """Run ``cells`` here one after another (a failure stops the benchmark), or in ``workers`` processes; return the
    failures."""
    if workers == 1:
        for cell, directory in tqdm(cells.items(), desc="benchmark", unit="cell", disable=not progress):
            run_cell(job, cell, directory, progress)
            (directory / FAILURE_FILE).unlink(missing_ok=True)  # an earlier --workers run's failure, retried
        return {}
    todo = {cell: directory for cell, directory in cells.items() if not cell_finished(directory)}
    if progress and len(todo) < len(cells):
        tqdm.write(f"benchmark: {len(cells) - len(todo)} of {len(cells)} cells done before, skipped")
    return run_cells_in_workers(job, todo, min(workers, len(todo)), progress=progress) if todo else {}


def _failed(failures: dict[Cell, str]) -> str:
    return "; ".join(f"{cell.name} ({error}, see cells/{cell.name}/{FAILURE_FILE})" for cell, error in failures.items())


def _refuse_single_cell_options(job: RunConfig) -> None:
    """--mask and --mitigation would be silently overridden by every cell: say what to give instead."""
    if job.train.mask is not None:
        raise UserError(
            "--mask: the benchmark trains every site of each method; give the memcontrol row's mask with --mask_file"
        )
    if job.train.mitigation != "none":
        raise UserError("--mitigation: the benchmark runs each of --mitigations; give them there")


def _searched_mask(job: RunConfig, grid: BenchmarkConfig, output_dir: Path, progress: bool) -> SearchedMask:
    """The memcontrol row's mask: --mask_file, checked against the model before any training, or the best mask of a
    search into ``output_dir/search`` (run once: run again, it finds its trials done)."""
    if grid.mask_file:
        searched = read_mask_file(grid.mask_file, "--mask_file")
        method = get_method(searched.method, job.train.plugin_options)
        searched.bits(method, meta_unet(job.model.pretrained_model_name_or_path))
        return searched
    run_search(job, output_dir / SEARCH_DIR, progress=progress)
    return read_mask_file(str(output_dir / SEARCH_DIR / BEST_MASK), "the search's")


def _figure(
    rows: list[Row], mitigation: str, seed: int, max_rows: int, output_dir: Path, failures: dict[Cell, str]
) -> str | None:
    """closest-MITIGATION.png of the given seed's cells that did not fail; None where there is nothing to show."""
    shown = [cell for cell in (Cell(row, mitigation, seed) for row in rows) if cell not in failures]
    if not shown:
        return None
    columns = [(cell.row.label, output_dir / CELLS_DIR / cell.name / EVALUATION_DIR) for cell in shown]
    path = plot_closest(
        columns, output_dir / f"closest-{mitigation}.png", rows=max_rows, title=f"mitigation {mitigation}, seed {seed}"
    )
    return path.name if path else None
