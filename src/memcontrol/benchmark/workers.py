"""``--workers N``: the benchmark's cells in N processes of one torch thread each, all in one output folder.

Each cell not finished before is submitted once to a pool of N spawned processes, so exactly one process
trains it, and a worker takes the next cell as soon as it is free (cells differ in length several-fold,
which a fixed split of the grid would leave to chance). A cell that fails writes its traceback to
``cells/NAME/failure.txt`` and the others go on; its finished stages stay, so running again retries it.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from tqdm.auto import tqdm

from memcontrol.benchmark.grid import Cell, run_cell
from memcontrol.io import write_text
from memcontrol.search.run_config import RunConfig

FAILURE_FILE = "failure.txt"


def run_cells_in_workers(job: RunConfig, cells: dict[Cell, Path], workers: int, *, progress: bool) -> dict[Cell, str]:
    """Train and evaluate ``cells`` (each into its folder) in ``workers`` processes; return the failed ones' errors."""
    failures = {}
    # spawn, not fork: a forked child would inherit this process's torch thread pools and any accelerator state.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread) as pool:
        futures = {pool.submit(_run_cell, job, cell, directory): cell for cell, directory in cells.items()}
        finished = as_completed(futures)
        for future in tqdm(finished, total=len(futures), desc="benchmark", unit="cell", disable=not progress):
            cell = futures[future]
            try:
                error = future.result()
            except BrokenProcessPool:  # a worker was killed (out of memory, a signal): the pool runs no more cells
                error = "a worker process died (killed, e.g. out of memory) before this cell was done"
                write_text(cells[cell] / FAILURE_FILE, error + "\n")
            if error is not None:
                failures[cell] = error
            if progress:
                tqdm.write(f"cell {cell.name}: " + ("done" if error is None else f"FAILED: {error}"))
    return failures


def _one_thread() -> None:
    """Each worker computes on one core, before any torch work: N workers share N cores without oversubscription."""
    os.environ["OMP_NUM_THREADS"] = "1"  # for any process the cell starts in turn
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)


def _run_cell(job: RunConfig, cell: Cell, directory: Path) -> str | None:
    """In a worker: run ``cell``; None when done, else the error's last line (its traceback in the cell's folder)."""
    failure = directory / FAILURE_FILE
    try:
        run_cell(job, cell, directory, progress=False)
    except Exception as e:  # any failure is the cell's: record it and let the other cells go on
        write_text(failure, traceback.format_exc())
        return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[-1]}"
    failure.unlink(missing_ok=True)  # an earlier run's failure, retried
    return None
