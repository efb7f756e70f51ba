"""The outer loop (Algorithm 1): Optuna studies and their samplers, the storage, and the workers that run trials.

Many workers, one study: the same command started on several machines with one ``--storage`` URL
shares the study. A finished trial is never lost or run twice: trials live in the storage, and a
worker runs trials until the study holds ``n_trials`` finished ones, whoever ran them. A worker
that dies (SIGKILL, a lost machine) stops sending heartbeats; once they lapse its trial is marked
failed and queued again with the same proposal, for any worker (this one, restarted) to run.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.samplers import BaseSampler, nsgaii
from optuna.trial import FrozenTrial, TrialState

from memcontrol.config import SearchConfig, changed_option, check_fields, opt
from memcontrol.errors import UserError
from memcontrol.registry import Registry
from memcontrol.search.objectives import Objective
from memcontrol.search.run_config import RunConfig
from memcontrol.search.space import SearchSpace

ONESHOT = "oneshot"  # the --strategy that scores masks with one supernet (oneshot.py) instead of a sampler
STUDY_FILE = "study.db"
SETUP_ATTR = "setup"  # the study's user attribute holding what its trials depend on
FAIL_REASON = "fail_reason"  # user attribute of a trial that failed by its own fault (not interrupted)
DUPLICATE_OF = "duplicate_of"  # user attribute of a trial skipped because an earlier one had its proposal
REPLACED_DUPLICATE_OF = "replaced_duplicate_of"  # user attribute of a trial run in the stead of such a skipped one
SPACE_EXHAUSTED = "space_exhausted"  # user attribute of a skipped trial that found every mask of the space tried
# A sampler proposing masks already tried this many times per trial asked for has run out of new ones.
DUPLICATES_PER_TRIAL = 10
URL_SCHEMES = ("sqlite:", "postgresql", "mysql")
OPEN_ATTEMPTS = 3


@dataclass(frozen=True)
class Factory:
    """A crossover: made by a function of no settings."""

    name: str
    make: Callable[[], Any]


CROSSOVERS: Registry[Factory] = Registry("crossover", "--crossover")
CROSSOVERS.register(Factory("uniform", nsgaii.UniformCrossover))
CROSSOVERS.register(Factory("blxalpha", nsgaii.BLXAlphaCrossover))
CROSSOVERS.register(Factory("sbx", nsgaii.SBXCrossover))
CROSSOVERS.register(Factory("vsbx", nsgaii.VSBXCrossover))
CROSSOVERS.register(Factory("undx", nsgaii.UNDXCrossover))
CROSSOVERS.register(Factory("spx", nsgaii.SPXCrossover))


@dataclass(frozen=True)
class SamplerConfig:
    """The options every sampler has: none (its seed and budget are the search's); a sampler with options extends
    this next to it, and they are flags and YAML keys (``SearchConfig.plugin_options``)."""

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class Sampler:
    """A sampler: ``make(options, seed)`` builds the Optuna sampler from its options (a ``config_class``)."""

    name: str
    make: Callable[[Any, int], BaseSampler]
    config_class: type[SamplerConfig] = SamplerConfig


SAMPLERS: Registry[Sampler] = Registry("sampler", "--sampler", SamplerConfig)


@dataclass(frozen=True)
class NSGA2Config(SamplerConfig):
    """NSGA-II's options (the paper's sampler)."""

    population_size: int = opt(50, "NSGA-II population: with fewer trials than this the search is random", min=2)
    crossover: str = opt("uniform", "NSGA-II crossover", registry="crossover")
    crossover_prob: float = opt(0.9, "NSGA-II probability that a child comes from a crossover", min=0, max=1)
    mutation_prob: float | None = opt(
        None, "NSGA-II probability of mutating each parameter; default: 1 / number of parameters", min=0, max=1
    )


@dataclass(frozen=True)
class ModelBasedConfig(SamplerConfig):
    """The model-based samplers' (TPE and GP): one option, the same for both."""

    startup_trials: int = opt(10, "TPE and GP: random trials before the objectives are modelled", min=0)


def _nsga2(options: NSGA2Config, seed: int) -> BaseSampler:
    return optuna.samplers.NSGAIISampler(
        population_size=options.population_size,
        crossover=CROSSOVERS.get(options.crossover).make(),
        crossover_prob=options.crossover_prob,
        mutation_prob=options.mutation_prob,
        seed=seed,
    )


def _tpe(options: ModelBasedConfig, seed: int) -> BaseSampler:  # group: the method choice makes some bits conditional
    return optuna.samplers.TPESampler(n_startup_trials=options.startup_trials, multivariate=True, group=True, seed=seed)


def _gp(options: ModelBasedConfig, seed: int) -> BaseSampler:
    return optuna.samplers.GPSampler(n_startup_trials=options.startup_trials, seed=seed)


def _random(options: SamplerConfig, seed: int) -> BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


SAMPLERS.register(Sampler("nsga2", _nsga2, NSGA2Config))  # the paper
SAMPLERS.register(Sampler("tpe", _tpe, ModelBasedConfig))
SAMPLERS.register(Sampler("gp", _gp, ModelBasedConfig))
SAMPLERS.register(Sampler("random", _random))


def make_sampler(cfg: SearchConfig, seed: int) -> BaseSampler:
    """The sampler of ``--sampler`` with its options, seeded with ``seed``."""
    return SAMPLERS.get(cfg.sampler).make(SAMPLERS.options(cfg.sampler, cfg.plugin_options), seed)


@dataclass(frozen=True)
class StrategyConfig:
    """The options every search strategy has: none; a strategy with options extends this next to it (oneshot.py)."""

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class Strategy:
    """How the outer loop fills its studies. ``explore``: None when the sampler proposes every trial; otherwise a search
    of its own (called with ``run_oneshot``'s arguments) that fills the one study with the trials it confirms and
    returns its summary for pareto.json. Its options: ``config_class``."""

    name: str
    explore: Callable[..., dict] | None = None
    config_class: type[StrategyConfig] = StrategyConfig


STRATEGIES: Registry[Strategy] = Registry("search strategy", "--strategy", StrategyConfig)
STRATEGIES.register(Strategy("bilevel"))  # the paper: each trial fine-tunes one mask the sampler proposes


class RandomSearchWarning(UserWarning):
    """NSGA-II given too few trials to breed from its first generation, which is random."""


def warn_if_random_search(cfg: SearchConfig) -> None:
    """Warn when ``--sampler nsga2`` gets fewer trials than twice its population: its first generation is drawn at
    random, so with fewer trials than the population the search is random search, and below twice the population
    the bred second generation is cut short."""
    if cfg.sampler != "nsga2":
        return
    population = SAMPLERS.options("nsga2", cfg.plugin_options).population_size
    if cfg.n_trials >= 2 * population:
        return
    if cfg.n_trials <= population:
        what = f"all {cfg.n_trials} trials are its random first generation: this is random search"
    else:
        what = (
            f"{population} of the {cfg.n_trials} trials are its random first generation and only "
            f"{cfg.n_trials - population} are bred from them: mostly random search"
        )
    warnings.warn(
        f"--sampler nsga2 with --n_trials {cfg.n_trials} and --population_size {population}: {what}; give at "
        f"least {2 * population} trials, a smaller --population_size, or --sampler tpe or gp",
        RandomSearchWarning,
        stacklevel=2,
    )


class TrialSeededSampler(BaseSampler):
    """Runs trial n with a sampler made afresh from seed + n.

    A sampler seeded once per process would make two workers with one seed propose the same masks,
    and a resumed search replay the proposals it made before. Optuna's samplers keep their state
    (generations, history) in the study, so a fresh one per trial loses nothing.
    """

    def __init__(self, make: Callable[[int], BaseSampler], seed: int):
        self._make, self._seed = make, seed
        self._current: tuple[int, BaseSampler] | None = None

    def _for(self, trial: FrozenTrial) -> BaseSampler:
        if self._current is None or self._current[0] != trial.number:
            self._current = (trial.number, self._make(self._seed + trial.number))
        return self._current[1]

    def infer_relative_search_space(self, study, trial):
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._for(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._for(trial).after_trial(study, trial, state, values)


def open_storage(cfg: SearchConfig, output_dir: Path) -> optuna.storages.RDBStorage:
    """The study's database: ``--storage``, else SQLite in ``output_dir``; with heartbeats and retry of interrupted
    trials."""
    url = cfg.storage or f"sqlite:///{(output_dir / STUDY_FILE).resolve()}"
    shown = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True) if "://" in url else url
    if not url.startswith(URL_SCHEMES):
        raise UserError(f"--storage {shown}: expected a URL sqlite:///file.db, postgresql://... or mysql://...")
    grace = cfg.grace_period or 2 * cfg.heartbeat_interval
    if not 0 < cfg.heartbeat_interval < grace:
        raise UserError(
            f"--heartbeat_interval {cfg.heartbeat_interval} and --grace_period {grace}: expected 0 < interval < grace"
        )
    # SQLite: several local workers take turns on the file lock; wait for it rather than fail.
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else {}
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=cfg.heartbeat_interval,
                grace_period=grace,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=cfg.max_retry
                ),
            )
        except ImportError:
            raise UserError(
                f"--storage {shown}: its database driver is not installed (PostgreSQL: pip install "
                "'memcontrol[postgres]' and write postgresql+psycopg://...; MySQL: pip install pymysql and write "
                "mysql+pymysql://...)"
            ) from None
        except (sqlalchemy.exc.SQLAlchemyError, ValueError) as e:
            # Workers started together race to create a new database's tables: the losers find them on another try.
            if attempt + 1 == OPEN_ATTEMPTS:
                raise UserError(f"--storage {shown}: cannot be opened ({str(e).strip().splitlines()[0]})") from None
            time.sleep(1 + attempt)


def open_study(
    storage: optuna.storages.BaseStorage,
    *,
    name: str,
    directions: Sequence[str],
    sampler: BaseSampler,
    setup: dict,
    defaults: dict,
) -> optuna.Study:
    """Create the study, or load it and check that its trials were run as these would be (``setup``; ``defaults``: its
    values with every option at its default, see ``config.changed_option``)."""
    study = optuna.create_study(
        storage=storage, study_name=name, directions=list(directions), sampler=sampler, load_if_exists=True
    )
    setup, defaults = json.loads(json.dumps(setup)), json.loads(json.dumps(defaults))  # as the storage gives them back
    recorded = study.user_attrs.get(SETUP_ATTR)
    key = None if recorded is None else changed_option(recorded, setup, defaults)
    if recorded is None:
        study.set_user_attr(SETUP_ATTR, setup)
    elif key is not None:
        raise UserError(
            f"study {name!r} holds trials run with {key}={_short(recorded.get(key))}, not {_short(setup.get(key))}: "
            "give another --study_name or --output_dir to start a new study"
        )
    return study


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_finished(trial: FrozenTrial) -> bool:
    """Counts towards the study's trials: completed, or failed by its own fault (diverged, out of memory ...).

    A trial whose worker died, or that came after the study was full, does not count.
    """
    return trial.state == TrialState.COMPLETE or (trial.state == TrialState.FAIL and FAIL_REASON in trial.user_attrs)


def _holds_slot(trial: FrozenTrial) -> bool:
    return is_finished(trial) or trial.state in (TrialState.RUNNING, TrialState.WAITING)


def finished_count(study: optuna.Study) -> int:
    return sum(is_finished(t) for t in study.get_trials(deepcopy=False))


def is_surplus(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Whether trial ``number`` was asked for when the study already held ``n_trials`` (two workers asked at once)."""
    return sum(_holds_slot(t) for t in study.get_trials(deepcopy=False) if t.number < number) >= n_trials


def run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Sequence[float]],
    *,
    n_trials: int,
    catch: tuple[type[Exception], ...],
    poll_seconds: float,
    on_progress: Callable[[int], None] = lambda finished: None,
) -> None:
    """Run trials until ``study`` holds ``n_trials`` finished ones, whoever runs them.

    When the last trials are running elsewhere this worker waits for them rather than leave: their
    workers finish them, or die, and the trials come back to the queue once their heartbeats lapse.
    """
    while True:
        trials = study.get_trials(deepcopy=False)
        finished = sum(is_finished(t) for t in trials)
        on_progress(finished)
        if finished >= n_trials:
            return
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if not waiting and any(SPACE_EXHAUSTED in t.user_attrs for t in trials):
            warnings.warn(
                f"study {study.study_name}: every mask of its space was tried; it ends with {finished} finished "
                f"trials, not --n_trials {n_trials}",
                stacklevel=2,
            )
            return
        if sum(DUPLICATE_OF in t.user_attrs for t in trials) > DUPLICATES_PER_TRIAL * n_trials:
            raise UserError(
                f"the sampler keeps proposing what was tried already: the space has fewer than {n_trials} proposals "
                "left"
            )
        running = sum(t.state == TrialState.RUNNING for t in trials)
        if waiting or finished + running < n_trials:
            study.optimize(objective, n_trials=1, catch=catch, gc_after_trial=True)
        else:
            time.sleep(poll_seconds)
            optuna.storages.fail_stale_trials(study)


def open_studies(
    job: RunConfig,
    spaces: list[SearchSpace],
    objectives: list[Objective],
    setup: dict,
    defaults: dict,
    output_dir: Path,
) -> list:
    """One study per space, named after it, in the storage of --storage (default: SQLite in ``output_dir``)."""
    storage = open_storage(job.search, output_dir)
    strategy = STRATEGIES.get(job.search.strategy)
    suffix = f"-{strategy.name}" if strategy.explore else ""  # its trials are confirmations, not proposals
    return [
        open_study(
            storage,
            name=f"{job.search.study_name}-{space.name}{suffix}",
            directions=[o.direction for o in objectives],
            sampler=TrialSeededSampler(partial(make_sampler, job.search), job.search.search_seed),
            setup=setup,
            defaults=defaults,
        )
        for space in spaces
    ]
