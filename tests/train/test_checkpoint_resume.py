"""Checkpoints and resume mid-training: a run killed with SIGKILL and resumed ends with the weights of a run never
interrupted; old checkpoints are pruned; a checkpoint of other options is refused; `memcontrol run` resumes stage 2.

The killed run is `python -m memcontrol.cli train` in a subprocess; the resumed and the reference runs are in-process.
"""

import json
import subprocess
import sys

import torch
from safetensors.torch import load_file

from memcontrol.cli import _parser, main
from memcontrol.pipeline.run import MODEL_DIR, SEARCH_DIR, STAGES
from memcontrol.search import RunConfig


def _train_argv(model_dir, data_dir, out, *extra):
    """A run that draws from the generator in every way the engine does: batches, posterior samples, noise,
    timesteps, caption dropout and the mitigation's noise; with warm-up and a cosine schedule."""
    return [
        "train",
        "--pretrained_model_name_or_path",
        str(model_dir),
        "--train_data_dir",
        str(data_dir),
        "--device",
        "cpu",
        "--validation_fraction",
        "0.2",
        "--test_fraction",
        "0.2",
        "--train_batch_size",
        "4",
        "--max_train_steps",
        "16",
        "--lr_warmup_steps",
        "4",
        "--lr_scheduler",
        "cosine",
        "--latent_sampling",
        "sample",
        "--mitigation",
        "embedding_noise",
        "--num_inference_steps",
        "2",
        "--guidance_scale",
        "1.5",
        "--output_dir",
        str(out),
        *extra,
    ]


def _assert_same_weights(first, second):
    a, b = load_file(str(first)), load_file(str(second))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)


def test_a_run_killed_after_a_checkpoint_resumes_to_the_weights_of_an_uninterrupted_run(
    tiny_model_dir, tiny_data_dir, tmp_path, capsys, wait_for
):
    out, log_path = tmp_path / "killed", tmp_path / "killed.log"
    argv = _train_argv(tiny_model_dir, tiny_data_dir, out, "--checkpointing_steps", "3")
    with log_path.open("w") as log:
        worker = subprocess.Popen([sys.executable, "-m", "memcontrol.cli", *argv], stdout=log, stderr=log)
        try:
            wait_for(lambda: (out / "checkpoints" / "checkpoint-3" / "state.json").is_file(), worker, log_path)
        finally:
            worker.kill()  # SIGKILL: no clean-up
            worker.wait()
    assert not (out / "trained.safetensors").exists(), "the run finished before the kill: nothing was resumed"

    capsys.readouterr()
    assert main([*argv, "--resume_from_checkpoint", "latest"]) == 0
    assert "resuming from" in capsys.readouterr().out
    assert main(_train_argv(tiny_model_dir, tiny_data_dir, tmp_path / "uninterrupted")) == 0

    _assert_same_weights(out / "trained.safetensors", tmp_path / "uninterrupted" / "trained.safetensors")
    resumed, uninterrupted = (json.loads((d / "losses.json").read_text()) for d in (out, tmp_path / "uninterrupted"))
    assert [step for step, _ in resumed] == [10, 16]
    torch.testing.assert_close(torch.tensor(resumed), torch.tensor(uninterrupted), rtol=1e-6, atol=0)


def test_checkpoints_total_limit_keeps_the_newest(tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "run"
    extra = ("--max_train_steps", "7", "--checkpointing_steps", "2", "--checkpoints_total_limit", "2")
    assert main(_train_argv(tiny_model_dir, tiny_data_dir, out, *extra)) == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-4", "checkpoint-6"]
    state = json.loads((out / "checkpoints" / "checkpoint-6" / "state.json").read_text())
    assert state["step"] == 6 and state["counted"] == 6  # the loss summed since the last read-out (at step 10)


def test_a_checkpoint_made_with_other_options_or_damaged_is_refused(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    extra = ("--max_train_steps", "2", "--checkpointing_steps", "2")
    assert main(_train_argv(tiny_model_dir, tiny_data_dir, out, *extra)) == 0
    resume = (*extra, "--resume_from_checkpoint", "latest")
    other_options = (("seed", "1"), ("train_batch_size", "2"), ("learning_rate", "1e-3"), ("max_train_steps", "3"))
    for option, value in other_options:
        capsys.readouterr()
        assert main(_train_argv(tiny_model_dir, tiny_data_dir, out, *resume, f"--{option}", value)) == 2
        err = capsys.readouterr().err
        assert f"made with {option}=" in err and len(err.strip().splitlines()) == 1, err
    # Options that change neither what a step computes nor its order may differ.
    assert (
        main(
            _train_argv(
                tiny_model_dir,
                tiny_data_dir,
                out,
                *extra,
                "--resume_from_checkpoint",
                "checkpoint-2",
                "--checkpoints_total_limit",
                "1",
                "--gradient_checkpointing",
            )
        )
        == 0
    )
    nowhere = ("--resume_from_checkpoint", str(tmp_path / "nowhere"))
    assert main(_train_argv(tiny_model_dir, tiny_data_dir, out, *nowhere)) == 2
    assert "--resume_from_checkpoint" in capsys.readouterr().err
    damaged = out / "checkpoints" / "checkpoint-2" / "optimizer.pt"
    damaged.write_bytes(damaged.read_bytes()[:100])
    assert main(_train_argv(tiny_model_dir, tiny_data_dir, out, *resume)) == 2
    assert f"{damaged}: unreadable checkpoint file" in capsys.readouterr().err


def test_memcontrol_run_resumes_an_interrupted_stage_2_from_its_latest_checkpoint(tiny_search_config, tmp_path, capsys):
    out = tmp_path / "run"
    (out / SEARCH_DIR).mkdir(parents=True)
    best = {"method": "svdiff", "mask": None, "learning_rate": 1e-3}
    (out / SEARCH_DIR / "best_mask.json").write_text(json.dumps(best))
    flags = ["--config", str(tiny_search_config), "--max_train_steps", "4", "--checkpointing_steps", "2"]
    job = RunConfig.from_args(_parser().parse_args(["run", *flags]))
    STAGES["train"](job, out, False)
    weights = load_file(str(out / MODEL_DIR / "trained.safetensors"))
    (out / MODEL_DIR / "trained.safetensors").unlink()  # as if killed after its last checkpoint
    for step in (2, 4):  # the last checkpoint alone would be the final weights: take that away to resume mid-way
        assert (out / MODEL_DIR / "checkpoints" / f"checkpoint-{step}").is_dir()
    (out / MODEL_DIR / "checkpoints" / "checkpoint-4" / "state.json").unlink()

    capsys.readouterr()
    STAGES["train"](job, out, False)
    assert "checkpoint-2 (step 2)" in capsys.readouterr().out
    again = load_file(str(out / MODEL_DIR / "trained.safetensors"))
    for name in weights:
        torch.testing.assert_close(again[name], weights[name], rtol=0, atol=1e-6)
