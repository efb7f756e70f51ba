"""The interface every fine-tuning method implements, its options, and the registry that finds methods by name.

As in huggingface/peft, each method lives in its own module and registers itself, so adding a
method never edits a central if/elif.

A mask has one bit per *site*, a module path of the U-Net. Two layouts place the sites:

- ``blocks`` (default): one site per Transformer2DModel block. A bit set to 1 makes every parameter
  the method has inside that block trainable, a 0 freezes them. What the method has outside every
  site (resnets, norms, conv_in/out, time embedding) trains only with ``train_outside_sites``, so
  that the mask really controls what it says.
- ``paper``: the authors' code exactly (github.com/Raman1121/Diffusion_Memorization_HPO), so that
  results compare with theirs. Each site is the ``transformer_blocks`` of a block, a bit governs only
  the parameters the authors freeze by name there (``paper_masked``), and everything else the method
  has always trains. Methods their code never masks take no bits.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils import parametrize

from memcontrol.config import check_fields, opt
from memcontrol.errors import UserError
from memcontrol.peft.sites import transformer_sites
from memcontrol.registry import Registry

Mask = tuple[int, ...]
# Whether the method's parameter (or the layer it adapts) at this module path is to be trained.
Selector = Callable[[str], bool]


# Where a mask's bits act: one bit per Transformer2DModel block, or the authors' layout (see above).
LAYOUTS = ("blocks", "paper")


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """The options every method has, as they place its mask's sites; a method's own options extend these."""

    layout: str = opt(
        "blocks",
        "sites of the mask: blocks (one per Transformer2DModel block) or paper (the authors' 13/16-bit masks)",
        choices=LAYOUTS,
    )
    train_outside_sites: bool = opt(
        False,
        "blocks layout: also train what the method has outside every site (resnets, norms, conv_in/out); "
        "`full` always does",
    )

    def __post_init__(self):
        check_fields(self)


class PeftMethod(ABC):
    """Decides which parameters of a U-Net fine-tuning may change, site by site (the mask)."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[MethodConfig]] = MethodConfig  # its options: flags and YAML keys
    # Whether the benchmark's grid has it by default (`memcontrol benchmark --methods`).
    in_default_grid: ClassVar[bool] = True
    # Whether adapting shows progress where it is long (SV-DIFF's SVDs: minutes on SD v1.5 with every site on).
    progress: bool = True

    def __init__(self, options: MethodConfig | None = None, cache: dict | None = None):
        self.options = options or self.config_class()
        # What a method may keep between the U-Nets it adapts when they are copies of one base, as a search's
        # trials are (SV-DIFF: each weight's SVD). None: nothing is kept, as a single run needs nothing twice.
        self.cache = cache

    def sites(self, unet: nn.Module) -> list[str]:
        """Module paths the mask's bits switch, in order."""
        return self.paper_sites(unet) if self.options.layout == "paper" else transformer_sites(unet)

    def paper_sites(self, unet: nn.Module) -> list[str]:
        """The sites of the authors' masks for this method; none where their code takes no mask."""
        return []

    def paper_masked(self, path: str) -> bool:
        """Paper layout: whether a site's bit governs the method's parameter at ``path`` (else it always trains)."""
        return True

    def trains_outside(self) -> bool:
        """Whether the method's parameters outside every site train."""
        return self.options.layout == "paper" or self.options.train_outside_sites

    def check_mask(self, unet: nn.Module, mask: Sequence[int] | None) -> Mask:
        """The mask as a tuple of 0/1; ``None`` means every site on."""
        sites = self.sites(unet)
        if mask is None:
            return (1,) * len(sites)
        mask = tuple(int(b) for b in mask)
        if len(mask) != len(sites) or any(b not in (0, 1) for b in mask):
            raise UserError(
                f"--mask: method {self.name!r} ({self.options.layout} layout) expects {len(sites)} bits of 0/1"
                f" (one per site, see `memcontrol sites`), got {len(mask)}"
            )
        return mask

    def apply(self, unet: nn.Module, mask: Sequence[int] | None) -> list[nn.Parameter]:
        """Adapt ``unet`` in place for ``mask`` and return the parameters to train; all others are frozen.

        An empty mask means every site on, as ``None`` does (callers that take no mask pass ``()``).
        """
        mask = self.check_mask(unet, mask or None)
        params = self.adapt(unet, self._selector(unet, mask))
        unet.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        return params

    @abstractmethod
    def adapt(self, unet: nn.Module, on: Selector) -> list[nn.Parameter]:
        """Add the method's parameters where ``on(path)`` holds; return them and the existing parameters it trains.

        Parameters are added only where they train: elsewhere they would be the identity at extra cost.
        """

    def _selector(self, unet: nn.Module, mask: Mask) -> Selector:
        bits = dict(zip(self.sites(unet), mask))
        paper, outside = self.options.layout == "paper", self.trains_outside()

        def on(path: str) -> bool:
            if paper and not self.paper_masked(path):
                return True
            site = next((s for s in bits if path.startswith(s + ".")), None)
            return outside if site is None else bool(bits[site])

        return on

    def param_groups(self, unet: nn.Module, params: list[nn.Parameter], learning_rate: float) -> list[dict]:
        """Optimizer parameter groups for what ``apply`` returned: one at ``learning_rate`` unless a method needs
        more."""
        return [{"params": params, "lr": learning_rate}] if params else []

    def trained_state(self, unet: nn.Module) -> dict[str, torch.Tensor]:
        """What must be saved to reproduce the fine-tuned model on top of the base."""
        return {n: p.detach().contiguous() for n, p in unet.named_parameters() if p.requires_grad}

    def load_trained_state(self, unet: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Load ``trained_state`` into a U-Net adapted with the same method, options and mask."""
        params = {n: p for n, p in unet.named_parameters() if p.requires_grad}
        misfit = _misfit(state, params)
        if misfit:
            raise UserError(f"trained weights do not fit method {self.name!r} with these options and mask: {misfit}")
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value.to(params[name].dtype))

    def merge(self, unet: nn.Module) -> nn.Module:
        """Fold the adaptation into plain weights, in place, and return the U-Net: same class, same outputs.

        Methods that add parameters do it as torch parametrizations of existing weights, so that the
        merged model is the parametrized tensors written back, loadable by diffusers as any U-Net.
        """
        for module in list(unet.modules()):
            if parametrize.is_parametrized(module):
                for tensor_name in list(module.parametrizations):
                    parametrize.remove_parametrizations(module, tensor_name, leave_parametrized=True)
        return unet


def _misfit(state: dict[str, torch.Tensor], params: dict[str, nn.Parameter]) -> str | None:
    """Why ``state`` cannot be loaded into ``params``; None when it can."""
    unknown, missing = sorted(set(state) - set(params)), sorted(set(params) - set(state))
    if unknown:
        return f"unknown parameter {unknown[0]}"
    if missing:
        return f"no value for {missing[0]}"
    for name in sorted(state):
        if state[name].shape != params[name].shape:
            return f"{name} has shape {tuple(state[name].shape)}, expected {tuple(params[name].shape)}"
    return None


METHODS: Registry[type[PeftMethod]] = Registry("method", "--method", MethodConfig)
register = METHODS.register
method_names = METHODS.names


def get_method(name: str, options: Any = None, cache: dict | None = None) -> PeftMethod:
    """Method ``name`` with its options from ``options``: its config, or option values by name (a TrainConfig's
    ``plugin_options``, a manifest's ``config``; defaults for absent ones), see ``Registry.options``."""
    return METHODS.get(name)(METHODS.options(name, options), cache)


def parse_mask(text: str | None) -> Mask | None:
    """``"1011"`` (or ``"1,0,1,1"``) -> (1, 0, 1, 1)."""
    if text is None or text == "":
        return None
    bits = text.replace(",", "").strip()
    if not set(bits) <= {"0", "1"}:
        raise UserError(f"--mask: expected a string of 0 and 1 such as 1011, got {text!r}")
    return tuple(int(b) for b in bits)
