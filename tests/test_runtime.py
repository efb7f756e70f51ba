"""Run-time choices: TF32 follows each job's --allow_tf32, whatever the job before it in the process chose."""

import torch

from memcontrol.config import ModelConfig
from memcontrol.runtime import make_accelerator


def test_allow_tf32_is_set_for_each_job_and_unset_by_the_next():
    make_accelerator(ModelConfig(device="cpu", allow_tf32=True))
    assert torch.backends.cuda.matmul.allow_tf32
    make_accelerator(ModelConfig(device="cpu"))
    assert not torch.backends.cuda.matmul.allow_tf32  # PyTorch's default, which a search's next job must get back
