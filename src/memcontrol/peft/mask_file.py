"""``--mask best_mask.json``: a mask found by `memcontrol search`, used elsewhere (the paper's transfer of masks
to other data). The file names its method, its bits and the learning rate searched with them; a file of
another method, architecture or layout is refused rather than trained with a mask that means something else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from memcontrol.errors import UserError
from memcontrol.peft.base import Mask, PeftMethod, parse_mask


@dataclass(frozen=True)
class SearchedMask:
    """The part of a best_mask.json that training uses."""

    path: str
    method: str
    mask: str
    learning_rate: float | None
    flag: str = "--mask"  # the option that named the file, for messages

    def bits(self, method: PeftMethod, unet: nn.Module) -> Mask:
        """The mask checked against ``method``'s sites on ``unet``."""
        where = f"{self.flag} {self.path}"
        if method.name != self.method:
            raise UserError(
                f"{where}: a mask of method {self.method!r}, not of --method {method.name!r} (give --method "
                f"{self.method})"
            )
        if not is_bit_string(self.mask):
            raise UserError(f"{where}: its mask {self.mask!r} is not a string of 0 and 1")
        sites = method.sites(unet)
        if len(self.mask) != len(sites):
            raise UserError(
                f"{where}: {len(self.mask)} bits, but {method.name} has {len(sites)} sites on this model in the "
                f"{method.options.layout} layout (see `memcontrol sites`): a mask of another architecture or --layout"
            )
        return method.check_mask(unet, parse_mask(self.mask))


def is_bit_string(text: str) -> bool:
    return set(text.replace(",", "").strip()) <= {"0", "1"}


def read_mask_file(path: str, flag: str) -> SearchedMask:
    """The best_mask.json at ``path``, named by option ``flag``."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError:
        raise UserError(f"{flag} {path}: cannot be read; expected the best_mask.json of `memcontrol search`") from None
    except json.JSONDecodeError:
        raise UserError(f"{flag} {path}: not valid JSON; expected the best_mask.json of `memcontrol search`") from None
    if not isinstance(data, dict) or not isinstance(data.get("method"), str) or not isinstance(data.get("mask"), str):
        raise UserError(f"{flag} {path}: expected the best_mask.json of `memcontrol search`, with its method and mask")
    learning_rate = data.get("learning_rate")
    if learning_rate is not None and (isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float))):
        raise UserError(f"{flag} {path}: its learning_rate {learning_rate!r} is not a number")
    return SearchedMask(
        path, data["method"], data["mask"], None if learning_rate is None else float(learning_rate), flag
    )


def read_searched_mask(text: str | None) -> SearchedMask | None:
    """The best_mask.json that ``--mask`` names; None when it is a bit string (or absent)."""
    if not text or is_bit_string(text):
        return None
    if not Path(text).is_file():
        raise UserError(f"--mask {text}: neither a string of 0 and 1 such as 1011 nor a best_mask.json file")
    return read_mask_file(text, "--mask")


def resolve_mask(text: str | None, method: PeftMethod, unet: nn.Module) -> Mask:
    """``--mask`` (bits, a best_mask.json, or None for every site on) as checked bits for ``method`` on ``unet``."""
    searched = read_searched_mask(text)
    return searched.bits(method, unet) if searched else method.check_mask(unet, parse_mask(text))
