"""How close each search strategy gets to the true Pareto front of a mask space, replayed on a mask table without
training.

    python benchmarks/search_quality.py [--table benchmarks/data/mask_table.csv] [--seeds 50] [--budgets 8,16,32]
        [--strategies random,nsga2-50,nsga2-8,nsga2-4,tpe,gp,oneshot] [--observe trial] [--markdown FILE]

The table (made by benchmarks/mask_table.py) holds every mask of one space with its stand-alone objectives, the
"true" values, and its short-trial ones, what a search observes (``--observe standalone`` lets the search observe
the true values instead, to separate the sampler's loss from the short trials'; ``--observe capacity``: the short
trials' values with the trainable fraction, known before training, in place of d_mem, the paper's premise that
memorization grows with the capacity tuned). A sampler strategy runs as `memcontrol search` runs it: the project's
sampler (``make_sampler``, with ``--sampler``'s settings) behind the trial-seeded wrapper, its search space and
parameter names, its objective and outer loop (a proposal tried already is skipped, not counted, and an untried mask
queued in its stead), with a look-up in the table in place of training. The one-shot strategy ranks masks by their
one-shot scores (each supernet's, from TABLE_supernets.csv, else the table's oneshot_* columns), confirms masks of
the one-shot front as `--strategy oneshot` chooses them (its own ``masks_to_confirm``), and the search then observes
their trial values; its spread is over the supernets.

Per strategy and number of trials (for one-shot: masks confirmed), mean ± sd over the seeds:
- HV share: the found front (the Pareto front of what the search observed) taken at its masks' true values; its
  hypervolume as a share of the true front's. Objectives min-max normalised over every mask's true values,
  reference point 1.1 in each (that of memcontrol.search.pick, which the search's convergence.png uses; its exact
  hypervolume, so no other library is needed).
- on front: share of the seeds whose chosen mask (``--pick_rule`` over the observed values, as the search picks)
  lies on the true front.
- vs random: share of the replays whose HV share is above / below random search's replay of the same seed and budget
  (the same random start): whether a strategy beats random search search by search, not only on average.
- fewer: replays that found fewer masks than the budget (see below).
Then Spearman's rho between short-trial and stand-alone values per objective (and between two seeds over the masks
trained twice: the noise), and Kendall's tau between one-shot and stand-alone values where the table has one-shot
scores. The last line is the best strategy's mean HV share over random search's at 16 trials.

Replay n of every sampler strategy uses the same seed, so all draw the same random start (TPE and GP before their
--startup_trials, NSGA-II's first generation, random search): at 8 trials they are equal, by design, and their
differences later are not noise of the start. A replay finds fewer masks than its budget only where the space has
fewer, or where its sampler keeps proposing tried masks past the search's own limit ("fewer").
On the shipped 128-mask table, 50 seeds, one thread of the 2-core machine beside other jobs: 16 minutes, 90% of it GP
(7 on a synthetic table before, with fewer jobs beside it).
"""

from __future__ import annotations

import argparse
import csv
import gc
import io
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import numpy as np  # noqa: E402
import optuna  # noqa: E402
from scipy.stats import kendalltau, spearmanr  # noqa: E402

from memcontrol.config import SearchConfig  # noqa: E402
from memcontrol.errors import UserError  # noqa: E402
from memcontrol.io import write_text  # noqa: E402
from memcontrol.pipeline.report import markdown_table  # noqa: E402
from memcontrol.search.inner_loop import MaskObjective, TrialFailed  # noqa: E402
from memcontrol.search.objectives import Objective, get_objectives  # noqa: E402
from memcontrol.search.oneshot import masks_to_confirm  # noqa: E402
from memcontrol.search.outer_loop import (  # noqa: E402
    ONESHOT,
    SAMPLERS,
    STRATEGIES,
    TrialSeededSampler,
    make_sampler,
    run_trials,
)
from memcontrol.search.pick import REFERENCE, hypervolume, normalise, pareto_mask, pick  # noqa: E402
from memcontrol.search.space import SearchSpace  # noqa: E402

OBJECTIVES = tuple(SearchConfig().objectives)  # mask_table.py's: the search's default objectives
# Sampler strategies: `memcontrol search --sampler ...` settings. NSGA-II at the paper's population, at a small one
# and at the `cpu` preset's.
SAMPLER_STRATEGIES = {
    "random": ("random", {}),
    "nsga2-50": ("nsga2", {"population_size": 50}),
    "nsga2-8": ("nsga2", {"population_size": 8}),
    "nsga2-4": ("nsga2", {"population_size": 4}),
    "tpe": ("tpe", {}),
    "gp": ("gp", {}),
}
# Trial n of a search draws from seed + n (TrialSeededSampler), so replays seeded 0, 1, 2 ... would share all but one
# draw; the replays' seeds are this far apart (more than any replay's trials, duplicates included).
SEED_STRIDE = 100_000


@dataclass(frozen=True)
class MaskTable:
    """Every mask of one space: raw objective values by mask, and where the table has them the repeats' values."""

    method: str
    sites: tuple[str, ...]
    learning_rate: float
    objectives: tuple[Objective, ...]
    true: dict[str, np.ndarray]  # stand-alone, first seed
    trial: dict[str, np.ndarray] | None  # short trials
    capacity: dict[str, np.ndarray] | None  # short trials, with the trainable fraction as d_mem
    oneshots: tuple[dict[str, np.ndarray], ...]  # scored from each supernet (none where the table has no scores)
    repeats: tuple[tuple[np.ndarray, np.ndarray], ...]  # (first seed, another seed) of the masks trained twice

    @property
    def masks(self) -> list[str]:
        return sorted(self.true)

    def oriented(self, values: dict[str, np.ndarray], masks: Sequence[str]) -> np.ndarray:
        """Rows of ``values`` for ``masks``, each objective oriented so that lower is better."""
        return np.stack([values[m] for m in masks]) * np.array([o.sign for o in self.objectives])


def _numbers(row: dict, columns: Sequence[str]) -> np.ndarray | None:
    """The row's values of ``columns``, or None where one is missing or not finite."""
    try:
        values = np.array([float(row[c]) for c in columns])
    except (KeyError, TypeError, ValueError):
        return None
    return values if np.isfinite(values).all() else None


def load_table(path: Path) -> MaskTable:
    """The table at ``path`` and its setup (the .json beside it); every mask of the space must have a first-seed row."""
    setup_path = path.with_suffix(".json")
    if not path.is_file() or not setup_path.is_file():
        raise UserError(f"--table {path}: expected the CSV of benchmarks/mask_table.py and its {setup_path.name}")
    setup = json.loads(setup_path.read_text())["setup"]
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    seeds = [int(r["seed"]) for r in rows]
    first = max(sorted(set(seeds)), key=seeds.count) if seeds else 0  # the seed every mask was trained with
    by_seed: dict[int, dict[str, dict]] = {}
    for row in rows:
        by_seed.setdefault(int(row["seed"]), {})[row["mask"]] = row
    n_sites = len(setup["sites"])
    masks = [format(i, f"0{n_sites}b") for i in range(2**n_sites)]
    rows_of = by_seed.get(first, {})
    true = {m: _numbers(rows_of.get(m, {}), OBJECTIVES) for m in masks}
    missing = [m for m, v in true.items() if v is None]
    if missing:
        raise UserError(
            f"--table {path}: {len(missing)} of {len(masks)} masks lack stand-alone values at seed {first} "
            f"(e.g. {missing[0]}); complete it with benchmarks/mask_table.py"
        )

    def column(prefix: str) -> dict[str, np.ndarray] | None:
        values = {m: _numbers(rows_of[m], [f"{prefix}{name}" for name in OBJECTIVES]) for m in masks}
        return values if all(v is not None for v in values.values()) else None

    trial = column("trial_")
    in_table = column("oneshot_")
    oneshots = supernet_scores(path, masks) or ([in_table] if in_table is not None else [])
    memorization = OBJECTIVES.index("dmem_mean")
    fraction = {m: _numbers(rows_of[m], ["trainable_fraction"]) for m in masks}
    capacity = None
    if trial is not None and all(f is not None for f in fraction.values()):
        capacity = {
            m: np.where(np.arange(len(OBJECTIVES)) == memorization, fraction[m][0], v) for m, v in trial.items()
        }
    repeats = tuple(
        (true[m], values)
        for seed, other in sorted(by_seed.items())
        if seed != first
        for m, row in sorted(other.items())
        if (values := _numbers(row, OBJECTIVES)) is not None
    )
    return MaskTable(
        method=setup["method"],
        sites=tuple(setup["sites"]),
        learning_rate=float(setup["learning_rate"]),
        objectives=tuple(get_objectives(OBJECTIVES)),
        true=true,
        trial=trial,
        capacity=capacity,
        oneshots=tuple(oneshots),
        repeats=repeats,
    )


def supernet_scores(path: Path, masks: list[str]) -> list[dict[str, np.ndarray]]:
    """Every supernet's scores of every mask, from TABLE_supernets.csv (mask_table.py --supernets); supernets
    lacking a mask are left out."""
    scores_path = path.with_name(f"{path.stem}_supernets.csv")
    if not scores_path.is_file():
        return []
    by_seed: dict[str, dict[str, np.ndarray | None]] = {}
    for row in csv.DictReader(io.StringIO(scores_path.read_text())):
        by_seed.setdefault(row["supernet_seed"], {})[row["mask"]] = _numbers(row, [f"oneshot_{n}" for n in OBJECTIVES])
    return [
        {m: scores[m] for m in masks}
        for _, scores in sorted(by_seed.items(), key=lambda item: int(item[0]))
        if all(scores.get(m) is not None for m in masks)
    ]


class TableTrials:
    """The inner loop of a replay: a trial's objectives are looked up in the table, not trained."""

    def __init__(self, observed: dict[str, np.ndarray]):
        self.observed = observed

    def __call__(self, proposal, output_dir: Path, record: dict) -> dict:
        metrics = dict(zip(OBJECTIVES, map(float, self.observed[proposal.mask_text])))
        return {**record, "state": "complete", "metrics": metrics, "trainable_fraction": None, "seconds": 0.0}


class Judge:
    """What a found set of masks is worth, by the table's true values."""

    def __init__(self, table: MaskTable, observed: dict[str, np.ndarray], pick_rule: str):
        self.table, self.observed, self.pick_rule = table, observed, pick_rule
        self.all_true = table.oriented(table.true, table.masks)
        self.reference = np.full(len(table.objectives), REFERENCE)
        self.true_front = {table.masks[i] for i in np.flatnonzero(pareto_mask(self.all_true))}
        self.true_hv = self._hv(sorted(self.true_front))

    def _hv(self, masks: Sequence[str]) -> float:
        return hypervolume(normalise(self.table.oriented(self.table.true, masks), self.all_true), self.reference)

    def __call__(self, found: Sequence[str]) -> tuple[float, bool]:
        """HV share of the found front (by observed values) at its true values; whether the pick is on the true one."""
        observed = self.table.oriented(self.observed, found)
        front = [found[i] for i in np.flatnonzero(pareto_mask(observed))]
        return self._hv(front) / self.true_hv, found[pick(observed, self.pick_rule)] in self.true_front


def replay(cfg: SearchConfig, table: MaskTable, observed: dict, seed: int, n_trials: int, scratch: Path) -> list[str]:
    """The masks a `memcontrol search` with ``cfg`` would try, in order, up to ``n_trials`` (fewer where the space has
    fewer, which ends a real search with a warning, or where its sampler keeps proposing tried masks past the
    search's limit, which stops it with an error)."""
    space = SearchSpace({table.method: table.sites}, table.learning_rate)
    study = optuna.create_study(
        directions=[o.direction for o in table.objectives],
        sampler=TrialSeededSampler(partial(make_sampler, cfg), seed),
    )
    objective = MaskObjective(
        TableTrials(observed), space, table.objectives, n_trials=n_trials, trials_dir=scratch, replace_seed=seed
    )
    try:
        run_trials(study, objective, n_trials=n_trials, catch=(TrialFailed,), poll_seconds=0)
    except UserError:  # UserError: "the sampler keeps proposing what was tried already"
        pass
    return [t.user_attrs["mask"] for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]


@dataclass
class Result:
    strategy: str
    budget: int
    shares: list[float]  # one per replay seed (one-shot: per supernet)
    on_front: list[bool]
    short: int = 0  # replays with fewer masks than the budget: the sampler ran out, or the one-shot front is smaller
    seconds: float = 0.0  # CPU time of all the strategy's replays (each to the largest budget)

    def row(self, random: Result | None) -> list:
        sd = float(np.std(self.shares, ddof=1)) if len(self.shares) > 1 else 0.0
        return [
            self.strategy,
            self.budget,
            f"{np.mean(self.shares):.3f} ± {sd:.3f}",
            f"{np.mean(self.on_front):.2f}",
            self.versus(random),
            self.short,
        ]

    def versus(self, random: Result | None) -> str:
        """Share of the replays above / below random search's replay of the same seed (same start); for one-shot,
        each supernet against every random replay."""
        if random is None or self.strategy == "random":
            return ""
        ours, theirs = np.array(self.shares), np.array(random.shares)
        if len(ours) != len(theirs):
            ours, theirs = ours[:, None], theirs[None, :]
        better, worse = np.mean(ours > theirs + 1e-9), np.mean(ours < theirs - 1e-9)
        return f"{better:.2f} / {worse:.2f}"


def sampler_results(
    name: str, cfg: SearchConfig, table: MaskTable, judge: Judge, args: argparse.Namespace, budgets: list[int]
) -> list[Result]:
    """Each seed's replay runs to the largest budget once; the smaller budgets are its first trials, which a replay
    with that budget would have tried alike (trial n's proposal depends on the trials before it and seed + n only)."""
    results, start = [Result(name, b, [], []) for b in budgets], time.process_time()
    with tempfile.TemporaryDirectory() as scratch:
        for k in range(args.seeds):
            tried = replay(cfg, table, judge.observed, k * SEED_STRIDE, max(budgets), Path(scratch))
            for result in results:
                found = tried[: result.budget]
                share, on_front = judge(found)
                result.shares.append(share)
                result.on_front.append(on_front)
                result.short += len(found) < result.budget
    for result in results:
        result.seconds = time.process_time() - start
    return results


def oneshot_results(table: MaskTable, judge: Judge, budgets: list[int], pick_rule: str) -> list[Result]:
    """Per supernet, confirm up to ``budget`` masks of its one-shot front (fewer where the front is smaller):
    deterministic given the supernet, so the spread is the supernets'."""
    masks, results = table.masks, [Result(ONESHOT, b, [], []) for b in budgets]  # masks sorted, as run_oneshot has them
    for scores in table.oneshots:
        points = table.oriented(scores, masks)
        for result in results:
            confirmed = [masks[i] for i in masks_to_confirm(points, result.budget, pick_rule)]
            share, on_front = judge(confirmed)
            result.shares.append(share)
            result.on_front.append(on_front)
            result.short += len(confirmed) < result.budget
    return results


def correlations(table: MaskTable) -> list[str]:
    """Per objective: Spearman's rho of short trials and of a second seed, Kendall's tau of one-shot scores, against
    the stand-alone values."""
    masks, lines = table.masks, []

    def per_objective(statistic, a: np.ndarray, b: np.ndarray) -> str:
        return ", ".join(f"{name} {statistic(a[:, j], b[:, j]).statistic:+.2f}" for j, name in enumerate(OBJECTIVES))

    true = np.stack([table.true[m] for m in masks])
    if table.trial is not None:
        trial = np.stack([table.trial[m] for m in masks])
        lines.append(
            f"Spearman rho, short trials vs stand-alone ({len(masks)} masks): {per_objective(spearmanr, true, trial)}"
        )
    for k, scores in enumerate(table.oneshots):
        oneshot = np.stack([scores[m] for m in masks])
        lines.append(
            f"Kendall tau, one-shot (supernet {k}) vs stand-alone ({len(masks)} masks): "
            f"{per_objective(kendalltau, true, oneshot)}"
        )
    if len(table.repeats) >= 3:
        first, other = (np.stack(side) for side in zip(*table.repeats))
        lines.append(
            f"Spearman rho, seed vs seed ({len(table.repeats)} masks trained twice: the noise): "
            f"{per_objective(spearmanr, first, other)}"
        )
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=Path("benchmarks/data/mask_table.csv"))
    parser.add_argument("--seeds", type=int, default=50, help="replays of each sampler strategy")
    parser.add_argument("--budgets", default="8,16,32", help="trials (one-shot: masks confirmed)")
    parser.add_argument("--strategies", default=",".join([*SAMPLER_STRATEGIES, ONESHOT]))
    parser.add_argument(
        "--observe", choices=("trial", "standalone", "capacity"), default="trial", help="what the search sees"
    )
    parser.add_argument("--pick_rule", default=SearchConfig().pick_rule)
    parser.add_argument("--startup_trials", type=int, default=SAMPLERS.options("tpe").startup_trials, help="TPE and GP")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table and figures here")
    args = parser.parse_args(argv)
    args.budgets = sorted({int(b) for b in args.budgets.split(",") if b.strip()})
    args.strategies = [s for s in args.strategies.split(",") if s.strip()]
    unknown = set(args.strategies) - {*SAMPLER_STRATEGIES, ONESHOT}
    if unknown or not args.budgets or min(args.budgets) < 1 or args.seeds < 1:
        raise UserError(
            f"--strategies: some of {', '.join([*SAMPLER_STRATEGIES, ONESHOT])}; --budgets, --seeds: at least 1"
        )
    return args


def run(args: argparse.Namespace) -> tuple[MaskTable, Judge, list[Result]]:
    table = load_table(args.table)
    observed = {"trial": table.trial, "standalone": table.true, "capacity": table.capacity}[args.observe]
    if observed is None:
        raise UserError(
            f"--table {args.table}: --observe {args.observe} needs trial_* values (capacity: and trainable_fraction) "
            "for every mask; run mask_table.py --phases trials"
        )
    judge = Judge(table, observed, args.pick_rule)
    budgets, results = [b for b in args.budgets if b <= len(table.masks)], []
    # run_trials collects garbage after every trial, over all of torch's objects here (about a second a time): what
    # exists before the replays stays out of collection while they run.
    gc.collect()
    gc.freeze()
    try:
        for name in args.strategies:
            if name != ONESHOT:
                sampler, options = SAMPLER_STRATEGIES[name]
                options = {"startup_trials": args.startup_trials, **options}
                cfg = replace(SearchConfig(), pick_rule=args.pick_rule, sampler=sampler, plugin_options=options)
                results += sampler_results(name, cfg, table, judge, args, budgets)
            elif table.oneshots:
                confirmed = sorted({STRATEGIES.options(ONESHOT).oneshot_confirm, *budgets})
                results += oneshot_results(table, judge, confirmed, args.pick_rule)
    finally:
        gc.unfreeze()
    return table, judge, results


def report(args: argparse.Namespace, table: MaskTable, judge: Judge, results: list[Result]) -> list[str]:
    random_at = {r.budget: r for r in results if r.strategy == "random"}
    lines = [
        f"{args.table}: {len(table.masks)} masks of {table.method} ({len(table.sites)} sites), true front "
        f"{len(judge.true_front)} masks; the search observes the {args.observe} values; pick rule {args.pick_rule}; "
        f"{args.seeds} seeds",
        "",
        *markdown_table(
            ["strategy", "trials", "HV share (mean ± sd)", "pick on true front", "vs random: above / below", "fewer"],
            [r.row(random_at.get(r.budget)) for r in results],
        ),
        "",
        *correlations(table),
        "CPU seconds of the replays: "
        + ", ".join(f"{r.strategy} {r.seconds:.0f}" for r in results if r.budget == max(args.budgets)),
    ]
    if not table.oneshots and ONESHOT in args.strategies:
        lines.append("oneshot: left out (the table has no oneshot_* values for every mask)")
    at_16 = {r.strategy: float(np.mean(r.shares)) for r in results if r.budget == 16}
    if "random" in at_16 and len(at_16) > 1 and at_16["random"] > 0:
        best = max((s for s in at_16 if s != "random"), key=at_16.get)
        lines += ["", f"best at 16 trials: {best}", f"search_hv_vs_random_16: {at_16[best] / at_16['random']:.2f}x"]
    return lines


def main(argv: list[str] | None = None) -> int:
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # not each pruned duplicate and given-up replay
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        args = parse_args(argv)
        start = time.perf_counter()
        table, judge, results = run(args)
    except UserError as e:
        print(f"search_quality: {e}", file=sys.stderr)
        return 2
    lines = report(args, table, judge, results)
    if args.markdown:
        write_text(args.markdown, "\n".join(lines) + "\n")
    print(f"({time.perf_counter() - start:.0f} s)")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
