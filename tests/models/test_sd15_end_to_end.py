"""Stable Diffusion v1.5's real architecture (random weights) through every command, on the CPU at 64 px.

A 4.3 GB folder is written and every PEFT method trains a step of the 860M-parameter U-Net (the default run);
the tests marked heavy then take the fine-tuned model through generate and audit, run a 2-trial paper-layout
search and fully fine-tune (14.7 GB peak): all of it took 18 minutes on the project's 2-core machine while other
jobs ran (load 4 to 7; December 2026), so the heavy ones are left out of the default run and CI runs them after it
(`-m heavy -n 0`). Each command runs in its own process, as a user runs it, so that a native crash fails its test
instead of the session and each run's memory is returned when it ends. What is written (the folder, full fine-tuning's
3.4 GB of weights) is deleted at the end rather than left to pytest's kept temporary folders.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys

import pytest
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import CLIPTokenizer

from memcontrol.models.sd15 import write_random_imagefolder, write_random_sd15

pytestmark = pytest.mark.slow

RESOLUTION = "64"
TRAIN_FLAGS = [
    "--resolution",
    RESOLUTION,
    "--train_batch_size",
    "2",
    "--max_train_steps",
    "1",
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
]


def memcontrol(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memcontrol.cli", *args], check=False, capture_output=True, text=True)


def assert_succeeded(run: subprocess.CompletedProcess) -> None:
    assert run.returncode == 0, f"exit status {run.returncode}:\n{run.stderr[-3000:]}"


@pytest.fixture(scope="module")
def sd15(tmp_path_factory):
    """(model folder, data folder): the random-weight SD v1.5 folder and 16 random 64 px images. The U-Net's
    sample_size 8 (SD v1.5: 64) changes no weight; it makes `audit`, which samples at the model's native size,
    run at 64 px instead of 512 (tens of minutes on one CPU thread)."""
    root = tmp_path_factory.mktemp("sd15")
    yield write_random_sd15(root / "model", sample_size=8), write_random_imagefolder(root / "data", count=16)
    shutil.rmtree(root)


def train(sd15, method: str, output_dir, *flags: str) -> dict:
    model_dir, data_dir = sd15
    assert_succeeded(
        memcontrol(
            "train",
            "--pretrained_model_name_or_path",
            str(model_dir),
            "--train_data_dir",
            str(data_dir),
            "--method",
            method,
            "--output_dir",
            str(output_dir),
            *TRAIN_FLAGS,
            *flags,
        )
    )
    manifest = json.loads((output_dir / "manifest.json").read_text())
    assert manifest["method"] == method and manifest["resolution"] == int(RESOLUTION)
    assert (output_dir / "samples" / "grid.png").is_file()
    return manifest


@pytest.fixture(scope="module")
def lora_model(sd15, tmp_path_factory):
    """A LoRA fine-tune of the SD v1.5 folder, for generate and audit."""
    output_dir = tmp_path_factory.mktemp("sd15-lora")
    train(sd15, "lora", output_dir)
    return output_dir


def parameter_count(weights) -> int:
    """Parameters in a safetensors file, from its header (no weight is read)."""
    with safe_open(weights, "pt") as f:
        return sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())  # noqa: SIM118 (safe_open is not iterable)


def test_the_folder_has_sd15s_published_architecture(sd15):
    model_dir = sd15[0]
    counts = {
        name: parameter_count(next((model_dir / name).glob("*.safetensors")))
        for name in ("unet", "vae", "text_encoder")
    }
    assert counts == {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
    scheduler = json.loads((model_dir / "scheduler" / "scheduler_config.json").read_text())
    assert (
        scheduler["_class_name"] == "PNDMScheduler" and scheduler["skip_prk_steps"] and scheduler["steps_offset"] == 1
    )
    assert json.loads((model_dir / "vae" / "config.json").read_text())["scaling_factor"] == 0.18215
    tokenizer = CLIPTokenizer.from_pretrained(model_dir / "tokenizer", local_files_only=True)
    ids = tokenizer(["a chest x-ray"], padding="max_length", max_length=tokenizer.model_max_length).input_ids[0]
    assert len(ids) == 77 and ids[0] == 49406 and ids[-1] == 49407  # CLIP's start and end (= padding) tokens
    assert ids[1] == 320  # "a</w>", CLIP's own id for it


# SV-DIFF on one block (down_blocks.0.attentions.0, 320 channels): the same path as on all 16, without the
# minutes of SVDs of the 1280-channel weights (benchmarks/sd15_architecture.py times those).
MASKS = {"svdiff": "1" + "0" * 15}


@pytest.mark.parametrize("method", ["freeze", "attention", "lora", "difffit", "svdiff"])
def test_every_method_trains_a_step_of_the_sd15_unet(sd15, method, tmp_path):
    mask = ["--mask", MASKS[method]] if method in MASKS else []
    result = train(sd15, method, tmp_path / method, *mask)["result"]
    assert result["total_parameters"] == 859_520_964
    if method == "freeze":  # nothing to train: no step is taken
        assert result["trainable_parameters"] == 0 and result["steps"] == 0
    else:
        assert result["trainable_parameters"] > 0 and result["steps"] == 1 and math.isfinite(result["final_loss"])
        assert load_file(tmp_path / method / "trained.safetensors")


@pytest.mark.heavy
def test_lora_trains_and_its_model_generates(lora_model, tmp_path):
    manifest = json.loads((lora_model / "manifest.json").read_text())
    assert manifest["result"]["steps"] == 1 and math.isfinite(manifest["result"]["final_loss"])
    assert_succeeded(
        memcontrol(
            "generate",
            "--model_dir",
            str(lora_model),
            "--prompt",
            "chest x-ray: mild cardiomegaly",
            "--num_images",
            "2",
            "--num_inference_steps",
            "10",
            "--resolution",
            RESOLUTION,
            "--device",
            "cpu",
            "--output_dir",
            str(tmp_path / "generated"),
        )
    )
    assert len(list((tmp_path / "generated").glob("*.png"))) >= 2


@pytest.mark.heavy
def test_audit_of_the_fine_tuned_sd15(sd15, lora_model, tmp_path):
    assert_succeeded(
        memcontrol(
            "audit",
            "--model_dir",
            str(lora_model),
            "--train_data_dir",
            str(sd15[1]),
            "--feature_extractor",
            "pixels",
            "--num_inference_steps",
            "2",
            "--guidance_scale",
            "1.5",
            "--extraction_samples",
            "2",
            "--extraction_min_group",
            "2",
            "--audit_prompts",
            "1",
            "--dmem_samples_per_prompt",
            "1",
            "--device",
            "cpu",
            "--output_dir",
            str(tmp_path / "audit"),
        )
    )
    metrics = json.loads((tmp_path / "audit" / "metrics.json").read_text())
    assert len(metrics["attacked_prompts"]) == 1 and math.isfinite(metrics["dmem_mean"]) and metrics["dmem_mean"] > 0


@pytest.mark.heavy
def test_two_trial_search_in_the_paper_layout(sd15, tmp_path):
    model_dir, data_dir = sd15
    assert_succeeded(
        memcontrol(
            "search",
            "--pretrained_model_name_or_path",
            str(model_dir),
            "--train_data_dir",
            str(data_dir),
            "--method",
            "attention",
            "--layout",
            "paper",
            "--n_trials",
            "2",
            "--population_size",
            "2",
            "--trial_train_steps",
            "1",
            "--dmem_size",
            "2",
            "--dmem_repeats",
            "2",
            "--proxy_fraction",
            "0.5",
            "--trial_fid_samples",
            "2",
            "--guidance_scale",
            "1.5",
            "--dmem_samples_per_prompt",
            "1",
            "--feature_extractor",
            "pixels",
            "--sample_batch_size",
            "4",
            "--output_dir",
            str(tmp_path / "search"),
            *TRAIN_FLAGS,
        )
    )
    with (tmp_path / "search" / "trials.csv").open() as f:
        trials = list(csv.DictReader(f))
    assert [t["state"] for t in trials] == ["complete"] * 2
    assert all(len(t["mask"]) == 16 for t in trials)  # the authors' 16 attention-tuning sites
    assert json.loads((tmp_path / "search" / "best_mask.json").read_text())["method"] == "attention"


@pytest.mark.heavy
def test_full_fine_tuning_of_the_sd15_unet(sd15, tmp_path):
    """Last, alone: 860M trainable parameters with their AdamW state take about 14 GB."""
    result = train(sd15, "full", tmp_path / "full")["result"]
    shutil.rmtree(tmp_path / "full")
    assert result["trainable_parameters"] == 859_520_964 and math.isfinite(result["final_loss"])
