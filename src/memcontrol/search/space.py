"""What the outer loop searches: one 0/1 parameter per mask site of a method, optionally the learning rate.

A bit's parameter is named after its site (a module path of the U-Net), so that with several methods
in one study (``--method all --global_search categorical``) a bit means the same block whichever
method holds it, and NSGA-II's crossover mixes like with like.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from torch import nn

from memcontrol.config import SearchConfig, TrainConfig
from memcontrol.errors import UserError
from memcontrol.peft import Mask, get_method

ALL_METHODS = "all"


@dataclass(frozen=True)
class Proposal:
    method: str
    mask: Mask
    learning_rate: float

    @property
    def mask_text(self) -> str:
        return "".join(map(str, self.mask))


@dataclass(frozen=True)
class SearchSpace:
    sites: dict[str, tuple[str, ...]]  # method -> its mask sites; several methods make the method a choice
    learning_rate: float | tuple[float, float]  # fixed, or a (low, high) range searched on a log scale

    @property
    def name(self) -> str:
        return next(iter(self.sites)) if len(self.sites) == 1 else ALL_METHODS

    def suggest(self, trial: optuna.Trial) -> Proposal:
        methods = list(self.sites)
        method = trial.suggest_categorical("method", methods) if len(methods) > 1 else methods[0]
        mask = tuple(trial.suggest_int(site, 0, 1) for site in self.sites[method])
        lr = self.learning_rate
        if isinstance(lr, tuple):
            lr = trial.suggest_float("learning_rate", *lr, log=True)
        return Proposal(method, mask, lr)


def search_spaces(train: TrainConfig, search: SearchConfig, unet: nn.Module) -> list[SearchSpace]:
    """One space per study: one method, or with ``--method all`` one per method (union) or one choosing it
    (categorical).

    ``unet`` may be on the meta device: only its module paths are read.
    """
    methods = _methods(train, search)
    built = {m: get_method(m, train.plugin_options) for m in methods}
    sites = {m: tuple(method.sites(unet)) for m, method in built.items()}
    lr = _learning_rate(train, search)
    for method, paths in sites.items():
        if not paths and not isinstance(lr, tuple):
            raise UserError(
                f"--method {method}: has no mask sites in the {built[method].options.layout} layout; nothing to search"
            )
    if train.method == ALL_METHODS and search.global_search == "union":
        return [SearchSpace({m: sites[m]}, lr) for m in methods]
    return [SearchSpace(sites, lr)]


def _methods(train: TrainConfig, search: SearchConfig) -> list[str]:
    return search.global_methods if train.method == ALL_METHODS else [train.method]


def _learning_rate(train: TrainConfig, search: SearchConfig) -> float | tuple[float, float]:
    if not search.search_learning_rate:
        return train.learning_rate
    if not 0 < search.learning_rate_min <= search.learning_rate_max:
        raise UserError(
            "--learning_rate_min/--learning_rate_max: expected 0 < min <= max,"
            f" got {search.learning_rate_min} and {search.learning_rate_max}"
        )
    return search.learning_rate_min, search.learning_rate_max
