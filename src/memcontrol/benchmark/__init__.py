"""``memcontrol benchmark``: fine-tuning methods x memorization mitigations x seeds, as tables and figures."""

from memcontrol.benchmark.grid import BenchmarkConfig
from memcontrol.benchmark.run import BenchmarkRunConfig, run_benchmark

__all__ = ["BenchmarkConfig", "BenchmarkRunConfig", "run_benchmark"]
