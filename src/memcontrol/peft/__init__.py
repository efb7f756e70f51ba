"""Fine-tuning methods, each registered under its name by importing its module."""

from memcontrol.peft import attention, difffit, full, lora, svdiff  # noqa: F401  (register the methods)
from memcontrol.peft.base import Mask, MethodConfig, PeftMethod, get_method, method_names, parse_mask, register

__all__ = ["Mask", "MethodConfig", "PeftMethod", "get_method", "method_names", "parse_mask", "register"]
