"""The inner loop (Algorithm 1, lines 4-9) and the objective Optuna calls with it.

``InnerLoop`` fine-tunes the base model with one proposal (method, mask, learning rate) on the
search's training set and measures the objectives; it loads the model and encodes the data once,
and each trial starts from a fresh copy of the base U-Net. A trial that fails (diverged, out of
memory, an exception) is recorded with its reason and the search goes on; bad input (UserError)
stops the search, since every trial would fail alike.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import optuna
import torch

from memcontrol.data.imagefolder import Example
from memcontrol.data.prepare import PreparedData, is_builtin
from memcontrol.errors import UserError
from memcontrol.io import write_json
from memcontrol.metrics.evaluate import EvalConfig
from memcontrol.metrics.setup import caption_classes, feature_extractor, resolve_sampling
from memcontrol.peft import get_method
from memcontrol.runtime import load_for_training, make_accelerator, native_resolution
from memcontrol.sampling.samples import SAMPLE_PROMPTS, sample_grid
from memcontrol.search.objectives import Objective, TrialMetrics
from memcontrol.search.outer_loop import (
    DUPLICATE_OF,
    FAIL_REASON,
    REPLACED_DUPLICATE_OF,
    SPACE_EXHAUSTED,
    is_finished,
    is_surplus,
)
from memcontrol.search.run_config import RunConfig
from memcontrol.search.space import Proposal, SearchSpace
from memcontrol.train.engine import NonFiniteLoss, fine_tune
from memcontrol.train.run import build_training_set, merge_for_sampling, train_summary

TRIAL_FILE = "trial.json"
WORKER = f"{socket.gethostname()}:{os.getpid()}"


class TrialFailed(Exception):
    """A trial produced no objectives; its reason is recorded and the search goes on."""


def trial_settings(job: RunConfig) -> EvalConfig:
    """The evaluation settings of a trial: sampling resolved from the base model, and the search's FID sample count."""
    settings = resolve_sampling(job.evaluation, job.model.pretrained_model_name_or_path)
    return dataclasses.replace(settings, fid_samples=job.search.trial_fid_samples or settings.fid_samples)


def failure_reason(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, torch.OutOfMemoryError):
        return "out of memory"
    if isinstance(error, NonFiniteLoss):
        return f"diverged: {text}"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class InnerLoop:
    """Train one proposal on the search's training set and measure it; records land in the trial's folder."""

    def __init__(self, job: RunConfig, data: PreparedData, training: list[Example], objectives: Sequence[Objective]):
        self.job, self.data = job, data
        self.accelerator = make_accelerator(job.model)
        self.pipe = load_for_training(job.model, self.accelerator)
        # Every trial starts from the base U-Net; the copy waits off the accelerator, leaving its memory to training.
        self.base_unet = copy.deepcopy(self.pipe.unet).to("cpu")
        self.method_caches: dict[str, dict] = {}  # per method, what it computes once for all trials (SV-DIFF's SVDs)
        self.resolution = job.data.resolution or native_resolution(self.pipe)
        self.training_set = build_training_set(
            self.pipe, training, self.resolution, job.data.dataloader_num_workers, progress=False
        )
        self.settings = trial_settings(job)
        builtin = is_builtin(job.data.train_data_dir)
        extractor = feature_extractor(job.features, builtin, self.accelerator.device)
        self.metrics = TrialMetrics(
            objectives,
            validation=data.splits["validation"],
            dmem=data.dmem,
            training=training,
            resolution=self.resolution,
            extractor=extractor,
            settings=self.settings,
            class_of=caption_classes(job.features, builtin, extractor),
            clip_model=job.features.clip_model,
        )

    def __call__(self, proposal: Proposal, output_dir: Path, record: dict) -> dict:
        """``record`` completed with the outcome (state ``complete`` or ``failed``), and written to ``output_dir``."""
        start = time.perf_counter()
        try:
            record = {**record, "state": "complete", **self._train_and_measure(proposal, output_dir)}
        except UserError:
            raise
        except Exception as e:  # the trial's own failure: the search goes on
            record = {**record, "state": "failed", FAIL_REASON: failure_reason(e)}
        finally:
            self.accelerator.free_memory()  # accelerate keeps each trial's prepared model and optimizer otherwise
        record["seconds"] = round(time.perf_counter() - start, 2)
        write_json(output_dir / TRIAL_FILE, record)
        return record

    def _train_and_measure(self, proposal: Proposal, output_dir: Path) -> dict:
        job, pipe = self.job, self.pipe
        # A fresh accelerator per trial: its fp16 GradScaler would carry one trial's loss scale into the next,
        # making a proposal's result depend on the trials that ran before it on this worker.
        self.accelerator = make_accelerator(job.model)
        pipe.unet = copy.deepcopy(self.base_unet).to(self.accelerator.device)
        method = get_method(
            proposal.method, job.train.plugin_options, self.method_caches.setdefault(proposal.method, {})
        )
        mask = method.check_mask(pipe.unet, proposal.mask)
        train = dataclasses.replace(
            job.train,
            method=proposal.method,
            mask=proposal.mask_text,
            learning_rate=proposal.learning_rate,
            max_train_steps=job.search.trial_train_steps or job.train.max_train_steps,
        )
        result = fine_tune(pipe, method, mask, self.training_set, train, self.accelerator, progress=False)
        merge_for_sampling(pipe, method, job.model.mixed_precision)
        metrics, shown = self.metrics(pipe, output_dir, keep=SAMPLE_PROMPTS)
        bad = [name for name, value in metrics.items() if not math.isfinite(value)]
        if bad:
            raise ArithmeticError(f"{bad[0]} is {metrics[bad[0]]}")
        # The grid shows the metrics' own samples where they made them: the same images, not generated twice.
        s = self.settings
        sampling = {"guidance_scale": s.guidance_scale, "num_inference_steps": s.num_inference_steps}
        batch_size = job.sample.sample_batch_size
        sample_grid(pipe, self.data, self.resolution, sampling, batch_size, s.seed, output_dir, False, made=shown)
        return {"metrics": metrics, "trainable_fraction": result.trainable_fraction, "train": train_summary(result)}


def _tried(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial's proposal counts as tried: finished or under way."""
    return is_finished(trial) or trial.state == optuna.trial.TrialState.RUNNING


def _earlier_twin(study: optuna.Study, number: int, record: dict) -> int | None:
    """An earlier trial with the same proposal, finished or under way."""
    for t in study.get_trials(deepcopy=False):
        same = all(t.user_attrs.get(key) == record[key] for key in ("method", "mask", "learning_rate"))
        if same and t.number < number and _tried(t):
            return t.number
    return None


class MaskObjective:
    """What Optuna calls: propose, run the inner loop, return the objectives or record the failure."""

    def __init__(
        self,
        inner: InnerLoop,
        space: SearchSpace,
        objectives: Sequence[Objective],
        *,
        n_trials: int,
        trials_dir: Path,
        log: Callable[[str], None] = lambda message: None,
        replace_seed: int | None = None,
    ):
        """``replace_seed``: a repeated proposal is skipped and, unless None, an untried mask drawn with
        ``replace_seed`` + the trial's number is queued in its stead."""
        self.inner, self.space, self.objectives = inner, space, list(objectives)
        self.n_trials, self.trials_dir, self.log = n_trials, trials_dir, log
        self.replace_seed = replace_seed

    def __call__(self, trial: optuna.Trial) -> list[float]:
        if is_surplus(trial.study, trial.number, self.n_trials):
            raise optuna.TrialPruned("the study already holds its trials")
        proposal = self.space.suggest(trial)
        record = {
            "study": trial.study.study_name,
            "number": trial.number,
            "method": proposal.method,
            "mask": proposal.mask_text,
            "learning_rate": proposal.learning_rate,
            "worker": WORKER,
        }
        for key in ("method", "mask", "learning_rate", "worker"):
            trial.set_user_attr(key, record[key])
        twin = _earlier_twin(trial.study, trial.number, record)
        if twin is not None:  # the inner loop is seeded: it would only repeat that trial (uncounted)
            trial.set_user_attr(DUPLICATE_OF, twin)
            if self.replace_seed is not None:
                self._queue_untried(trial, proposal)
            raise optuna.TrialPruned(f"the same proposal as trial {twin}")
        trial_dir = self.trials_dir / trial.study.study_name / f"{trial.number:04d}"
        write_json(trial_dir / TRIAL_FILE, {**record, "state": "running"})
        record = self.inner(proposal, trial_dir, record)
        for key in ("metrics", "trainable_fraction", "seconds"):
            if key in record:
                trial.set_user_attr(key, record[key])
        if record["state"] == "failed":
            trial.set_user_attr(FAIL_REASON, record[FAIL_REASON])
            self.log(f"trial {trial.number} ({proposal.method} {proposal.mask_text}) failed: {record[FAIL_REASON]}")
            raise TrialFailed(record[FAIL_REASON])
        return [record["metrics"][o.name] for o in self.objectives]

    def _queue_untried(self, trial: optuna.Trial, proposal: Proposal) -> None:
        """Queue an untried mask in the stead of a repeated proposal: a skipped trial leaves a model-based sampler
        (GP, TPE) as it was, so it would propose the same again and again.

        Drawn with a seed per trial number, so that a resumed search or another worker draws alike.
        """
        study = trial.study
        tried = {
            (t.user_attrs["method"], t.user_attrs["mask"])
            for t in study.get_trials(deepcopy=False)
            if "mask" in t.user_attrs and _tried(t)
        }
        untried = self.space.untried(tried, random.Random(self.replace_seed + trial.number))
        if untried is None:
            if not isinstance(self.space.learning_rate, tuple):  # a searched rate may still bring a new proposal
                trial.set_user_attr(SPACE_EXHAUSTED, True)
            return
        params = self.space.params(*untried, proposal.learning_rate)
        study.enqueue_trial(params, user_attrs={REPLACED_DUPLICATE_OF: trial.number})
