"""Every option of `memcontrol search`, `memcontrol run` and (with the grid's) `memcontrol benchmark`, and which of
them a recorded result depends on."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass

from memcontrol.config import (
    DataConfig,
    ModelConfig,
    SampleConfig,
    SearchConfig,
    TrainConfig,
    as_dict,
    build,
    load_yaml,
)
from memcontrol.data.prepare import is_builtin
from memcontrol.metrics.evaluate import EvalConfig
from memcontrol.metrics.setup import FeatureConfig

CPU_PRESET = "cpu"

# Options that change where or how fast a job runs, never its results.
OPERATIONAL = {
    "model.device",
    "data.dataloader_num_workers",
    "sample.sample_batch_size",
    "evaluation.batch_size",
    "evaluation.feature_batch_size",
    "search.storage",
    "search.heartbeat_interval",
    "search.grace_period",
    "search.max_retry",
    "train.checkpointing_steps",
    "train.checkpoints_total_limit",
    "train.resume_from_checkpoint",
}
# Options that steer the search but not what one trial yields: a study may go on under other values.
STEERING = {
    "search.n_trials",
    "search.sampler",
    "search.population_size",
    "search.crossover",
    "search.crossover_prob",
    "search.mutation_prob",
    "search.startup_trials",
    "search.search_seed",
    "search.pick_rule",
    "search.baselines",
    "search.study_name",
    "search.strategy",
    "search.supernet_train_steps",
    "search.oneshot_masks",
    "search.oneshot_fid_samples",
    "search.oneshot_dmem_prompts",
    "search.oneshot_inference_steps",
    "search.oneshot_confirm",
}


@dataclass(frozen=True)
class RunConfig:
    """Every option of `memcontrol search` and `memcontrol run`."""

    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    sample: SampleConfig
    search: SearchConfig
    features: FeatureConfig
    evaluation: EvalConfig

    @staticmethod
    def classes() -> tuple[type, ...]:
        """The config classes, in field order (for ``config.build``)."""
        hints = typing.get_type_hints(RunConfig)
        return tuple(hints[f.name] for f in dataclasses.fields(RunConfig))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunConfig:
        """From the flags and ``--config``; on built-in data without ``--config``, over the CPU preset (sized for a
        CPU)."""
        builtin = is_builtin(getattr(args, "train_data_dir", None))
        defaults = load_yaml(CPU_PRESET) if builtin and not getattr(args, "config", None) else None
        return cls(*build(cls.classes(), args, defaults=defaults))

    def options(self) -> dict:
        """Every option as ``section.name: value``."""
        return {f"{f.name}.{k}": v for f in dataclasses.fields(self) for k, v in as_dict(getattr(self, f.name)).items()}

    @classmethod
    def with_defaults(cls) -> RunConfig:
        """Every option at its default (no preset): what a result recorded before an option existed was made with."""
        return cls(*(config() for config in cls.classes()))
