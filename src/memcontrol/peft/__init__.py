"""Fine-tuning methods, each registered under its name."""

from memcontrol.peft import full  # noqa: F401  (registers full, freeze)
from memcontrol.peft.base import Mask, PeftMethod, get_method, method_names, parse_mask, register

__all__ = ["Mask", "PeftMethod", "get_method", "method_names", "parse_mask", "register"]
