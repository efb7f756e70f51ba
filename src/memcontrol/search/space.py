"""What the outer loop searches: one 0/1 parameter per mask site of a method, optionally the learning rate.

A bit's parameter is named after its site (a module path of the U-Net), so that with several methods
in one study (``--method all --global_search categorical``) a bit means the same block whichever
method holds it, and NSGA-II's crossover mixes like with like.
"""

from __future__ import annotations

import random
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

    @property
    def size(self) -> int:
        """How many (method, mask) pairs the space holds."""
        return sum(2 ** len(paths) for paths in self.sites.values())

    def untried(self, tried: set[tuple[str, str]], rng: random.Random) -> tuple[str, Mask] | None:
        """A (method, mask) pair not in ``tried`` (method, mask text), drawn uniformly; None when all were tried.

        Drawn by its index among the untried ones, so that a space of 2^40 masks is never listed.
        """
        taken = sorted(self._index(method, mask) for method, mask in tried if self._holds(method, mask))
        if len(taken) >= self.size:
            return None
        index = rng.randrange(self.size - len(taken))
        for t in taken:  # the index-th untried pair: step over each tried one at or before it
            if t > index:
                break
            index += 1
        for method, paths in self.sites.items():
            if index < 2 ** len(paths):
                return method, tuple(int(bit) for bit in format(index, f"0{len(paths)}b")) if paths else ()
            index -= 2 ** len(paths)
        raise AssertionError("unreachable: index < size")

    def params(self, method: str, mask: Mask, learning_rate: float) -> dict[str, float | int | str]:
        """The Optuna parameters that make ``suggest`` propose this (for ``study.enqueue_trial``)."""
        chosen = {"method": method} if len(self.sites) > 1 else {}
        searched = {"learning_rate": learning_rate} if isinstance(self.learning_rate, tuple) else {}
        return {**chosen, **dict(zip(self.sites[method], mask)), **searched}

    def _holds(self, method: str, mask_text: str) -> bool:
        return method in self.sites and len(mask_text) == len(self.sites[method])

    def _index(self, method: str, mask_text: str) -> int:
        before = list(self.sites)[: list(self.sites).index(method)]
        return sum(2 ** len(self.sites[m]) for m in before) + int(mask_text or "0", 2)

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
