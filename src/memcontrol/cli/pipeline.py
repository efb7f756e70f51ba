"""``memcontrol run``: the whole MemControl pipeline."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    from memcontrol.search import RunConfig

    command(
        "run",
        "the whole MemControl pipeline: search -> pick -> fine-tune with the mask -> evaluate -> report.md",
        _cmd_run,
        *RunConfig.classes(),
        output="run",
    )


def _cmd_run(args: argparse.Namespace) -> None:
    from memcontrol.pipeline import run_pipeline
    from memcontrol.runtime import process_rank
    from memcontrol.search import RunConfig

    report = run_pipeline(RunConfig.from_args(args), args.output_dir)
    if process_rank() == 0:  # under accelerate launch: one line, from the process that wrote the report
        print(f"report written to {report}")
