"""``memcontrol run``: MemControl end to end, stage by stage; a stage done is written once and skipped when run again.

    output_dir/
      run.json       the run's options and the stages done, with their times
      search/        stage 1 (`memcontrol search`): trials, Pareto front, best_mask.json, pareto.png, convergence.png
      model/         stage 2 (`memcontrol train`): the chosen mask fine-tuned on the full training split
      evaluation/    `memcontrol evaluate` of that model on the test split: metrics.json, extraction.png
      report.md      the tables and figures of all of it
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


from memcontrol.io import ensure_writable_dir
from memcontrol.metrics.run import run_evaluate
from memcontrol.pipeline.report import REPORT, write_report
from memcontrol.pipeline.stages import Stage, run_stages
from memcontrol.search.run import run_search
from memcontrol.search.run_config import OPERATIONAL, RunConfig
from memcontrol.search.results import BEST_MASK
from memcontrol.train.run import resumed, run_train

RUN_FILE = "run.json"
SEARCH_DIR, MODEL_DIR, EVALUATION_DIR = "search", "model", "evaluation"


def _search(job: RunConfig, output_dir: Path, progress: bool) -> None:
    """search masks on the proxy training set and pick one on the Pareto front"""
    run_search(job, output_dir / SEARCH_DIR, progress=progress)


def _train(job: RunConfig, output_dir: Path, progress: bool) -> None:
    """fine-tune with the chosen mask on the full training split"""
    best = json.loads((output_dir / SEARCH_DIR / BEST_MASK).read_text())
    train = dataclasses.replace(
        job.train, method=best["method"], mask=best["mask"], learning_rate=best["learning_rate"],
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
    "search": _search, "train": _train, "evaluate": _evaluate, "report": _report,
}


def run_pipeline(job: RunConfig, output_dir: str | Path, *, progress: bool = True) -> Path:
    """Run the stages not done yet in ``output_dir``; return the report's path."""
    output_dir = ensure_writable_dir(output_dir)
    options = {k: v for k, v in job.options().items() if k not in OPERATIONAL}
    run_stages(STAGES, job, output_dir, RUN_FILE, options, RunConfig.with_defaults().options(), progress=progress, label="run")
    return output_dir / REPORT
