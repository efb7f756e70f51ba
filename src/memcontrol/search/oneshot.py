"""``--strategy oneshot``: score masks from one weight-sharing supernet instead of fine-tuning each.

The method's parameters are trained once on the search's proxy set with every site adapted. Each step draws a
mask, each site on with probability 1/2, and every ``SANDWICH_EVERY`` steps the all-on and the all-off mask in turn
(the sandwich rule of slimmable networks). A site that is off for a step acts as the base model: its parameters sit
at their initial values (the identity for svdiff, difffit and lora, the base weights for attention) and its
gradients are discarded, so AdamW leaves it alone. A mask is then scored without retraining, its on-sites at the
supernet's values and the rest at their initial ones, at a cheaper fidelity than a trial (fewer FID samples, D_mem
prompts or DDIM steps). Weight-sharing rankings can differ from stand-alone ones (SPOS and its successors report
Kendall's tau for that reason), so up to ``--oneshot_confirm`` masks of the one-shot Pareto front are trained
stand-alone, exactly as bi-level trials, in a study of their own; the pick is made among them.

    output_dir/oneshot/supernet.safetensors, supernet.json  the supernet's trained parameters, its setup and compute
    output_dir/oneshot/scores.json                          every scored mask's one-shot objectives, the scoring's
                                                            setup (the sampler's options among it) and compute
    output_dir/oneshot.csv                                  each scored mask: one-shot and, where confirmed,
                                                            stand-alone values
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import itertools
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import optuna
import torch
from safetensors.torch import load_file, save_file
from scipy.stats import kendalltau
from torch import nn

from memcontrol.config import SearchConfig, as_dict, changed_option, opt
from memcontrol.data.imagefolder import Example
from memcontrol.data.prepare import PreparedData
from memcontrol.errors import UserError
from memcontrol.io import atomic_path, write_json, write_text
from memcontrol.metrics.evaluate import EvalConfig
from memcontrol.peft import PeftMethod, get_method
from memcontrol.peft.accounting import meta_unet
from memcontrol.runtime import make_accelerator
from memcontrol.search.inner_loop import InnerLoop, MaskObjective, TrialFailed, trial_settings
from memcontrol.search.objectives import Objective, TrialMetrics
from memcontrol.search.outer_loop import (
    DUPLICATES_PER_TRIAL,
    ONESHOT,
    SAMPLERS,
    STRATEGIES,
    Strategy,
    StrategyConfig,
    finished_count,
    make_sampler,
    run_trials,
)
from memcontrol.search.pick import REFERENCE, hypervolume, normalise, pareto_mask, pick
from memcontrol.search.results import trial_row
from memcontrol.search.run_config import RunConfig
from memcontrol.search.space import SearchSpace
from memcontrol.train.engine import fine_tune
from memcontrol.train.run import merge_for_sampling

ONESHOT_DIR = "oneshot"
ONESHOT_CSV = "oneshot.csv"
SUPERNET_WEIGHTS, SUPERNET_JSON, SCORES_JSON = "supernet.safetensors", "supernet.json", "scores.json"
SANDWICH_EVERY = 4  # steps 0, 4, 8 ... train the all-on mask, then the all-off one, in turn
ON_PROBABILITY = 0.5


@dataclasses.dataclass(frozen=True)
class OneShotConfig(StrategyConfig):
    """``--strategy oneshot``'s options: the supernet's training, the fidelity masks are scored at, the confirmation."""

    supernet_train_steps: int | None = opt(
        None, "oneshot: optimisation steps of the supernet; default: a trial's", min=1
    )
    oneshot_masks: int = opt(
        32,
        "oneshot: masks scored from the supernet: every mask of a space with at most this many, else this many that "
        "--sampler proposes with the supernet as the objective",
        min=1,
    )
    oneshot_fid_samples: int = opt(8, "oneshot: validation prompts for a mask's FID scored from the supernet", min=2)
    oneshot_dmem_prompts: int | None = opt(
        None, "oneshot: D_mem prompts for a mask's d_mem scored from the supernet; default: all", min=1
    )
    oneshot_inference_steps: int | None = opt(
        10, "oneshot: DDIM steps when scoring from the supernet (0 or unset: a trial's)", min=0
    )
    oneshot_confirm: int = opt(
        2, "oneshot: most masks of the one-shot Pareto front trained stand-alone as trials, to pick among", min=1
    )


def oneshot_options(search: SearchConfig) -> OneShotConfig:
    return STRATEGIES.options(ONESHOT, search.plugin_options)


def supernet_learning_rate(space: SearchSpace) -> float:
    """The space's learning rate; where it is searched, the middle of its range on the log scale the search uses:
    one supernet shares one set of weights, so it trains at one rate, and its confirmed trials at the same."""
    if isinstance(space.learning_rate, tuple):
        return math.sqrt(space.learning_rate[0] * space.learning_rate[1])
    return space.learning_rate


def _plain_name(name: str) -> str:
    """A parameter's name without torch's parametrization wrapping, which depends on what else adapts the layer."""
    return name.replace("parametrizations.", "").replace(".original", "")


def governed_parameters(method: PeftMethod, model_path: str | None) -> dict[str, int]:
    """Trainable parameter (plain name, see ``_plain_name``) -> the site whose bit switches it.

    Found on the architecture without weights: a parameter trains with site i alone on, and not with every site off.
    Parameters that always train (outside every site, or not masked in the paper layout) are not governed.
    """
    sites = method.sites(meta_unet(model_path))

    def trained(mask: tuple[int, ...]) -> set[str]:
        unet = meta_unet(model_path)
        method.apply(unet, mask)
        return {_plain_name(n) for n, p in unet.named_parameters() if p.requires_grad}

    always, governed = trained((0,) * len(sites)), {}
    for i in range(len(sites)):
        for name in trained(tuple(int(j == i) for j in range(len(sites)))) - always:
            governed[name] = i
    return governed


class Supernet:
    """A U-Net adapted with every site on, whose governed parameters a mask sets to trained or initial values."""

    def __init__(self, unet: nn.Module, method: PeftMethod, governed: dict[str, int], n_sites: int, base: nn.Module):
        self.unet, self.method, self.n_sites, self.base = unet, method, n_sites, base
        self.site_of = {
            name: governed[_plain_name(name)]
            for name, p in unet.named_parameters()
            if p.requires_grad and _plain_name(name) in governed
        }
        self.initial = {name: p.detach().clone() for name, p in unet.named_parameters() if name in self.site_of}

    def off_parameters(self, mask: Sequence[int]) -> list[tuple[str, nn.Parameter]]:
        return [
            (name, p)
            for name, p in self.unet.named_parameters()
            if name in self.site_of and not mask[self.site_of[name]]
        ]

    def masked_copy(self, mask: Sequence[int]) -> nn.Module:
        """The model ``mask`` describes: the base U-Net adapted with ``mask`` (stand-alone, as a trial's), its
        parameters at the supernet's values. (A copy of the supernet itself could not be merged for sampling.)"""
        values = {_plain_name(name): p for name, p in self.unet.named_parameters() if p.requires_grad}
        unet = copy.deepcopy(self.base).to(next(self.unet.parameters()).device)
        self.method.apply(unet, mask)
        with torch.no_grad():
            for name, p in unet.named_parameters():
                if p.requires_grad:
                    p.copy_(values[_plain_name(name)])
        return unet

    def step_mask(self, step: int, seed: int) -> tuple[int, ...]:
        if step % SANDWICH_EVERY == 0:
            return (1 - (step // SANDWICH_EVERY) % 2,) * self.n_sites
        draw = random.Random(f"supernet-{seed}-{step}")  # per step: the same masks whatever ran before
        return tuple(int(draw.random() < ON_PROBABILITY) for _ in range(self.n_sites))

    @contextmanager
    def step_context(self, step: int, seed: int) -> Iterator[None]:
        """The engine's step: off-sites act as the base model for the forward, then get their values back, ungraded."""
        off = self.off_parameters(self.step_mask(step, seed))
        trained = [p.detach().clone() for _, p in off]
        with torch.no_grad():
            for name, p in off:
                p.copy_(self.initial[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for (_, p), value in zip(off, trained):
                    p.copy_(value)
                    p.grad = None  # no gradient: AdamW neither steps nor decays it


def _adapted(job: RunConfig, inner: InnerLoop, space: SearchSpace) -> tuple[PeftMethod, dict[str, int], int]:
    """The space's method (with the inner loop's cache), its governed parameters and its number of sites;
    the inner loop's pipeline gets a fresh copy of the base U-Net."""
    ((name, sites),) = space.sites.items()
    governed = governed_parameters(get_method(name, job.train.plugin_options), job.model.pretrained_model_name_or_path)
    inner.accelerator = make_accelerator(job.model)
    inner.pipe.unet = copy.deepcopy(inner.base_unet).to(inner.accelerator.device)
    return get_method(name, job.train.plugin_options, inner.method_caches.setdefault(name, {})), governed, len(sites)


def train_supernet(
    job: RunConfig, inner: InnerLoop, space: SearchSpace, learning_rate: float, steps: int
) -> tuple[Supernet, dict]:
    """Train the supernet on the inner loop's proxy set; return it and its compute."""
    method, governed, n_sites = _adapted(job, inner, space)
    train = dataclasses.replace(
        job.train, method=method.name, mask=None, learning_rate=learning_rate, max_train_steps=steps
    )
    pipe, made = inner.pipe, []

    def step_context(step: int):
        if not made:  # the method adapts the U-Net inside fine_tune: its initial values are there at the first step
            made.append(Supernet(pipe.unet, method, governed, n_sites, inner.base_unet))
        return made[0].step_context(step, job.search.search_seed)

    result = fine_tune(
        pipe,
        method,
        (1,) * n_sites,
        inner.training_set,
        train,
        inner.accelerator,
        progress=False,
        step_context=step_context,
    )
    inner.accelerator.free_memory()
    if not made:  # nothing to train: no step ran
        made.append(Supernet(pipe.unet, method, governed, n_sites, inner.base_unet))
    return made[0], {"steps": result.steps, "images_sampled": 0, "seconds": round(result.seconds, 2)}


def load_supernet(job: RunConfig, inner: InnerLoop, space: SearchSpace, weights: Path) -> Supernet:
    method, governed, n_sites = _adapted(job, inner, space)
    method.apply(inner.pipe.unet, (1,) * n_sites)
    supernet = Supernet(inner.pipe.unet, method, governed, n_sites, inner.base_unet)
    method.load_trained_state(inner.pipe.unet, load_file(weights, device=str(inner.accelerator.device)))
    return supernet


def images_per_measurement(objectives: Sequence[Objective], settings: EvalConfig, validation: int, dmem: int) -> int:
    """Images that measuring one model generates, from ``validation`` FID prompts and ``dmem`` D_mem prompts
    (d_mem in training-noise mode generates none)."""
    needs = {o.needs for o in objectives}
    count = validation if "samples" in needs else 0
    if "dmem" in needs and settings.dmem_mode == "trajectory":
        count += dmem * settings.dmem_samples_per_prompt
    if "extraction" in needs:
        count += dmem * settings.extraction_samples
    return count


class OneShotScorer:
    """A mask's objectives from the supernet at the one-shot fidelity; each mask once."""

    def __init__(
        self,
        job: RunConfig,
        inner: InnerLoop,
        supernet: Supernet,
        objectives: Sequence[Objective],
        training: list[Example],
        work_dir: Path,
    ):
        options, data = oneshot_options(job.search), inner.data
        settings = dataclasses.replace(
            inner.settings,
            fid_samples=options.oneshot_fid_samples,
            num_inference_steps=options.oneshot_inference_steps or inner.settings.num_inference_steps,
        )
        self.metrics = TrialMetrics(
            objectives,
            validation=data.splits["validation"],
            dmem=data.dmem[: options.oneshot_dmem_prompts or None],
            training=training,
            resolution=inner.resolution,
            extractor=inner.metrics.extractor,
            settings=settings,
            class_of=inner.metrics.class_of,
            clip_model=job.features.clip_model,
        )
        self.job, self.inner, self.supernet, self.objectives, self.work_dir = (
            job,
            inner,
            supernet,
            list(objectives),
            work_dir,
        )
        self.scores: dict[str, dict[str, float]] = {}
        self.seconds = 0.0

    def __call__(self, mask: Sequence[int]) -> list[float]:
        key = "".join(map(str, mask))
        if key not in self.scores:
            start, pipe = time.perf_counter(), self.inner.pipe
            pipe.unet = self.supernet.masked_copy(mask)
            merge_for_sampling(pipe, self.supernet.method, self.job.model.mixed_precision)
            self.scores[key] = self.metrics(pipe, self.work_dir)[0]
            pipe.unet = self.supernet.unet
            self.seconds += time.perf_counter() - start
        values = self.scores[key]
        return [values.get(o.name, math.nan) for o in self.objectives]

    def compute(self) -> dict:
        s, m = self.metrics.settings, self.metrics
        per_mask = images_per_measurement(self.objectives, s, len(m.validation), len(m.dmem))
        return {
            "masks": len(self.scores),
            "steps": 0,
            "images_sampled": per_mask * len(self.scores),
            "images_per_mask": per_mask,
            "fid_samples": len(self.metrics.validation),
            "dmem_prompts": len(self.metrics.dmem),
            "inference_steps": s.num_inference_steps,
            "seconds": round(self.seconds, 2),
        }


def score_masks(scorer: OneShotScorer, space: SearchSpace, cfg: SearchConfig) -> None:
    """Every mask of a space of at most ``--oneshot_masks``, else as many distinct ones as --sampler proposes with the
    supernet as the objective."""
    (sites,) = space.sites.values()
    count = oneshot_options(cfg).oneshot_masks
    if 2 ** len(sites) <= count:
        for mask in itertools.product((0, 1), repeat=len(sites)):
            scorer(mask)
        return
    study = optuna.create_study(
        directions=[o.direction for o in scorer.objectives], sampler=make_sampler(cfg, cfg.search_seed)
    )
    for _ in range(DUPLICATES_PER_TRIAL * count):
        if len(scorer.scores) >= count:
            return
        study.optimize(lambda trial: scorer(tuple(trial.suggest_int(site, 0, 1) for site in sites)), n_trials=1)


def oriented(metrics: dict[str, float], objectives: Sequence[Objective]) -> np.ndarray:
    return np.array([o.sign * metrics.get(o.name, math.nan) for o in objectives], dtype=float)


def masks_to_confirm(points: np.ndarray, count: int, pick_rule: str) -> list[int]:
    """Rows (objectives oriented lower-better, all finite) of the one-shot front to train stand-alone: the one the pick
    rule chooses, then one by one those adding the most hypervolume to the chosen (normalised), up to ``count``."""
    front = [int(i) for i in np.flatnonzero(pareto_mask(points))]
    chosen = [pick(points, pick_rule)]
    scaled, reference = normalise(points), np.full(points.shape[1], REFERENCE)
    while len(chosen) < min(count, len(front)):
        chosen.append(
            max((i for i in front if i not in chosen), key=lambda i: hypervolume(scaled[chosen + [i]], reference))
        )
    return chosen


def kendall_taus(pairs: Sequence[tuple[dict, dict]], objectives: Sequence[Objective]) -> dict[str, float | None]:
    """Kendall's tau between one-shot and stand-alone values of each objective, over the confirmed masks."""
    taus = {}
    for o in objectives:
        xs = [(a[o.name], b[o.name]) for a, b in pairs if o.name in a and o.name in b]
        tau = kendalltau(*zip(*xs)).statistic if len(xs) >= 2 else math.nan
        taus[o.name] = None if math.isnan(tau) else round(float(tau), 4)
    return taus


def run_oneshot(
    job: RunConfig,
    *,
    space: SearchSpace,
    study: optuna.Study,
    objectives: Sequence[Objective],
    data: PreparedData,
    training: list[Example],
    setup: dict,
    load_inner: Callable[[], InnerLoop],
    output_dir: Path,
    trials_dir: Path,
    log: Callable[[str], None] = lambda message: None,
) -> dict:
    """Train the supernet and score masks from it (once: later runs read their records), train the masks to confirm
    as trials of ``study``, write oneshot.csv; return the summary pareto.json records."""
    cfg, options, work = job.search, oneshot_options(job.search), output_dir / ONESHOT_DIR
    learning_rate = supernet_learning_rate(space)
    trial_steps = cfg.trial_train_steps or job.train.max_train_steps
    steps = options.supernet_train_steps or trial_steps
    supernet_setup = {
        **setup,
        "supernet_train_steps": steps,
        "supernet_learning_rate": learning_rate,
        "search_seed": cfg.search_seed,
    }
    recorded = as_dict(cfg)  # flat, every plug-in's options among them (at their defaults), as run.json records them
    # The sampler's own options (NSGA-II's population ...) decide which masks it proposes for scoring, as its name does.
    sampler_options = [f.name for f in dataclasses.fields(SAMPLERS.get(cfg.sampler).config_class)]
    scoring_setup = {**supernet_setup, **{f"search.{k}": recorded[k] for k in (*SCORING_OPTIONS, *sampler_options)}}
    # Scores recorded before an option was part of this setup were made at its default: still theirs.
    defaults = {f"search.{k}": v for k, v in as_dict(SearchConfig()).items()}
    scores = _recorded(work / SCORES_JSON, scoring_setup, defaults)
    if scores is None:
        inner = load_inner()
        record = _recorded(work / SUPERNET_JSON, supernet_setup)
        if record is not None and (work / SUPERNET_WEIGHTS).is_file():
            supernet, trained = load_supernet(job, inner, space, work / SUPERNET_WEIGHTS), record["compute"]
        else:
            log(f"oneshot: training the supernet ({steps} steps, learning rate {learning_rate:.3g})")
            supernet, trained = train_supernet(job, inner, space, learning_rate, steps)
            with atomic_path(work / SUPERNET_WEIGHTS) as tmp:
                save_file(supernet.method.trained_state(supernet.unet), str(tmp))
            write_json(work / SUPERNET_JSON, {"setup": supernet_setup, "compute": trained})
        scorer = OneShotScorer(job, inner, supernet, objectives, training, work)
        score_masks(scorer, space, cfg)
        scores = {"setup": scoring_setup, "supernet": trained, "scoring": scorer.compute(), "scores": scorer.scores}
        write_json(work / SCORES_JSON, scores)
    masks = [m for m in sorted(scores["scores"]) if np.isfinite(oriented(scores["scores"][m], objectives)).all()]
    if not masks:
        raise UserError(
            "no mask could be scored from the supernet (every one has a non-finite objective); see "
            f"{work / SCORES_JSON}"
        )
    points = np.stack([oriented(scores["scores"][m], objectives) for m in masks])
    confirm = [masks[i] for i in masks_to_confirm(points, options.oneshot_confirm, cfg.pick_rule)]
    (sites,) = space.sites.values()
    for mask in confirm:
        study.enqueue_trial({site: int(bit) for site, bit in zip(sites, mask)}, skip_if_exists=True)
    if finished_count(study) < len(confirm):
        objective = MaskObjective(
            load_inner(),
            SearchSpace(space.sites, learning_rate),
            objectives,
            n_trials=len(confirm),
            trials_dir=trials_dir,
            log=log,
        )
        run_trials(study, objective, n_trials=len(confirm), catch=(TrialFailed,), poll_seconds=cfg.heartbeat_interval)
    trials = {
        r["mask"]: r
        for r in (trial_row(study, t) for t in study.get_trials(deepcopy=False))
        if r["state"] in ("complete", "failed")
    }
    front = {masks[i] for i in np.flatnonzero(pareto_mask(points))}
    _write_csv(scores["scores"], front, trials, objectives, output_dir / ONESHOT_CSV)
    return _summary(job, data, objectives, scores, trials, confirm, learning_rate, trial_steps)


STRATEGIES.register(Strategy(ONESHOT, run_oneshot, OneShotConfig))


SCORING_OPTIONS = ("oneshot_masks", "oneshot_fid_samples", "oneshot_dmem_prompts", "oneshot_inference_steps", "sampler")


def _recorded(path: Path, setup: dict, defaults: dict | None = None) -> dict | None:
    """The record at ``path`` when it was made with ``setup`` (``defaults``: see ``config.changed_option``); None
    when there is none."""
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    key = changed_option(record["setup"], json.loads(json.dumps(setup, default=str)), defaults or {})
    if key is not None:
        raise UserError(
            f"{path} was made with another {key}: give another --output_dir, or the options it was made with"
        )
    return record


def _summary(job, data, objectives, scores, trials, confirm, learning_rate, trial_steps) -> dict:
    confirmed = [trials[m] for m in confirm if m in trials]
    settings = trial_settings(job)
    per_trial = images_per_measurement(
        objectives, settings, min(len(data.splits["validation"]), settings.fid_samples or 10**9), len(data.dmem)
    )
    confirmation = {
        "trials": len(confirmed),
        "steps": trial_steps * len(confirmed),
        "images_sampled": per_trial * len(confirmed),
        "inference_steps": settings.num_inference_steps,
        "seconds": round(sum(r["seconds"] or 0 for r in confirmed), 2),
    }
    phases = {
        "supernet": {**scores["supernet"], "learning_rate": learning_rate},
        "scoring": scores["scoring"],
        "confirmation": confirmation,
    }
    pairs = [(scores["scores"][r["mask"]], r["metrics"]) for r in confirmed if r["state"] == "complete"]
    return {
        "strategy": ONESHOT,
        **phases,
        "total": {k: round(sum(p[k] for p in phases.values()), 2) for k in ("steps", "images_sampled", "seconds")},
        "confirmed": confirm,
        "kendall_tau": kendall_taus(pairs, objectives),
    }


def _write_csv(
    scores: dict, front: set[str], trials: dict[str, dict], objectives: Sequence[Objective], path: Path
) -> None:
    """One line per scored mask: its one-shot objectives and, where it was trained stand-alone, the trial's."""
    names = [o.name for o in objectives]
    columns = ["mask", *(f"oneshot_{n}" for n in names), "oneshot_pareto", "confirmed", "trial", "state", *names]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    for mask in sorted(scores):
        trial = trials.get(mask, {})
        writer.writerow(
            {
                "mask": mask,
                **{f"oneshot_{n}": scores[mask].get(n) for n in names},
                "oneshot_pareto": mask in front,
                "confirmed": mask in trials,
                "trial": trial.get("number"),
                "state": trial.get("state"),
                **{n: trial.get("metrics", {}).get(n) for n in names},
            }
        )
    write_text(path, text.getvalue())
