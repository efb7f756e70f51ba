"""Share of a search trial's wall time spent outside the training steps (setup, sampling, metrics, I/O).

    python benchmarks/trial_overhead.py [--n_trials 2] [--output_dir DIR] [any other `memcontrol search` flag]

Runs a real, small `memcontrol search` (the built-in data and the CPU preset, ``--baselines`` off
unless given) in this process. The headline comes from what every trial already records in its
trial.json: ``seconds`` (the whole trial: fresh U-Net copy, method setup, training, sampling,
metrics, sample grid, writing) and ``train.seconds`` (the optimisation steps alone). To say where the
rest goes, the script wraps the functions a trial calls with timers (the code is not changed): the
engine call (its part outside the steps is the method's setup: adaptation, SV-DIFF's SVD, optimizer,
accelerate), the FID samples, d_mem, the sample grid. The search's one-time setup (model, cached
latents, real FID features) is printed apart, as its share when spread over the trials run here.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import memcontrol.search.inner_loop as inner_loop  # noqa: E402
import memcontrol.search.objectives as objectives  # noqa: E402
from memcontrol.cli import main as memcontrol_main  # noqa: E402

GOAL = 0.15
current: collections.Counter = collections.Counter()  # seconds per phase of the trial under way
trials: list[collections.Counter] = []
setup_seconds: list[float] = []


def timed(phase: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            current[phase] += time.perf_counter() - start

    return wrapper


def instrument() -> None:
    inner_loop.fine_tune = timed("engine call", inner_loop.fine_tune)
    inner_loop.merge_for_sampling = timed("merge for sampling", inner_loop.merge_for_sampling)
    inner_loop.sample_grid = timed("sample grid", inner_loop.sample_grid)
    objectives.score_samples = timed("FID samples + features", objectives.score_samples)
    objectives.fid = timed("FID statistic", objectives.fid)
    objectives.dmem_metrics = timed("d_mem", objectives.dmem_metrics)
    init, call = inner_loop.InnerLoop.__init__, inner_loop.InnerLoop.__call__

    def timed_init(self, *args, **kwargs):
        start = time.perf_counter()
        init(self, *args, **kwargs)
        setup_seconds.append(time.perf_counter() - start)

    def timed_call(self, *args, **kwargs):
        current.clear()
        record = call(self, *args, **kwargs)
        trials.append(collections.Counter(current))
        return record

    inner_loop.InnerLoop.__init__, inner_loop.InnerLoop.__call__ = timed_init, timed_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_trials", type=int, default=2)
    parser.add_argument("--output_dir", default=None, help="default: a temporary folder, removed afterwards")
    args, search_flags = parser.parse_known_args()
    if not any(flag.startswith("--baselines") for flag in search_flags):
        search_flags.append("--baselines=")
    instrument()
    with tempfile.TemporaryDirectory() as scratch:
        output_dir = Path(args.output_dir or scratch)
        argv = ["search", "--output_dir", str(output_dir), "--n_trials", str(args.n_trials), *search_flags]
        print("memcontrol " + " ".join(argv))
        start = time.perf_counter()
        status = memcontrol_main(argv)
        wall = time.perf_counter() - start
        if status:
            raise SystemExit(f"memcontrol search failed with status {status}")
        records = [json.loads(p.read_text()) for p in sorted((output_dir / "trials").glob("*/*/trial.json"))]
    if len(records) != len(trials):
        raise SystemExit(
            f"{len(records)} trial records but {len(trials)} timed trials (an existing study in --output_dir?)"
        )
    total_trial = total_train = 0.0
    for record, phases in zip(records, trials):
        seconds, train = record["seconds"], record["train"]["seconds"] if "train" in record else 0.0
        total_trial, total_train = total_trial + seconds, total_train + train
        rows = {
            "training steps": train,
            "method setup (adapt, SVD, optimizer, accelerate)": phases["engine call"] - train,
            **{k: v for k, v in phases.items() if k != "engine call"},
        }
        rows["other (U-Net copy, trial.json, ...)"] = seconds - sum(rows.values())
        print(
            f"trial {record['number']} ({record['method']} {record['mask']}, {record['state']}): {seconds:.1f} s, "
            f"outside training {100 * (1 - train / seconds):.1f}%"
        )
        for name, value in rows.items():
            print(f"  {name:50s} {value:7.2f} s  {100 * value / seconds:5.1f}%")
    share = 1 - total_train / total_trial
    setup = sum(setup_seconds)
    print(
        f"search setup once per worker (model, cached latents, real FID features): {setup:.1f} s; "
        f"whole `memcontrol search` call {wall:.1f} s, of which training {100 * total_train / wall:.1f}% "
        f"(outside training {100 * (1 - total_train / wall):.1f}% with setup and results over {len(records)} trials)"
    )
    print(f"goal <= {100 * GOAL:.0f}% of trial wall time outside training: {'met' if share <= GOAL else 'NOT met'}")
    print(f"trial_time_outside_training: {100 * share:.1f}%")


if __name__ == "__main__":
    main()
