"""d_mem batched over prompts against one prompt at a time: the same values, and the speedup.

    python benchmarks/dmem_batching.py [--prompts 32] [--batch_size 16] [--mode trajectory] [--repeats 3]
        [--pretrained_model_name_or_path DIR --train_data_dir DIR --resolution PX --dtype fp16]

On the built-in base model (or the one given, on the accelerator if there is one), with the model's
recommended sampling settings, d_mem (metrics/dmem.py
``dmem_scores``) of the D_mem captions and then validation captions, ``--prompts`` in all: once
with ``--batch_size`` prompts per forward pass (what a search trial and `memcontrol evaluate` use)
and once with one prompt per pass. Each prompt's noise is seeded by its position, so both must give
the same values up to float rounding; the largest difference is printed. Times are the median of
``--repeats`` alternating runs, after one untimed warm-up run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import diffusers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from memcontrol.config import DataConfig  # noqa: E402
from memcontrol.data.prepare import prepare_data  # noqa: E402
from memcontrol.metrics.dmem import DMEM_MODES, dmem_scores  # noqa: E402
from memcontrol.models.pipeline import load_pipeline, recommendations  # noqa: E402
from memcontrol.runtime import WEIGHT_DTYPES  # noqa: E402

diffusers.utils.logging.disable_progress_bar()
transformers.utils.logging.disable_progress_bar()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32, help="D_mem captions first, then validation captions")
    parser.add_argument("--batch_size", type=int, default=16, help="prompts per forward pass in the batched run")
    parser.add_argument("--mode", default="trajectory", choices=DMEM_MODES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pretrained_model_name_or_path", default=None, help="default: the built-in base model")
    parser.add_argument("--train_data_dir", default=None, help="default: the built-in data")
    parser.add_argument("--resolution", type=int, default=None, help="default: the model's native size")
    parser.add_argument("--dtype", default="no", choices=("no", "fp16", "bf16"), help="the model's dtype (no: float32)")
    args = parser.parse_args()
    data = prepare_data(DataConfig(train_data_dir=args.train_data_dir))
    examples = (data.dmem + data.splits["validation"])[: args.prompts]
    settings = {
        k: recommendations(args.pretrained_model_name_or_path)[k] for k in ("guidance_scale", "num_inference_steps")
    }
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipe = load_pipeline(args.pretrained_model_name_or_path, device=device, dtype=WEIGHT_DTYPES[args.dtype])
    print(
        f"d_mem ({args.mode}) of {len(examples)} prompts, {settings}, {device} ({torch.get_num_threads()} torch "
        "threads)"
    )

    def run(batch_size: int) -> tuple[float, torch.Tensor]:
        start = time.perf_counter()
        values = dmem_scores(
            pipe,
            examples,
            mode=args.mode,
            resolution=args.resolution,
            batch_size=batch_size,
            progress=False,
            **settings,
        )
        return time.perf_counter() - start, values

    run(args.batch_size), run(1)  # warm-up
    times: dict[int, list[float]] = {args.batch_size: [], 1: []}
    values: dict[int, torch.Tensor] = {}
    for repeat in range(args.repeats):
        for batch_size in (args.batch_size, 1) if repeat % 2 == 0 else (1, args.batch_size):
            seconds, values[batch_size] = run(batch_size)
            times[batch_size].append(seconds)
            print(f"  run {repeat + 1} batch {batch_size:3d}: {seconds:6.2f} s")
    batched, single = statistics.median(times[args.batch_size]), statistics.median(times[1])
    difference = (values[args.batch_size] - values[1]).abs().max().item()
    print(
        f"batched ({args.batch_size} per pass): {batched:.2f} s, {len(examples) / batched:.1f} prompts/s; "
        f"one at a time: {single:.2f} s, {len(examples) / single:.1f} prompts/s (medians of {args.repeats})"
    )
    print(
        f"same values: largest |difference| {difference:.2e} (d_mem mean {values[1].mean():.4f}, "
        f"{'equal within 1e-4' if difference <= 1e-4 else 'DIFFERENT'})"
    )
    print(f"dmem_batching_speedup: {single / batched:.2f}x")


if __name__ == "__main__":
    main()
