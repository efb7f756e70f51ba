"""The interface every fine-tuning method implements, and the registry that finds them by name.

As in huggingface/peft, each method lives in its own module and registers itself, so adding a
method never edits a central if/elif.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import nn

from memcontrol.errors import UserError

Mask = tuple[int, ...]


class PeftMethod(ABC):
    """Decides which parameters of a U-Net fine-tuning may change, site by site (the mask)."""

    name: str = ""

    def sites(self, unet: nn.Module) -> list[str]:
        """Module paths a mask bit switches on or off; empty when the method takes no mask."""
        return []

    def check_mask(self, unet: nn.Module, mask: Sequence[int] | None) -> Mask:
        """The mask as a tuple of 0/1; ``None`` means every site on."""
        sites = self.sites(unet)
        if mask is None:
            return (1,) * len(sites)
        mask = tuple(int(b) for b in mask)
        if len(mask) != len(sites) or any(b not in (0, 1) for b in mask):
            raise UserError(
                f"--mask: method {self.name!r} expects {len(sites)} bits of 0/1 (one per site), got {len(mask)}"
            )
        return mask

    @abstractmethod
    def apply(self, unet: nn.Module, mask: Mask) -> list[nn.Parameter]:
        """Adapt ``unet`` in place for this mask and return the parameters to train (all others frozen)."""

    def trained_state(self, unet: nn.Module) -> dict[str, torch.Tensor]:
        """What must be saved to reproduce the fine-tuned model on top of the base."""
        return {n: p.detach().contiguous() for n, p in unet.named_parameters() if p.requires_grad}

    def load_trained_state(self, unet: nn.Module, state: dict[str, torch.Tensor]) -> None:
        params = dict(unet.named_parameters())
        unknown = sorted(set(state) - set(params))
        if unknown:
            raise UserError(f"trained weights do not fit method {self.name!r}: unknown parameter {unknown[0]}")
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value.to(params[name].dtype))

    def merge(self, unet: nn.Module) -> nn.Module:
        """Return a plain U-Net with the adaptation folded into its weights."""
        return unet


_REGISTRY: dict[str, type[PeftMethod]] = {}


def register(cls: type[PeftMethod]) -> type[PeftMethod]:
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"method name {cls.name!r} is empty or already registered")
    _REGISTRY[cls.name] = cls
    return cls


def get_method(name: str) -> PeftMethod:
    if name not in _REGISTRY:
        raise UserError(f"--method: unknown method {name!r}; expected one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]()


def method_names() -> list[str]:
    return sorted(_REGISTRY)


def parse_mask(text: str | None) -> Mask | None:
    """``"1011"`` (or ``"1,0,1,1"``) -> (1, 0, 1, 1)."""
    if text is None or text == "":
        return None
    bits = text.replace(",", "").strip()
    if not set(bits) <= {"0", "1"}:
        raise UserError(f"--mask: expected a string of 0 and 1 such as 1011, got {text!r}")
    return tuple(int(b) for b in bits)
