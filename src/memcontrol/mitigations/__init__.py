"""Memorization mitigations, each registered under its name by importing its module."""

from memcontrol.mitigations import embedding_noise, multi_caption, rwa, threshold  # noqa: F401  (register the mitigations)
from memcontrol.mitigations.base import Mitigation, MitigationConfig, get_mitigation, mitigation_names, register

__all__ = ["Mitigation", "MitigationConfig", "get_mitigation", "mitigation_names", "register"]
