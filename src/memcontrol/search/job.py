"""``memcontrol search``: stage 1 of MemControl, the bi-level mask search, then the pick.

    output_dir/
      study.db            the Optuna study (default storage; --storage puts it elsewhere)
      search_data.json    the search's data: D_mem pairs, the proxy training images
      trials/STUDY/NNNN/  each trial: trial.json (proposal, metrics, trainable fraction, time, state) and samples/
      baselines/NAME/     the same for each of --baselines (a method with every site on)
      trials.csv, pareto.json, best_mask.json, pareto.png, convergence.png
      oneshot/, oneshot.csv  with --strategy oneshot: the supernet and its scores (memcontrol.search.oneshot); its
                          trials are the masks it confirms, in the study STUDY_NAME-METHOD-oneshot
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

from tqdm.auto import tqdm

from memcontrol.config import DataConfig, ModelConfig, SampleConfig, SearchConfig, TrainConfig, build, load_yaml
from memcontrol.data.prepare import is_builtin, prepare_data
from memcontrol.errors import UserError
from memcontrol.io import ensure_writable_dir, write_json
from memcontrol.metrics.evaluate import EvalSettings
from memcontrol.metrics.job import FeatureConfig
from memcontrol.peft import MethodOptions, get_method
from memcontrol.peft.accounting import meta_unet
from memcontrol.search.data import describe_proxy, proxy_training_set
from memcontrol.search.objective import TRIAL_FILE, InnerLoop, MaskObjective, TrialFailed
from memcontrol.search.objectives import Objective, parse_objectives
from memcontrol.search.oneshot import ONESHOT, run_oneshot
from memcontrol.search.results import write_results
from memcontrol.search.space import Proposal, SearchSpace, search_spaces
from memcontrol.search.study import (
    TrialSeededSampler, finished_count, make_sampler, open_storage, open_study, run_trials, warn_if_random_search,
)

CPU_PRESET = "cpu"
SEARCH_DATA = "search_data.json"
TRIALS_DIR = "trials"
BASELINES_DIR = "baselines"

# Options that change where or how fast a job runs, never its results.
OPERATIONAL = {
    "model.device", "data.dataloader_num_workers", "sample.sample_batch_size", "evaluation.batch_size",
    "evaluation.feature_batch_size", "search.storage", "search.heartbeat_interval", "search.grace_period", "search.max_retry",
    "train.checkpointing_steps", "train.checkpoints_total_limit", "train.resume_from_checkpoint",
}
# Options that steer the search but not what one trial yields: a study may go on under other values.
STEERING = {
    "search.n_trials", "search.sampler", "search.population_size", "search.crossover", "search.crossover_prob",
    "search.mutation_prob", "search.startup_trials", "search.search_seed", "search.pick_rule", "search.baselines",
    "search.study_name", "search.strategy", "search.supernet_train_steps", "search.oneshot_masks", "search.oneshot_fid_samples",
    "search.oneshot_dmem_prompts", "search.oneshot_inference_steps", "search.oneshot_confirm",
}


@dataclass(frozen=True)
class JobConfig:
    """Every option of `memcontrol search` and `memcontrol run`."""

    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    sample: SampleConfig
    search: SearchConfig
    features: FeatureConfig
    evaluation: EvalSettings

    @staticmethod
    def classes() -> tuple[type, ...]:
        """The config classes, in field order (for ``config.build``)."""
        hints = typing.get_type_hints(JobConfig)
        return tuple(hints[f.name] for f in dataclasses.fields(JobConfig))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> JobConfig:
        """From the flags and ``--config``; on built-in data without ``--config``, over the CPU preset (sized for a CPU)."""
        builtin = is_builtin(getattr(args, "train_data_dir", None))
        defaults = load_yaml(CPU_PRESET) if builtin and not getattr(args, "config", None) else None
        return cls(*build(cls.classes(), args, defaults=defaults))

    def options(self) -> dict:
        """Every option as ``section.name: value``."""
        return {f"{f.name}.{k}": v for f in dataclasses.fields(self) for k, v in dataclasses.asdict(getattr(self, f.name)).items()}

    @classmethod
    def with_defaults(cls) -> JobConfig:
        """Every option at its default (no preset): what a result recorded before an option existed was made with."""
        return cls(*(config() for config in cls.classes()))


def trial_setup(job: JobConfig, data_record: dict) -> dict:
    """What a trial's outcome depends on; a study's trials are comparable only while these stay the same."""
    setup = {k: v for k, v in job.options().items() if k not in OPERATIONAL | STEERING and not k.startswith("sample.")}
    # What a trial really runs with: stage 2's steps and FID samples matter only where the search takes them.
    setup["train.max_train_steps"] = setup.pop("search.trial_train_steps") or job.train.max_train_steps
    setup["evaluation.fid_samples"] = setup.pop("search.trial_fid_samples") or job.evaluation.fid_samples
    if job.search.search_learning_rate:
        del setup["train.learning_rate"]
    return {**setup, "data": data_record}


def run_search(job: JobConfig, output_dir: str | Path, *, progress: bool = True) -> dict:
    """Run trials until every study holds ``--n_trials`` finished ones, evaluate the baselines, pick; return best_mask.json."""
    output_dir = ensure_writable_dir(output_dir)
    if job.search.n_trials < 1:
        raise UserError(f"--n_trials must be at least 1, got {job.search.n_trials}")
    objectives = parse_objectives(job.search.objectives)
    oneshot = job.search.strategy == ONESHOT
    if not oneshot:
        warn_if_random_search(job.search)
    unet = meta_unet(job.model.pretrained_model_name_or_path)  # module paths only: no weights are loaded
    spaces, baselines = search_spaces(job.train, job.search, unet), _baselines(job, unet)
    data = prepare_data(job.data)
    training = proxy_training_set(data, job.search.proxy_fraction, job.data.split_seed)
    data_record = describe_proxy(data, training)
    write_json(output_dir / SEARCH_DATA, {**data_record, "proxy": [str(e.image_path) for e in dict.fromkeys(training)]})
    setup, defaults = trial_setup(job, data_record), trial_setup(JobConfig.with_defaults(), data_record)
    studies = _open_studies(job, spaces, objectives, setup, defaults, output_dir)
    inner = cache(partial(InnerLoop, job, data, training, objectives))  # loads the model: only when there is work left
    summary = None
    if oneshot:  # its studies hold the masks it confirms, trained as the bi-level trials are
        if len(spaces) > 1 or len(spaces[0].sites) > 1:
            raise UserError(f"--strategy oneshot: searches one method's masks; give --method one method, not {job.train.method}")
        summary = run_oneshot(
            job, space=spaces[0], study=studies[0], objectives=objectives, data=data, training=training, setup=setup,
            load_inner=inner, output_dir=output_dir, trials_dir=output_dir / TRIALS_DIR, log=tqdm.write,
        )
    trial_studies = [] if oneshot else studies
    pending = {name: p for name, p in baselines.items() if not (output_dir / BASELINES_DIR / name / TRIAL_FILE).is_file()}
    if pending or any(finished_count(study) < job.search.n_trials for study in trial_studies):
        with tqdm(total=job.search.n_trials * len(trial_studies) + len(baselines), desc="search", disable=not progress) as bar:
            for k, (space, study) in enumerate(zip(spaces, trial_studies)):
                objective = MaskObjective(
                    inner(), space, objectives, n_trials=job.search.n_trials, trials_dir=output_dir / TRIALS_DIR, log=bar.write
                )
                run_trials(
                    study, objective, n_trials=job.search.n_trials, catch=(TrialFailed,), poll_seconds=job.search.heartbeat_interval,
                    on_progress=partial(_show, bar, k * job.search.n_trials),
                )
            bar.update(len(baselines) - len(pending))
            for name, proposal in pending.items():  # with several workers, each evaluates those still missing when it gets here
                if (output_dir / BASELINES_DIR / name / TRIAL_FILE).is_file():  # another worker on this folder did it meanwhile
                    bar.update()
                    continue
                record = {"baseline": name, "method": proposal.method, "mask": proposal.mask_text, "learning_rate": proposal.learning_rate}
                inner()(proposal, output_dir / BASELINES_DIR / name, record)
                bar.update()
    return write_results(
        studies, objectives=objectives, pick_rule=job.search.pick_rule,
        sites={m: s for space in spaces for m, s in space.sites.items()},
        baselines={name: json.loads((output_dir / BASELINES_DIR / name / TRIAL_FILE).read_text()) for name in baselines},
        output_dir=output_dir, summary=summary,
    )


def _open_studies(
    job: JobConfig, spaces: list[SearchSpace], objectives: list[Objective], setup: dict, defaults: dict, output_dir: Path
) -> list:
    """One study per space, named after it, in the storage of --storage (default: SQLite in ``output_dir``)."""
    storage = open_storage(job.search, output_dir)
    suffix = f"-{ONESHOT}" if job.search.strategy == ONESHOT else ""  # its trials are confirmations, not proposals
    return [
        open_study(
            storage, name=f"{job.search.study_name}-{space.name}{suffix}", directions=[o.direction for o in objectives],
            sampler=TrialSeededSampler(partial(make_sampler, job.search), job.search.search_seed), setup=setup, defaults=defaults,
        )
        for space in spaces
    ]


def _show(bar: tqdm, offset: int, finished: int) -> None:
    bar.n = offset + finished
    bar.refresh()


def _baselines(job: JobConfig, unet) -> dict[str, Proposal]:
    """``--baselines full@5e-4,svdiff``: each method with every site on, at its own learning rate or --learning_rate
    (the paper's Figure 3 squares)."""
    options, proposals = MethodOptions.from_config(job.train), {}
    for name in dict.fromkeys(b.strip() for b in job.search.baselines.split(",") if b.strip()):
        method, _, lr = name.partition("@")
        try:
            learning_rate = float(lr) if lr else job.train.learning_rate
        except ValueError:
            raise UserError(f"--baselines {name}: expected METHOD or METHOD@LEARNING_RATE, e.g. full@5e-4") from None
        proposals[name] = Proposal(method, get_method(method, options).check_mask(unet, None), learning_rate)
    return proposals

