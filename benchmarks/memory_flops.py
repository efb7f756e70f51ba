"""Peak training memory per method, and the CPU model-FLOPs utilisation (MFU) of a training step.

    python benchmarks/memory_flops.py [--methods full,attention,difffit,svdiff,lora] [--steps 10] [--batch_size 32]
        [--pretrained_model_name_or_path DIR --train_data_dir DIR --max_train_samples N --resolution PX
         --mixed_precision fp16 --gradient_checkpointing]

Each method trains on the built-in base model and data (memcontrol's engine, ``fine_tune``) in its
own fresh Python process, so that no allocation of one method is counted for another.

Memory, what is measured: the resident set size (RSS, what the operating system holds for the
process) sampled every millisecond by a thread while ``fine_tune`` runs, minus the RSS just before
it (model loaded, latents and caption embeddings cached). So it is the extra memory training needs:
the method's own parameters and buffers (SV-DIFF's factors), gradients, AdamW state, activations,
plus whatever the allocators keep (glibc and PyTorch's CPU allocator do not hand every freed block
back); it is not CUDA's ``max_memory_allocated``. The kernel's high-water mark (``ru_maxrss``) is
printed beside it as a check (hwm), and so is the analytic floor of trainable weights, their gradients
and AdamW's two moments (16 bytes per trainable parameter). On a CUDA device the two memory columns
are instead ``torch.cuda.max_memory_allocated`` during ``fine_tune`` minus the allocated memory
before it, and the allocated memory before it (tensors only, not the caching allocator's reserve).

MFU: the FLOPs of one training step (torch.utils.flop_counter.FlopCounterMode over a real one-step
``fine_tune``: matmuls, convolutions and attention, forward and backward; with SV-DIFF the weights it
rebuilds at each step too) divided by the measured time of a step (mean over ``--steps`` steps of
a second run, so that first-call costs stay out) and by the machine's measured fp32 peak: the best of several timed
``--matmul_size`` square matmuls,
with the same number of threads (on CUDA: in the autocast dtype of ``--mixed_precision``, else fp32
as PyTorch runs it by default, without TF32).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import threading
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import diffusers  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from training_flags import add_training_flags, model_config  # noqa: E402  (this folder is on sys.path)

from memcontrol.config import DataConfig, TrainConfig  # noqa: E402
from memcontrol.data.prepare import prepare_data  # noqa: E402
from memcontrol.peft import get_method  # noqa: E402
from memcontrol.runtime import WEIGHT_DTYPES, load_for_training, make_accelerator, native_resolution  # noqa: E402
from memcontrol.train.engine import fine_tune  # noqa: E402
from memcontrol.train.run import build_training_set  # noqa: E402

diffusers.utils.logging.set_verbosity_error()
diffusers.utils.logging.disable_progress_bar()
transformers.utils.logging.disable_progress_bar()
MIB = 1024**2


def matmul_peak(size: int, device: torch.device, dtype: torch.dtype, repeats: int = 5) -> float:
    """GFLOP/s of the best of ``repeats`` ``size`` x ``size`` matmuls."""
    a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ b  # warm-up
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


class RssSampler(threading.Thread):
    """Highest RSS seen, sampled every millisecond until stopped."""

    def __init__(self):
        super().__init__(daemon=True)
        self.process, self.peak, self.done = psutil.Process(), 0, threading.Event()

    def run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.001)

    def stop(self) -> int:
        self.done.set()
        self.join()
        return max(self.peak, self.process.memory_info().rss)


def setup(args, method_name: str, examples):
    model = model_config(args)
    accelerator = make_accelerator(model)
    pipe = load_for_training(model, accelerator)
    method = get_method(method_name)
    training_set = build_training_set(pipe, examples, args.resolution or native_resolution(pipe), progress=False)
    return pipe, method, method.check_mask(pipe.unet, None), training_set, accelerator


def child(args, method_name: str) -> dict:
    """One method's figures, in a fresh process: memory of ``--steps`` steps (the process's first), the FLOPs of one,
    then the time of ``--steps`` steps again (warm: first-call costs out)."""
    steps = args.steps
    examples = prepare_data(
        DataConfig(train_data_dir=args.train_data_dir, max_train_samples=args.max_train_samples)
    ).training
    cfg = TrainConfig(
        method=method_name,
        train_batch_size=args.batch_size,
        max_train_steps=steps,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    pipe, method, mask, training_set, accelerator = setup(args, method_name, examples)
    cuda = accelerator.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = psutil.Process().memory_info().rss
        sampler = RssSampler()
        sampler.start()
    result = fine_tune(pipe, method, mask, training_set, cfg, accelerator, progress=False)
    if cuda:
        torch.cuda.synchronize()
        peak = high_water = torch.cuda.max_memory_allocated()
    else:
        peak = sampler.stop()
        high_water = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    accelerator.free_memory()
    del pipe, training_set
    pipe, method, mask, training_set, accelerator = setup(args, method_name, examples)
    with FlopCounterMode(display=False) as counter:
        fine_tune(
            pipe, method, mask, training_set, dataclasses.replace(cfg, max_train_steps=1), accelerator, progress=False
        )
    accelerator.free_memory()
    del pipe, training_set
    pipe, method, mask, training_set, accelerator = setup(args, method_name, examples)  # timed again, warm this time
    timed = fine_tune(pipe, method, mask, training_set, cfg, accelerator, progress=False)
    return {
        "method": method_name,
        "trainable": result.trainable_parameters,
        "rss_before": before,
        "rss_peak": peak,
        "ru_maxrss": high_water,
        "seconds_per_step": timed.seconds / steps,
        "flops_per_step": counter.get_total_flops(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="full,attention,difffit,svdiff,lora")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per method")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--matmul_size", type=int, default=2048)
    add_training_flags(parser)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args, args.child)))
        return
    device = make_accelerator(model_config(args)).device
    dtype = WEIGHT_DTYPES[args.mixed_precision] if device.type == "cuda" else torch.float32
    peak = matmul_peak(args.matmul_size, device, dtype)
    print(
        f"{device} ({torch.get_num_threads()} torch threads); measured {dtype} matmul peak ({args.matmul_size}^3): "
        f"{peak:.1f} GFLOP/s"
    )
    what = (
        "CUDA max allocated during fine_tune - allocated before"
        if device.type == "cuda"
        else "peak RSS during fine_tune - RSS before"
    )
    print(
        f"batch {args.batch_size}, {args.steps} timed steps, mixed precision {args.mixed_precision}, gradient "
        f"checkpointing {args.gradient_checkpointing}; memory = {what}"
    )
    header = (
        f"{'method':10s} {'trainable':>10s} {'mem before':>10s} {'peak-before':>11s} {'hwm-before':>10s} "
        f"{'16 B/param':>10s} {'GFLOP/step':>10s} {'s/step':>7s} {'GFLOP/s':>8s} {'MFU':>6s}"
    )
    print(header)
    rows = {}
    forwarded = [
        f"--{k}={v}"
        for k, v in vars(args).items()
        if v is not None and k not in ("methods", "child", "gradient_checkpointing")
    ]
    forwarded += ["--gradient_checkpointing"] if args.gradient_checkpointing else []
    for name in args.methods.split(","):
        command = [sys.executable, __file__, "--child", name, *forwarded]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        row = rows[name] = json.loads(out.strip().splitlines()[-1])
        achieved = row["flops_per_step"] / row["seconds_per_step"] / 1e9
        row["mfu"] = achieved / peak
        print(
            f"{name:10s} {row['trainable']:10,d} {row['rss_before'] / MIB:8.0f} MiB "
            f"{(row['rss_peak'] - row['rss_before']) / MIB:7.1f} MiB "
            f"{(row['ru_maxrss'] - row['rss_before']) / MIB:6.1f} MiB {16 * row['trainable'] / MIB:6.1f} MiB"
            f" {row['flops_per_step'] / 1e9:10.1f} {row['seconds_per_step']:7.3f} {achieved:8.1f} "
            f"{100 * row['mfu']:5.1f}%"
        )
    headline = "full" if "full" in rows else next(iter(rows))
    print(f"train_mfu_{headline}: {100 * rows[headline]['mfu']:.1f}%")


if __name__ == "__main__":
    main()
