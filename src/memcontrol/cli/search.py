"""``memcontrol search``: stage 1, the mask search and the pick."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    from memcontrol.search import RunConfig

    command(
        "search",
        "stage 1: search PEFT masks for low memorization and high quality (Optuna), then pick one",
        _cmd_search,
        *RunConfig.classes(),
        output="search",
    )


def _cmd_search(args: argparse.Namespace) -> None:
    from memcontrol.search import RunConfig, run_search

    best = run_search(RunConfig.from_args(args), args.output_dir)
    print(
        json.dumps({k: best[k] for k in ("method", "mask", "learning_rate", "metrics", "trainable_fraction")}, indent=2)
    )
    print(f"trials.csv, pareto.json, best_mask.json, pareto.png and convergence.png written to {args.output_dir}")
