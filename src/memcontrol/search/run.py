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

import json
from functools import cache, partial
from pathlib import Path

from tqdm.auto import tqdm

from memcontrol.data.prepare import prepare_data
from memcontrol.errors import UserError
from memcontrol.io import ensure_writable_dir, write_json
from memcontrol.peft import get_method
from memcontrol.peft.accounting import meta_unet
from memcontrol.search.data import describe_proxy, proxy_training_set
from memcontrol.search.inner_loop import TRIAL_FILE, InnerLoop, MaskObjective, TrialFailed
from memcontrol.search.objectives import get_objectives
from memcontrol.search.outer_loop import STRATEGIES, finished_count, open_studies, run_trials, warn_if_random_search
from memcontrol.search.results import write_results
from memcontrol.search.run_config import OPERATIONAL, STEERING, RunConfig
from memcontrol.search.space import Proposal, search_spaces

SEARCH_DATA = "search_data.json"
TRIALS_DIR = "trials"
BASELINES_DIR = "baselines"


def trial_setup(job: RunConfig, data_record: dict) -> dict:
    """What a trial's outcome depends on; a study's trials are comparable only while these stay the same."""
    setup = {k: v for k, v in job.options().items() if k not in OPERATIONAL | STEERING and not k.startswith("sample.")}
    # What a trial really runs with: stage 2's steps and FID samples matter only where the search takes them.
    setup["train.max_train_steps"] = setup.pop("search.trial_train_steps") or job.train.max_train_steps
    setup["evaluation.fid_samples"] = setup.pop("search.trial_fid_samples") or job.evaluation.fid_samples
    if job.search.search_learning_rate:
        del setup["train.learning_rate"]
    return {**setup, "data": data_record}


def run_search(job: RunConfig, output_dir: str | Path, *, progress: bool = True) -> dict:
    """Run trials until every study holds ``--n_trials`` finished ones, evaluate the baselines, pick; return
    best_mask.json."""
    output_dir = ensure_writable_dir(output_dir)
    if job.search.n_trials < 1:
        raise UserError(f"--n_trials must be at least 1, got {job.search.n_trials}")
    objectives = get_objectives(job.search.objectives)
    strategy = STRATEGIES.get(job.search.strategy)
    if strategy.explore is None:
        warn_if_random_search(job.search)
    unet = meta_unet(job.model.pretrained_model_name_or_path)  # module paths only: no weights are loaded
    spaces, baselines = search_spaces(job.train, job.search, unet), _baselines(job, unet)
    data = prepare_data(job.data)
    training = proxy_training_set(data, job.search.proxy_fraction, job.data.split_seed)
    data_record = describe_proxy(data, training)
    write_json(output_dir / SEARCH_DATA, {**data_record, "proxy": [str(e.image_path) for e in dict.fromkeys(training)]})
    setup, defaults = trial_setup(job, data_record), trial_setup(RunConfig.with_defaults(), data_record)
    studies = open_studies(job, spaces, objectives, setup, defaults, output_dir)
    inner = cache(partial(InnerLoop, job, data, training, objectives))  # loads the model: only when there is work left
    summary = None
    if strategy.explore:  # its study holds the masks it confirms, trained as the bi-level trials are
        if len(spaces) > 1 or len(spaces[0].sites) > 1:
            raise UserError(
                f"--strategy {strategy.name}: searches one method's masks; give --method one method, not "
                f"{job.train.method}"
            )
        summary = strategy.explore(
            job,
            space=spaces[0],
            study=studies[0],
            objectives=objectives,
            data=data,
            training=training,
            setup=setup,
            load_inner=inner,
            output_dir=output_dir,
            trials_dir=output_dir / TRIALS_DIR,
            log=tqdm.write,
        )
    trial_studies = [] if strategy.explore else studies
    pending = {
        name: p for name, p in baselines.items() if not (output_dir / BASELINES_DIR / name / TRIAL_FILE).is_file()
    }
    if pending or any(finished_count(study) < job.search.n_trials for study in trial_studies):
        with tqdm(
            total=job.search.n_trials * len(trial_studies) + len(baselines), desc="search", disable=not progress
        ) as bar:
            for k, (space, study) in enumerate(zip(spaces, trial_studies)):
                objective = MaskObjective(
                    inner(),
                    space,
                    objectives,
                    n_trials=job.search.n_trials,
                    trials_dir=output_dir / TRIALS_DIR,
                    log=bar.write,
                    replace_seed=job.search.search_seed,
                )
                run_trials(
                    study,
                    objective,
                    n_trials=job.search.n_trials,
                    catch=(TrialFailed,),
                    poll_seconds=job.search.heartbeat_interval,
                    on_progress=partial(_show, bar, k * job.search.n_trials),
                )
            bar.update(len(baselines) - len(pending))
            for (
                name,
                proposal,
            ) in pending.items():  # with several workers, each evaluates those still missing when it gets here
                if (
                    output_dir / BASELINES_DIR / name / TRIAL_FILE
                ).is_file():  # another worker on this folder did it meanwhile
                    bar.update()
                    continue
                record = {
                    "baseline": name,
                    "method": proposal.method,
                    "mask": proposal.mask_text,
                    "learning_rate": proposal.learning_rate,
                }
                inner()(proposal, output_dir / BASELINES_DIR / name, record)
                bar.update()
    return write_results(
        studies,
        objectives=objectives,
        pick_rule=job.search.pick_rule,
        sites={m: s for space in spaces for m, s in space.sites.items()},
        baselines={
            name: json.loads((output_dir / BASELINES_DIR / name / TRIAL_FILE).read_text()) for name in baselines
        },
        output_dir=output_dir,
        summary=summary,
    )


def _show(bar: tqdm, offset: int, finished: int) -> None:
    bar.n = offset + finished
    bar.refresh()


def _baselines(job: RunConfig, unet) -> dict[str, Proposal]:
    """``--baselines full@5e-4,svdiff``: each method with every site on, at its own learning rate or --learning_rate
    (the paper's Figure 3 squares)."""
    options = job.train.plugin_options
    return {
        baseline: Proposal(
            baseline.method,
            get_method(baseline.method, options).check_mask(unet, None),
            job.train.learning_rate if baseline.learning_rate is None else baseline.learning_rate,
        )
        for baseline in job.search.baselines
    }
