"""Every command of memcontrol on Stable Diffusion v1.5's exact architecture (random weights), on the CPU.

    python benchmarks/sd15_architecture.py [--work_dir DIR] [--methods full,freeze,svdiff,difffit,attention,lora]
        [--steps 2] [--batch_size 2] [--resolution 64] [--no-time_svd] [--search_method attention]

Writes the random-weight SD v1.5 folder once (memcontrol.models.sd15: the published U-Net, VAE and
CLIP text-encoder configs, PNDM scheduler, safetensors; kept in --work_dir for the next run) and 16
random 64 px images, then runs, each in its own process as a user would, `memcontrol train` for each
method (--resolution 64 --train_batch_size 2 --max_train_steps 2 --lr_warmup_steps 0; full fine-tuning
last, since it needs the most memory), `generate` (2 images, 10 steps) and `audit` on the attention-tuned
model, and a 2-trial `search --layout paper` with tiny settings. Per command it records the peak
resident memory of its process (``os.wait4``) and the wall time; per method the seconds per training
step (the engine's own timing of the steps, from the manifest) and the time outside the steps
(loading, latent encoding, the method's set-up, saving, the sample grid). SV-DIFF's SVD set-up is
also timed alone: ``svdiff.apply`` on the U-Net, in a child process.

Set OMP_NUM_THREADS to choose the threads of every command (the child processes inherit it).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from memcontrol.models.sd15 import write_random_imagefolder, write_random_sd15
from memcontrol.peft import get_method

METHODS = ("freeze", "attention", "lora", "difffit", "svdiff", "full")  # full last: the largest peak
GIB = 1024**3


def load() -> str:
    """The 1-minute load average: on a shared machine the timings move with it."""
    return f"load {os.getloadavg()[0]:.1f}"


def run_command(args: list[str], log: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in GiB, exit status) of ``memcontrol ARGS`` in its own process, output to ``log``."""
    start = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "memcontrol.cli", *args], stdout=out, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss * 1024 / GIB, process.returncode


def train_args(args, model_dir: Path, data_dir: Path, method: str, output_dir: Path) -> list[str]:
    return [
        "train",
        "--pretrained_model_name_or_path",
        str(model_dir),
        "--train_data_dir",
        str(data_dir),
        "--method",
        method,
        "--resolution",
        str(args.resolution),
        "--train_batch_size",
        str(args.batch_size),
        "--max_train_steps",
        str(args.steps),
        "--lr_warmup_steps",
        "0",
        "--num_inference_steps",
        "2",
        "--validation_fraction",
        "0.25",
        "--test_fraction",
        "0.25",
        "--device",
        "cpu",
        "--output_dir",
        str(output_dir),
    ]


def search_args(args, model_dir: Path, data_dir: Path, output_dir: Path) -> list[str]:
    """Two trials of the paper's mask layout, each as small as the search allows."""
    return [
        "search",
        "--pretrained_model_name_or_path",
        str(model_dir),
        "--train_data_dir",
        str(data_dir),
        "--method",
        args.search_method,
        "--layout",
        "paper",
        "--n_trials",
        "2",
        "--population_size",
        "2",
        "--resolution",
        str(args.resolution),
        "--train_batch_size",
        str(args.batch_size),
        "--trial_train_steps",
        "1",
        "--lr_warmup_steps",
        "0",
        "--validation_fraction",
        "0.25",
        "--test_fraction",
        "0.25",
        "--dmem_size",
        "2",
        "--dmem_repeats",
        "2",
        "--proxy_fraction",
        "0.5",
        "--trial_fid_samples",
        "2",
        "--num_inference_steps",
        "2",
        "--guidance_scale",
        "1.5",
        "--dmem_samples_per_prompt",
        "1",
        "--feature_extractor",
        "pixels",
        "--sample_batch_size",
        "4",
        "--device",
        "cpu",
        "--output_dir",
        str(output_dir),
    ]


def svd_setup_seconds(model_dir: Path) -> float:
    """Seconds of SV-DIFF's set-up (one SVD per weight) on the SD v1.5 U-Net, every site on."""
    unet = UNet2DConditionModel.from_pretrained(
        model_dir, subfolder="unet", local_files_only=True, use_safetensors=True
    )
    method = get_method("svdiff")
    start = time.perf_counter()
    method.apply(unet, method.check_mask(unet, None))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work_dir", help="where the model, data and outputs go (the model is reused); default: a temp dir"
    )
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, run in this order")
    parser.add_argument("--steps", type=int, default=2, help="training steps per method")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument(
        "--time_svd",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time SV-DIFF's SVDs alone as well (about 3 to 5 minutes on one thread)",
    )
    parser.add_argument("--search_method", default="attention", help="method of the 2-trial search (paper layout)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # each figure as soon as it is measured: the run takes many minutes
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="sd15-architecture-"))
    model_dir, data_dir = work / "model", work / "data"
    print(
        f"SD v1.5 architecture, random weights, {args.resolution} px, batch {args.batch_size}, {args.steps} steps, "
        f"{torch.get_num_threads()} torch threads, work dir {work}, {load()}"
    )
    if not (model_dir / "model_index.json").is_file():
        start = time.perf_counter()
        write_random_sd15(model_dir)
        print(f"write the folder (build + save_pretrained, safetensors): {time.perf_counter() - start:.1f} s")
    write_random_imagefolder(data_dir, count=16, size=args.resolution)

    methods = [m for m in args.methods.split(",") if m]
    if "svdiff" in methods and args.time_svd:
        # In a child process, so that the U-Net and its factors (over 3 GB) are returned before the commands run.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            seconds = pool.submit(svd_setup_seconds, model_dir).result()
        print(f"SV-DIFF SVD set-up alone (svdiff.apply on the U-Net, every site): {seconds:.1f} s ({load()})")
    rows, failed = [], []
    for method in methods:
        output_dir = work / f"train-{method}"
        wall, peak, status = run_command(
            train_args(args, model_dir, data_dir, method, output_dir), work / f"train-{method}.log"
        )
        if status != 0:
            failed.append(method)
            print(
                f"train {method:10s} FAILED with exit status {status} after {wall:.1f} s (log: "
                f"{work}/train-{method}.log, {load()})"
            )
            continue
        result = json.loads((output_dir / "manifest.json").read_text())["result"]
        per_step = result["seconds"] / max(result["steps"], 1)
        rows.append((method, peak, per_step, wall - result["seconds"], wall, result["trainable_parameters"]))
        print(
            f"train {method:10s} peak RSS {peak:5.1f} GiB  {per_step:6.2f} s/step  outside the steps "
            f"{wall - result['seconds']:6.1f} s  (wall {wall:.1f} s, {result['trainable_parameters']:,} trainable, "
            f"{load()})"
        )

    tuned = work / "train-attention"
    if (tuned / "manifest.json").is_file():
        generate = [
            "generate",
            "--model_dir",
            str(tuned),
            "--prompt",
            "chest x-ray: mild cardiomegaly",
            "--num_images",
            "2",
            "--num_inference_steps",
            "10",
            "--resolution",
            str(args.resolution),
            "--device",
            "cpu",
            "--output_dir",
            str(work / "generate"),
        ]
        audit = [
            "audit",
            "--model_dir",
            str(tuned),
            "--train_data_dir",
            str(data_dir),
            "--feature_extractor",
            "pixels",
            "--num_inference_steps",
            "2",
            "--guidance_scale",
            "1.5",
            "--extraction_samples",
            "3",
            "--extraction_min_group",
            "2",
            "--audit_prompts",
            "2",
            "--dmem_samples_per_prompt",
            "1",
            "--fid_samples",
            "2",
            "--device",
            "cpu",
            "--output_dir",
            str(work / "audit"),
        ]
        for name, command in (("generate", generate), ("audit", audit)):
            wall, peak, status = run_command(command, work / f"{name}.log")
            print(f"{name:16s} peak RSS {peak:5.1f} GiB  wall {wall:6.1f} s  exit status {status}  ({load()})")
            failed += [name] if status else []
    wall, peak, status = run_command(search_args(args, model_dir, data_dir, work / "search"), work / "search.log")
    print(
        f"search 2 trials  peak RSS {peak:5.1f} GiB  wall {wall:6.1f} s  exit status {status}  ({args.search_method}, "
        f"paper layout, {load()})"
    )
    failed += ["search"] if status else []
    print(f"commands failed: {', '.join(failed) or 'none'}")
    print(f"sd15_train_seconds_per_step_max: {max((r[2] for r in rows), default=float('nan')):.2f}")


if __name__ == "__main__":
    main()
