"""Stage 1 of MemControl: the bi-level search for PEFT masks that trade memorization against quality.

The outer loop (Optuna, multi-objective) proposes a mask; the inner loop fine-tunes with it on a
small proxy training set and measures d_mem on D_mem and FID on validation prompts; the Pareto
front of the trials and one mask picked on it are the result.
"""

from memcontrol.search import oneshot  # noqa: F401  (registers --strategy oneshot)
from memcontrol.search.objectives import OBJECTIVES, Objective, get_objectives
from memcontrol.search.outer_loop import (
    CROSSOVERS,
    SAMPLERS,
    STRATEGIES,
    Sampler,
    SamplerConfig,
    Strategy,
    StrategyConfig,
)
from memcontrol.search.pick import PICK_RULES, hypervolume, pareto_mask, pick
from memcontrol.search.run import run_search
from memcontrol.search.run_config import RunConfig
from memcontrol.search.space import Proposal, SearchSpace, search_spaces

__all__ = [
    "CROSSOVERS",
    "OBJECTIVES",
    "PICK_RULES",
    "SAMPLERS",
    "STRATEGIES",
    "RunConfig",
    "Objective",
    "Proposal",
    "Sampler",
    "SamplerConfig",
    "SearchSpace",
    "Strategy",
    "StrategyConfig",
    "get_objectives",
    "hypervolume",
    "pareto_mask",
    "pick",
    "run_search",
    "search_spaces",
]
