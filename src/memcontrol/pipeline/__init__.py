"""The whole MemControl pipeline: search -> pick -> stage-2 fine-tuning -> evaluation -> report."""

from memcontrol.pipeline.run import STAGES, run_pipeline

__all__ = ["STAGES", "run_pipeline"]
