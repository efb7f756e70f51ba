r"""Every mask of one search space trained stand-alone once and evaluated: a tabular benchmark (as NAS-Bench-101/201
did for architectures), so that search strategies can be replayed by look-up (benchmarks/search_quality.py).

The table of issue 14 (benchmarks/data/mask_table.csv) is made on the shipped built-in base with the `cpu` preset's
method, attention tuning, at 2.5e-4: of the rates swept on the validation split (docs/benchmark/lr-sweep.md) the one
where memorization shows, so that masks differ in what the search is to trade off (every site on regenerated 8 of 10
D_mem images at 1,000 steps in the sweep, 5 in the table; at the preset's 1e-4 it regenerates none in three seeds, and
neither at 2.5e-4 for 500 steps: FID 24.2, d_mem 1.18, 0 regenerated). Hence 1,000 stand-alone steps, stage 2's
length. Trials: the preset's 200 steps. Measured over the table's 128 masks: 4.9 minutes of one thread per mask
(2 workers on 2 cores: 4.3 min training, 0.6 evaluation), so ~6 hours for the 144 rows; stop it at any time, run the
same command again to go on, and commit the CSV (and its .json) as it grows:

    OMP_NUM_THREADS=1 python benchmarks/mask_table.py --seeds 0,1 --repeat_masks 16 --workers 2

It runs the project's own commands, in three phases (``--phases``), each resumable:
- standalone: per mask and seed, `memcontrol train --method M --layout L --mask BITS --max_train_steps STEPS
  --learning_rate LR --seed S`, then `memcontrol evaluate --eval_split validation` (d_mem on D_mem's prompts, FID,
  AMD and alignment on validation prompts, the extraction attack), in ``--workers`` subprocesses of one thread each.
  Every mask runs with the first seed; a fixed seeded subset of ``--repeat_masks`` masks with each further seed. A
  row is added to the CSV (rewritten atomically) as soon as its mask is done, a rerun skips the rows present, and a
  failed mask is reported (its log in WORK/standalone/MASK-sSEED/failure.txt) while the others go on.
- trials: what a search observes. Every mask without trial values in the table is enqueued (``study.enqueue_trial``)
  into the study of a `memcontrol search`, so that ``--workers`` ordinary search workers on that study (SQLite in
  WORK/trials, `memcontrol search`'s own settings and `cpu` preset, ``--trial_steps`` steps) train each mask once as
  a trial; joined every minute as trial_dmem_mean, trial_fid and trial_seconds (a first-seed row with empty
  stand-alone columns for a mask not trained yet), so that a lost work folder costs only the running trials. (The
  project has no brute-force sampler, and a sampler would not promise every mask once with several workers; enqueued
  trials need no change to the search.)
- oneshot: `memcontrol search --strategy oneshot --oneshot_masks 2**SITES`, which scores every mask from one
  weight-sharing supernet of ``--trial_steps`` steps (WORK/oneshot/oneshot/scores.json); joined as
  oneshot_dmem_mean and oneshot_fid. ``--supernets K`` trains K supernets (``--search_seed`` 0 to K-1: each draws
  other masks at its steps), so that a replay of the one-shot strategy has a spread; every supernet's scores go to
  TABLE_supernets.csv (supernet_seed, mask, the objectives), the first one's also into the table.

The phases may also run at once as separate processes (one ``--phases`` each, one worker each on 2 cores): the CSV
is reread and rewritten under a file lock (CSV.lock) at every change, so none drops the others' values.

The table's setup (model, method, sites, rate, lengths, flags, commands) is written beside it (same name, .json);
a rerun under another setup is refused, as its rows would not be comparable.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import optuna  # noqa: E402
from filelock import FileLock  # noqa: E402

from memcontrol.benchmark.table import regenerated  # noqa: E402
from memcontrol.config import SearchConfig, changed_option  # noqa: E402
from memcontrol.errors import UserError  # noqa: E402
from memcontrol.io import write_json, write_text  # noqa: E402
from memcontrol.search.objectives import get_objectives  # noqa: E402
from memcontrol.search.oneshot import ONESHOT_DIR, SCORES_JSON  # noqa: E402
from memcontrol.search.outer_loop import is_finished, open_storage  # noqa: E402

OBJECTIVES = tuple(SearchConfig().objectives)  # the search's default ones, measured by evaluate and every trial
EVALUATION = ("dmem_mean", "dmem_max", "fid", "alignment", "amd", "regenerated", "extracted")
COLUMNS = (
    "mask",  # the bits as text: read it as a string (a spreadsheet would drop its leading zeros)
    "method",
    "layout",
    "learning_rate",
    "seed",
    "steps",
    *EVALUATION,
    "trainable_fraction",  # parameters trained / U-Net parameters, from train's manifest
    "train_seconds",  # wall time of `memcontrol train` (loading, caching, steps, sample grid)
    "evaluate_seconds",  # wall time of `memcontrol evaluate`
    *(f"trial_{name}" for name in OBJECTIVES),
    "trial_seconds",  # one trial as the search records it (training and measuring, the model already loaded)
    *(f"oneshot_{name}" for name in OBJECTIVES),
)
PER_MASK = ("trial_", "oneshot_")  # columns of a mask, whatever the seed
STUDY_NAME = "mask-table"
UNFINISHED = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
JOIN_SECONDS = 60  # how often finished trials are joined into the table while the workers run
REPEAT_ORDER_SEED = 0  # fixes which masks get the further seeds: the first K of one seeded shuffle, whatever K
MEMCONTROL = [sys.executable, "-m", "memcontrol.cli"]
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("benchmarks/data/mask_table.csv"), help="the table (CSV)")
    parser.add_argument(
        "--work_dir", type=Path, default=None, help="models, evaluations, studies and logs; default: outputs/NAME"
    )
    parser.add_argument("--pretrained_model_name_or_path", default=None, help="base model; default: the built-in")
    parser.add_argument("--method", default="attention")
    parser.add_argument("--layout", default="blocks")
    parser.add_argument("--learning_rate", type=float, default=2.5e-4, help="fixed for every mask (and every trial)")
    parser.add_argument("--steps", type=int, default=1000, help="stand-alone training steps of each mask")
    parser.add_argument("--seeds", default="0,1", help="first: every mask; each further one: the --repeat_masks")
    parser.add_argument("--repeat_masks", type=int, default=16, help="masks also trained with each further seed")
    parser.add_argument("--workers", type=int, default=2, help="one-thread processes at a time")
    parser.add_argument(
        "--limit", type=int, default=None, help="train at most this many more masks x seeds now (grow it in parts)"
    )
    parser.add_argument(
        "--train_flags",
        default="",
        help="more `memcontrol train` flags (default: none, train's own warm-up as the search's trials have it)",
    )
    parser.add_argument(
        "--evaluate_flags",
        default="--fid_samples 64 --extraction_samples 8",
        help="more `memcontrol evaluate` flags (default: the `cpu` preset's evaluation sizes)",
    )
    parser.add_argument("--trial_steps", type=int, default=200, help="trial and supernet steps (trials, oneshot)")
    parser.add_argument("--search_flags", default="", help="more `memcontrol search` flags (trials, oneshot)")
    parser.add_argument("--supernets", type=int, default=4, help="oneshot: supernets trained, one per search seed")
    parser.add_argument("--phases", default="standalone,trials,oneshot", help="comma-separated, in this order")
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.phases = [p for p in args.phases.split(",") if p.strip()]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        raise UserError(f"--phases: expected some of {', '.join(PHASES)}, got {sorted(unknown)[0]!r}")
    if not args.seeds or args.workers < 1 or args.steps < 1 or args.trial_steps < 1 or args.repeat_masks < 0:
        raise UserError("--seeds, --workers, --steps, --trial_steps: expected at least one; --repeat_masks >= 0")
    if args.supernets < 1:
        raise UserError("--supernets: expected at least one")
    args.work_dir = args.work_dir or Path("outputs") / args.output.stem
    return args


def memcontrol(command: str, flags: list[str], log: Path) -> float:
    """Run `memcontrol COMMAND FLAGS` on one thread, its output to ``log``; its wall seconds. UserError if it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run(
            [*MEMCONTROL, command, *flags], env={**os.environ, **ONE_THREAD}, stdout=out, stderr=subprocess.STDOUT
        )
    if done.returncode:
        lines = log.read_text(errors="replace").strip().splitlines()
        raise UserError(f"memcontrol {command} exited with {done.returncode}: {lines[-1] if lines else ''} ({log})")
    return round(time.perf_counter() - start, 1)


def model_flags(args: argparse.Namespace) -> list[str]:
    path = args.pretrained_model_name_or_path
    return [
        "--method",
        args.method,
        "--layout",
        args.layout,
        *(["--pretrained_model_name_or_path", path] if path else []),
    ]


def site_names(args: argparse.Namespace) -> list[str]:
    """The method's mask sites, as `memcontrol sites` finds them (the search's parameter names)."""
    done = subprocess.run([*MEMCONTROL, "sites", *model_flags(args), "--json"], capture_output=True, text=True)
    if done.returncode:
        raise UserError(f"memcontrol sites: {(done.stderr.strip().splitlines() or [''])[-1]}")
    return [site["site"] for site in json.loads(done.stdout)["sites"]]


def check_setup(args: argparse.Namespace, sites: list[str]) -> None:
    """Record the table's setup beside it, or refuse one that differs from the recorded."""
    setup = {
        "pretrained_model_name_or_path": args.pretrained_model_name_or_path,
        "method": args.method,
        "layout": args.layout,
        "sites": sites,
        "learning_rate": args.learning_rate,
        "steps": args.steps,
        "train_flags": args.train_flags,
        "evaluate_flags": args.evaluate_flags,
        "trial_steps": args.trial_steps,
        "search_flags": args.search_flags,
    }
    path = args.output.with_suffix(".json")
    if path.is_file():
        recorded = json.loads(path.read_text())
        key = changed_option(recorded["setup"], setup, {})
        if key is not None:
            raise UserError(
                f"{args.output}: was made with {key}={recorded['setup'].get(key)!r}, not {setup.get(key)!r}; give "
                "another --output"
            )
    else:
        recorded = {"setup": setup}
    recorded["commands"] = {**recorded.get("commands", {}), **commands(args, sites)}
    write_json(path, recorded)


PART_FLAGS = ("--work_dir", "--phases", "--limit")


def commands(args: argparse.Namespace, sites: list[str]) -> dict:
    """What each phase runs, for the record (MASK, SEED: per mask; K: per supernet; the work folder's paths
    relative)."""
    return {
        "table": "OMP_NUM_THREADS=1 python benchmarks/mask_table.py " + shlex.join(table_flags(sys.argv[1:])),
        "standalone": shlex.join(["memcontrol", "train", *train_flags(args, "MASK", "SEED", Path("MODEL"))])
        + " && "
        + shlex.join(["memcontrol", "evaluate", *evaluate_flags(args, Path("MODEL"), Path("EVALUATION"))]),
        "trials": shlex.join(["memcontrol", "search", *trial_flags(args, 2 ** len(sites), Path("trials"))]),
        "oneshot": shlex.join(["memcontrol", "search", *oneshot_flags(args, 2 ** len(sites), Path("oneshot"), "K")]),
    }


def table_flags(argv: list[str]) -> list[str]:
    """The command line without the flags that say how one part of the table was made (--work_dir, --phases,
    --limit), so that the record reads as the command that makes the whole table on any machine."""
    kept, skip_value = [], False
    for arg in argv:
        if skip_value:
            skip_value = False
        elif arg.split("=", 1)[0] in PART_FLAGS:
            skip_value = "=" not in arg
        else:
            kept.append(arg)
    return kept


class Table:
    """The CSV's rows by (mask, seed). Every change rereads it and rewrites it atomically under a file lock, so that
    phases run as separate processes (stand-alone training beside the trials) keep each other's rows."""

    def __init__(self, path: Path, template: dict):
        self.path, self.template = path, template  # template: the columns of a first-seed row made by a join
        self.lock = FileLock(f"{path}.lock")
        self.rows: dict[tuple[str, int], dict] = {}
        self._read()

    def trained(self, mask: str, seed: int) -> bool:
        return bool(self.rows.get((mask, seed), {}).get("steps"))

    def has(self, mask: str, prefix: str) -> bool:
        """Whether the mask's rows hold the columns of one phase (``prefix``: trial_, oneshot_)."""
        return any(row.get(f"{prefix}{OBJECTIVES[0]}") for (m, _), row in self.rows.items() if m == mask)

    def add(self, row: dict) -> None:
        """Set a stand-alone row, keeping its mask's trial and one-shot columns (joined before it was trained)."""
        with self.lock:
            self._read()
            joined = {
                key: value
                for (mask, _), other in self.rows.items()
                if mask == row["mask"]
                for key, value in other.items()
                if key.startswith(PER_MASK) and value
            }
            self.rows[(row["mask"], int(row["seed"]))] = {**joined, **row}
            self._write()

    def join(self, values: dict[str, dict]) -> int:
        """Set the columns of ``values[mask]`` in every row of that mask (a first-seed row without stand-alone values
        when it has none yet); how many rows got them."""
        with self.lock:
            self._read()
            for mask in values:
                if not any(m == mask for m, _ in self.rows):
                    self.rows[(mask, int(self.template["seed"]))] = {**self.template, "mask": mask}
            joined = [row.update(values[mask]) for (mask, _), row in self.rows.items() if mask in values]
            self._write()
            return len(joined)

    def _read(self) -> None:
        if self.path.is_file():
            rows = csv.DictReader(io.StringIO(self.path.read_text()))
            self.rows = {(row["mask"], int(row["seed"])): row for row in rows}

    def _write(self) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for key in sorted(self.rows):
            writer.writerow(self.rows[key])
        write_text(self.path, text.getvalue())


def all_masks(n_sites: int) -> list[str]:
    return ["".join(bits) for bits in itertools.product("01", repeat=n_sites)]


def jobs(n_sites: int, seeds: list[int], repeat_masks: int) -> list[tuple[str, int]]:
    """(mask, seed) to run: every mask with the first seed, then the first ``repeat_masks`` of a fixed shuffle with
    each further seed. Masks go in that shuffled order, so that a table stopped half-way holds a random sample."""
    order = all_masks(n_sites)
    random.Random(REPEAT_ORDER_SEED).shuffle(order)
    return [(mask, seeds[0]) for mask in order] + [(m, s) for s in seeds[1:] for m in order[:repeat_masks]]


def train_flags(args: argparse.Namespace, mask: str, seed, model_dir: Path) -> list[str]:
    return [
        *model_flags(args),
        "--mask",
        mask,
        "--max_train_steps",
        str(args.steps),
        "--learning_rate",
        str(args.learning_rate),
        "--seed",
        str(seed),
        *shlex.split(args.train_flags),
        "--output_dir",
        str(model_dir),
    ]


def evaluate_flags(args: argparse.Namespace, model_dir: Path, output_dir: Path) -> list[str]:
    return [
        "--model_dir",
        str(model_dir),
        "--eval_split",
        "validation",
        *shlex.split(args.evaluate_flags),
        "--output_dir",
        str(output_dir),
    ]


def run_mask(args: argparse.Namespace, mask: str, seed: int) -> dict:
    """Train and evaluate one mask (a training finished before is kept); its row."""
    folder = args.work_dir / "standalone" / f"{mask}-s{seed}"
    model, evaluation, trained = folder / "model", folder / "evaluation", folder / "train.json"
    if not trained.is_file():
        shutil.rmtree(model, ignore_errors=True)  # an interrupted training's leftovers
        seconds = memcontrol("train", train_flags(args, mask, seed, model), folder / "train.log")
        write_json(trained, {"seconds": seconds})
    train_seconds = json.loads(trained.read_text())["seconds"]
    evaluate_seconds = memcontrol("evaluate", evaluate_flags(args, model, evaluation), folder / "evaluate.log")
    manifest = json.loads((model / "manifest.json").read_text())
    metrics = json.loads((evaluation / "metrics.json").read_text())
    if manifest["mask"] != mask or metrics["settings"]["eval_split"] != "validation":
        raise UserError(f"{folder}: trained mask {manifest['mask']} or split {metrics['settings']['eval_split']}")
    result = manifest["result"]
    return {
        "mask": mask,
        "method": manifest["method"],
        "layout": args.layout,
        "learning_rate": args.learning_rate,
        "seed": seed,
        "steps": result["steps"],
        **{key: metrics.get(key) for key in EVALUATION},
        "regenerated": regenerated(metrics),
        "trainable_fraction": result["trainable_fraction"],
        "train_seconds": train_seconds,
        "evaluate_seconds": evaluate_seconds,
    }


def run_standalone(args: argparse.Namespace, table: Table, sites: list[str]) -> list[str]:
    """Every (mask, seed) not in the table (at most ``--limit``), ``--workers`` at a time; the failures."""
    every = jobs(len(sites), args.seeds, args.repeat_masks)
    todo = [job for job in every if not table.trained(*job)]
    print(f"standalone: {len(todo)} masks x seeds of {len(every)} to train and evaluate", flush=True)
    todo = todo[: args.limit]
    failures, count = [], itertools.count(1)

    def one(job: tuple[str, int]) -> None:
        mask, seed = job
        folder = args.work_dir / "standalone" / f"{mask}-s{seed}"
        try:
            row = run_mask(args, mask, seed)
        except Exception as e:  # this mask's failure: report it, let the others go on
            write_text(folder / "failure.txt", f"{type(e).__name__}: {e}\n")
            failures.append(f"{mask} seed {seed}: {e}")
            print(f"[{next(count)}/{len(todo)}] {mask} seed {seed}: FAILED: {e}", flush=True)
            return
        (folder / "failure.txt").unlink(missing_ok=True)
        table.add(row)
        print(
            f"[{next(count)}/{len(todo)}] {mask} seed {seed}: d_mem {row['dmem_mean']}, FID {row['fid']} "
            f"(train {row['train_seconds']} s, evaluate {row['evaluate_seconds']} s)",
            flush=True,
        )

    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(one, todo))
    return failures


def search_flags(args: argparse.Namespace, n_masks: int, output_dir: Path) -> list[str]:
    """`memcontrol search` as the table's trials need it: its settings, one fixed learning rate, no baselines."""
    return [
        *model_flags(args),
        "--no-search_learning_rate",
        "--learning_rate",
        str(args.learning_rate),
        "--trial_train_steps",
        str(args.trial_steps),
        "--n_trials",
        str(n_masks),
        "--baselines",
        "",
        "--study_name",
        STUDY_NAME,
        "--heartbeat_interval",
        "10",  # a worker waiting for the others' last trials polls every 10 s, not every minute
        *shlex.split(args.search_flags),
        "--output_dir",
        str(output_dir),
    ]


def trial_flags(args: argparse.Namespace, n_masks: int, output_dir: Path) -> list[str]:
    return [*search_flags(args, n_masks, output_dir), "--sampler", "random"]  # every mask is enqueued: no modelling


def oneshot_flags(args: argparse.Namespace, n_masks: int, output_dir: Path, seed: int | str = 0) -> list[str]:
    return [
        *search_flags(args, n_masks, output_dir),
        *("--strategy", "oneshot", "--oneshot_masks", str(n_masks), "--search_seed", str(seed)),
    ]


def open_trial_study(folder: Path, method: str) -> optuna.Study:
    """The study `memcontrol search` opens in ``folder`` (its default storage there, named STUDY_NAME-METHOD as it
    names them)."""
    folder.mkdir(parents=True, exist_ok=True)
    return optuna.create_study(
        storage=open_storage(SearchConfig(), folder),
        study_name=f"{STUDY_NAME}-{method}",
        directions=[o.direction for o in get_objectives(OBJECTIVES)],
        load_if_exists=True,
    )


def run_trials_phase(args: argparse.Namespace, table: Table, sites: list[str]) -> list[str]:
    """Enqueue every mask without trial values in the table into the search's study, run ``--workers`` search workers
    on it, and join their objectives into the table as they finish: the table is the record, so a work folder lost
    in between costs only the trials that were running."""
    folder, masks = args.work_dir / "trials", all_masks(len(sites))
    study = open_trial_study(folder, args.method)
    failed = join_trials(study, table)  # what the study kept from an earlier run
    todo = [mask for mask in masks if not table.has(mask, "trial_")]
    print(f"trials: {len(masks) - len(todo)} of {len(masks)} masks tried as {args.trial_steps}-step trials", flush=True)
    if not todo:
        return failed
    for mask in todo:
        study.enqueue_trial({site: int(bit) for site, bit in zip(sites, mask)}, skip_if_exists=True)
    # The study ends when every trial it holds is finished: the earlier finished ones and the masks queued now.
    n_trials = sum(is_finished(t) or t.state in UNFINISHED for t in study.get_trials(deepcopy=False))
    flags = trial_flags(args, n_trials, folder)
    with ThreadPoolExecutor(args.workers) as pool:
        runs = [
            pool.submit(memcontrol, "search", flags, args.work_dir / "logs" / f"trials-worker-{k}.log")
            for k in range(args.workers)
        ]
        while wait(runs, timeout=JOIN_SECONDS).not_done:
            join_trials(study, table)
    return [str(run.exception()) for run in runs if run.exception()] + join_trials(study, table)


def join_trials(study: optuna.Study, table: Table) -> list[str]:
    """Join the study's completed trials into the table; its failed trials."""
    values, failed = {}, []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        if trial.state == optuna.trial.TrialState.COMPLETE:
            values[attrs["mask"]] = {
                **{f"trial_{name}": attrs["metrics"][name] for name in OBJECTIVES},
                "trial_seconds": attrs["seconds"],
            }
        elif is_finished(trial):
            failed.append(f"trial of {attrs.get('mask')}: {attrs.get('fail_reason')}")
    if values:
        print(f"trials: joined {len(values)} masks' trial objectives into {table.join(values)} rows", flush=True)
    return failed


def supernets_path(table: Path) -> Path:
    return table.with_name(f"{table.stem}_supernets.csv")


def run_oneshot_phase(args: argparse.Namespace, table: Table, sites: list[str]) -> list[str]:
    """Score every mask from each of ``--supernets`` supernets with `memcontrol search --strategy oneshot`; join the
    first one's scores into the table, write all of them to TABLE_supernets.csv."""
    n_masks, records, failed = 2 ** len(sites), {}, []
    for seed in range(args.supernets):
        folder = args.work_dir / ("oneshot" if seed == 0 else f"oneshot-s{seed}")
        scores = folder / ONESHOT_DIR / SCORES_JSON
        if not scores.is_file():
            print(f"oneshot: training supernet {seed} and scoring {n_masks} masks", flush=True)
            try:
                memcontrol("search", oneshot_flags(args, n_masks, folder, seed), args.work_dir / "logs" / "oneshot.log")
            except UserError as e:
                if not scores.is_file():  # the scores come before the confirmations, which may fail on their own
                    failed.append(str(e))
                    continue
        records[seed] = json.loads(scores.read_text())
    write_supernets(supernets_path(args.output), records)
    if 0 in records:
        values = {
            mask: {f"oneshot_{name}": value.get(name) for name in OBJECTIVES}
            for mask, value in records[0]["scores"].items()
        }
        print(f"oneshot: joined {len(values)} masks' one-shot scores into {table.join(values)} rows", flush=True)
    setup = args.output.with_suffix(".json")
    compute = {seed: {phase: record[phase] for phase in ("supernet", "scoring")} for seed, record in records.items()}
    write_json(setup, {**json.loads(setup.read_text()), "oneshot_compute": compute})
    return failed


def write_supernets(path: Path, records: dict[int, dict]) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["supernet_seed", "mask", *(f"oneshot_{name}" for name in OBJECTIVES)])
    for seed, record in sorted(records.items()):
        for mask, value in sorted(record["scores"].items()):
            writer.writerow([seed, mask, *(value.get(name) for name in OBJECTIVES)])
    write_text(path, text.getvalue())


PHASES = {"standalone": run_standalone, "trials": run_trials_phase, "oneshot": run_oneshot_phase}


def main(argv: list[str] | None = None) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # the search's storage options
    try:
        args = parse_args(argv)
        sites = site_names(args)
        check_setup(args, sites)
        template = {"method": args.method, "layout": args.layout, "learning_rate": args.learning_rate}
        table, failures = Table(args.output, {**template, "seed": args.seeds[0]}), []
        for phase in args.phases:
            failures += PHASES[phase](args, table, sites)
    except UserError as e:
        print(f"mask_table: {e}", file=sys.stderr)
        return 2
    print(f"{args.output}: {len(table.rows)} rows ({len(all_masks(len(sites)))} masks)")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
