"""Search trials per hour with one worker against two worker processes sharing one study, the cores split between them.

    python benchmarks/parallel_search.py [--n_trials 4] [--cores 2] [--output_dir DIR]
        [any other `memcontrol search` flag]

Runs `memcontrol search` on the built-in data and the CPU preset made smaller (unless given:
``--trial_train_steps 30 --trial_fid_samples 16``, ``--baselines`` off) on a new study each time: one worker with
``OMP_NUM_THREADS=cores``, then ``cores`` workers with
``OMP_NUM_THREADS=1`` each, started together on one SQLite ``--storage``, each with its own
``--output_dir``; then, for reference, one worker on one thread (what a thread more gives one
worker, against what a worker more gives). ``--n_trials`` is the study's total, whoever runs it.
``--heartbeat_interval 5`` (a setting that changes no result) keeps a worker that waits for the
other's last trial from sleeping a minute. Two rates are printed: end to end (the study's finished trials over the wall
time from starting the workers to the last one exiting: process start, model loading, caching, results
and waiting included) and in steady state (over the span from the first trial's start to the last
trial's end, from the study's own timestamps).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import optuna  # noqa: E402

from memcontrol.search.outer_loop import is_finished  # noqa: E402

# Unless given: smaller trials than the CPU preset's, no baselines, and a short wait between polls.
SMALL = {"--trial_train_steps": "30", "--trial_fid_samples": "16", "--baselines": "", "--heartbeat_interval": "5"}
LAUNCH = "import sys; from memcontrol.cli import main; sys.exit(main())"  # `memcontrol` with this interpreter


def run_workers(workers: int, threads: int, folder: Path, n_trials: int, flags: list[str]) -> dict:
    folder.mkdir(parents=True)
    storage = f"sqlite:///{(folder / 'study.db').resolve()}"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    commands = [
        [
            "search",
            "--storage",
            storage,
            "--output_dir",
            str(folder / f"worker-{k}"),
            "--n_trials",
            str(n_trials),
            *flags,
        ]
        for k in range(workers)
    ]
    print(f"{workers} worker(s), OMP_NUM_THREADS={threads} each:")
    for command in commands:
        print(f"  OMP_NUM_THREADS={threads} memcontrol {' '.join(command)}")
    start = time.perf_counter()
    processes = []
    for k, command in enumerate(commands):
        log = open(folder / f"worker-{k}.log", "w")
        processes.append(
            (
                subprocess.Popen(
                    [sys.executable, "-c", LAUNCH, *command], env=env, stdout=log, stderr=subprocess.STDOUT
                ),
                log,
            )
        )
    for process, log in processes:
        process.wait()
        log.close()
    wall = time.perf_counter() - start
    failed = [k for k, (process, _) in enumerate(processes) if process.returncode]
    if failed:
        raise SystemExit(f"worker {failed[0]} failed: see {folder / f'worker-{failed[0]}.log'}")
    trials = [
        t
        for name in optuna.get_all_study_names(storage)
        for t in optuna.load_study(study_name=name, storage=storage).trials
    ]
    done = [t for t in trials if is_finished(t)]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    by_worker = {}
    for t in done:
        by_worker[t.user_attrs.get("worker")] = by_worker.get(t.user_attrs.get("worker"), 0) + 1
    result = {
        "trials": len(done),
        "wall": wall,
        "span": span,
        "per_hour": 3600 * len(done) / wall,
        "steady_per_hour": 3600 * len(done) / span,
    }
    print(
        f"  {len(done)} finished trials ({', '.join(str(n) for n in by_worker.values())} by worker); wall {wall:.0f} s "
        f"-> {result['per_hour']:.1f} trials/h; first trial start to last trial end {span:.0f} s -> "
        f"{result['steady_per_hour']:.1f} trials/h"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n_trials",
        type=int,
        default=4,
        help="finished trials the study is to hold (even: no worker idles at the end)",
    )
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--output_dir", default=None, help="default: a temporary folder, removed afterwards")
    args, flags = parser.parse_known_args()
    for flag, value in SMALL.items():
        if not any(given.startswith(flag) for given in flags):
            flags += [f"{flag}={value}"]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.output_dir or scratch)
        one = run_workers(1, args.cores, root / "1-worker", args.n_trials, flags)
        many = run_workers(args.cores, 1, root / f"{args.cores}-workers", args.n_trials, flags)
        single = run_workers(1, 1, root / "1-worker-1-thread", args.n_trials, flags) if args.cores > 1 else one
    print(
        f"steady state: {many['steady_per_hour'] / one['steady_per_hour']:.2f}x the trials per hour with {args.cores} "
        "workers"
    )
    print(
        f"reference, 1 worker on 1 thread: {args.cores} threads give it {one['per_hour'] / single['per_hour']:.2f}x, "
        f"{args.cores} one-thread workers {many['per_hour'] / single['per_hour']:.2f}x (end to end)"
    )
    print(f"parallel_search_speedup_{args.cores}_workers: {many['per_hour'] / one['per_hour']:.2f}x")


if __name__ == "__main__":
    main()
