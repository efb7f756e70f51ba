"""Data parallel training: `accelerate launch` with two CPU processes (gloo) trains as one process does on the same
global batch, and only the main process writes; `memcontrol run` shares its search and stage 2 between them."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from memcontrol.cli import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_flags(model_dir, data_dir, out, per_device: int, accumulation: int) -> list[str]:
    """Full fine-tuning under a threshold that drops samples, whole passes and whole batches of this model and data:
    a process whose share is emptied must still join the gradient exchange."""
    return [
        "train",
        "--pretrained_model_name_or_path",
        str(model_dir),
        "--train_data_dir",
        str(data_dir),
        "--output_dir",
        str(out),
        "--device",
        "cpu",
        "--validation_fraction",
        "0.2",
        "--test_fraction",
        "0.2",
        "--dmem_size",
        "2",
        "--dmem_repeats",
        "3",
        "--max_train_steps",
        "12",
        "--lr_warmup_steps",
        "2",
        "--latent_sampling",
        "sample",
        "--caption_dropout",
        "0.3",
        "--mitigation",
        "threshold",
        "--threshold",
        "1.0",
        "--train_batch_size",
        str(per_device),
        "--gradient_accumulation_steps",
        str(accumulation),
        "--num_inference_steps",
        "2",
        "--guidance_scale",
        "1.5",
    ]


def _launch_two(*flags: str) -> subprocess.CompletedProcess:
    """``memcontrol FLAGS`` under accelerate launch with two CPU processes of one thread each; it must succeed."""
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "memcontrol.cli",
        *flags,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(launch, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_processes_train_as_one_does_on_the_same_global_batch(tiny_model_dir, tiny_data_dir, tmp_path):
    single, shared = tmp_path / "single", tmp_path / "shared"
    assert main(_train_flags(tiny_model_dir, tiny_data_dir, single, per_device=4, accumulation=1)) == 0
    done = _launch_two(*_train_flags(tiny_model_dir, tiny_data_dir, shared, per_device=1, accumulation=2))
    assert done.stdout.count("written to") == 1  # one report, from the main process

    results = [json.loads((out / "manifest.json").read_text())["result"] for out in (single, shared)]
    assert results[0]["global_batch_size"] == results[1]["global_batch_size"] == 4
    counters = [{k: r[k] for k in ("steps", "dropped_samples", "skipped_batches")} for r in results]
    assert counters[0] == counters[1] and 0 < counters[0]["dropped_samples"] and counters[0]["skipped_batches"] < 12
    losses = [json.loads((out / "losses.json").read_text()) for out in (single, shared)]
    assert [s for s, _ in losses[1]] == [s for s, _ in losses[0]] == [10, 12]
    assert [v for _, v in losses[1]] == pytest.approx([v for _, v in losses[0]], rel=1e-5)
    weights = [load_file(out / "trained.safetensors") for out in (single, shared)]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:  # measured: 6e-7 at most; one update is up to the learning rate, 5e-4
        torch.testing.assert_close(weights[1][name], weights[0][name], rtol=0, atol=1e-5)


def test_run_under_two_processes_searches_with_two_workers_and_trains_data_parallel(tiny_search_config, tmp_path):
    out = tmp_path / "run"
    flags = ("run", "--config", str(tiny_search_config), "--output_dir", str(out), "--n_trials", "2", "--device", "cpu")
    done = _launch_two(*flags)
    assert done.stdout.count("report written to") == 1
    with (out / "search" / "trials.csv").open() as f:
        trials = [t for t in csv.DictReader(f) if t["state"] == "complete"]
    assert len(trials) == 2 and len({t["number"] for t in trials}) == 2  # one study: each trial ran once
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    assert manifest["result"]["global_batch_size"] == 8 and manifest["result"]["steps"] == 2  # 2 processes x batch 4
    assert json.loads((out / "evaluation" / "metrics.json").read_text())["mask"] == manifest["mask"]
    stages = [d["stage"] for d in json.loads((out / "run.json").read_text())["stages"]]
    assert stages == ["search", "train", "evaluate", "report"]  # recorded once, by the main process

    weights = (out / "model" / "trained.safetensors").stat().st_mtime_ns
    again = _launch_two(*flags)  # all done: every process skips every stage
    assert again.stdout.count("done before, skipped") == 4
    assert (out / "model" / "trained.safetensors").stat().st_mtime_ns == weights


@pytest.mark.parametrize("command", ["search", "generate"])
def test_commands_that_would_repeat_their_work_refuse_several_processes(command, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main([command]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"memcontrol {command}: error: runs in one process, not 2") and "\n" not in err
