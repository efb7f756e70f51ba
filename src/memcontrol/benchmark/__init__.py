"""``memcontrol benchmark``: fine-tuning methods x memorization mitigations x seeds, as tables and figures."""

from memcontrol.benchmark.grid import BenchmarkConfig
from memcontrol.benchmark.job import BenchmarkJob, run_benchmark

__all__ = ["BenchmarkConfig", "BenchmarkJob", "run_benchmark"]
