"""``memcontrol run``: MemControl end to end, stage by stage; a stage done is written once and skipped when run again.

    output_dir/
      run.json       the run's options and the stages done, with their times
      search/        stage 1 (`memcontrol search`): trials, Pareto front, best_mask.json, pareto.png, convergence.png
      model/         stage 2 (`memcontrol train`): the chosen mask fine-tuned on the full training split
      evaluation/    `memcontrol evaluate` of that model on the test split: metrics.json, extraction.png
      report.md      the tables and figures of all of it

Under ``accelerate launch`` with N processes, each process is one worker of the search (as N `memcontrol search`
workers on one folder are, each alone on its GPU), stage 2 trains data parallel over all N, and the main process
alone evaluates and writes the run's records.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from memcontrol.io import ensure_writable_dir
from memcontrol.metrics.run import run_evaluate
from memcontrol.pipeline.report import REPORT, write_report
from memcontrol.pipeline.stages import Stage, run_stages, stages_done
from memcontrol.runtime import launched_processes, one_process_environment, process_rank
from memcontrol.search.results import BEST_MASK
from memcontrol.search.run import run_search
from memcontrol.search.run_config import OPERATIONAL, RunConfig
from memcontrol.train.run import resumed, run_train

RUN_FILE = "run.json"
SEARCH_DIR, MODEL_DIR, EVALUATION_DIR = "search", "model", "evaluation"


def _search(job: RunConfig, output_dir: Path, progress: bool) -> None:
    """search masks on the proxy training set and pick one on the Pareto front"""
    if launched_processes() == 1:
        run_search(job, output_dir / SEARCH_DIR, progress=progress)
        return
    # One of the launched processes' search workers: a trial is one process's fine-tune, so the worker runs in a
    # child without the launcher's variables (its accelerate state is not distributed), on this process's GPU.
    with (
        _environment(one_process_environment()),
        ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):
        pool.submit(run_search, job, output_dir / SEARCH_DIR, progress=progress).result()


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` is ``env`` inside (for the processes started there), as it was after."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _train(job: RunConfig, output_dir: Path, progress: bool) -> None:
    """fine-tune with the chosen mask on the full training split"""
    best = json.loads((output_dir / SEARCH_DIR / BEST_MASK).read_text())
    train = dataclasses.replace(
        job.train,
        method=best["method"],
        mask=best["mask"],
        learning_rate=best["learning_rate"],
        resume_from_checkpoint=resumed(job.train),
    )
    run_train(job.model, job.data, train, job.sample, output_dir / MODEL_DIR, progress=progress)


def _evaluate(job: RunConfig, output_dir: Path, progress: bool) -> None:
    """evaluate the fine-tuned model on the test split"""
    run_evaluate(str(output_dir / MODEL_DIR), output_dir / EVALUATION_DIR, job.model, job.features, job.evaluation)


def _report(job: RunConfig, output_dir: Path, progress: bool) -> None:
    """write report.md"""
    write_report(output_dir)


STAGES: dict[str, Stage] = {
    "search": _search,
    "train": _train,
    "evaluate": _evaluate,
    "report": _report,
}
SHARED_STAGES = ("search", "train")  # those every launched process works on; the main process does the others


def run_pipeline(job: RunConfig, output_dir: str | Path, *, progress: bool = True) -> Path:
    """Run the stages not done yet in ``output_dir``; return the report's path."""
    output_dir = ensure_writable_dir(output_dir)
    if process_rank() > 0:
        _share_the_work(job, output_dir)
        return output_dir / REPORT
    options = {k: v for k, v in job.options().items() if k not in OPERATIONAL}
    run_stages(
        STAGES, job, output_dir, RUN_FILE, options, RunConfig.with_defaults().options(), progress=progress, label="run"
    )
    return output_dir / REPORT


def _share_the_work(job: RunConfig, output_dir: Path) -> None:
    """A launched process other than the main one: the shared stages not done before, silently. It reads the
    stages done as the main process does when all start, so all of them skip or run the same stages."""
    done = stages_done(output_dir / RUN_FILE)
    for name in SHARED_STAGES:
        if name not in done:
            STAGES[name](job, output_dir, False)
