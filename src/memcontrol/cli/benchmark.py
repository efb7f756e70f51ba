"""``memcontrol benchmark``: methods x mitigations x seeds on one dataset."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    from memcontrol.benchmark import BenchmarkRunConfig

    command(
        "benchmark",
        "methods x mitigations x seeds on one dataset: each trained and evaluated, as tables and figures",
        _cmd_benchmark,
        *BenchmarkRunConfig.classes(),
        output="benchmark",
    )


def _cmd_benchmark(args: argparse.Namespace) -> None:
    from memcontrol.benchmark import BenchmarkRunConfig, run_benchmark

    table = run_benchmark(BenchmarkRunConfig.from_args(args), args.output_dir)
    print(table.read_text())
    print(
        "table.md, table.csv, cells.csv, tradeoff.png/csv and the closest-generation figures written to "
        f"{args.output_dir}"
    )
