"""`memcontrol evaluate` and `memcontrol audit` from the command line, on tiny models and data."""

import json

import pytest

from memcontrol.cli import main
from memcontrol.config import DataConfig
from memcontrol.data.prepare import prepare_data
from memcontrol.metrics import dmem_trajectory
from memcontrol.models.pipeline import load_pipeline
from memcontrol.runtime import native_resolution

FAST = [
    "--num_inference_steps",
    "2",
    "--guidance_scale",
    "1.5",
    "--extraction_samples",
    "3",
    "--extraction_min_group",
    "2",
    "--device",
    "cpu",
    "--audit_prompts",
    "3",
]


def test_evaluate_writes_the_paper_metrics(tiny_model_dir, tiny_data_dir, tmp_path):
    train = [
        "train",
        "--pretrained_model_name_or_path",
        str(tiny_model_dir),
        "--train_data_dir",
        str(tiny_data_dir),
        "--output_dir",
        str(tmp_path / "model"),
        "--max_train_steps",
        "2",
        "--train_batch_size",
        "2",
        "--num_inference_steps",
        "2",
        "--validation_fraction",
        "0.2",
        "--test_fraction",
        "0.3",
        "--dmem_size",
        "2",
        "--dmem_repeats",
        "3",
        "--device",
        "cpu",
    ]
    assert main(train) == 0
    assert (
        main(
            [
                "evaluate",
                "--model_dir",
                str(tmp_path / "model"),
                "--output_dir",
                str(tmp_path / "eval"),
                "--feature_extractor",
                "pixels",
                *FAST,
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for key in ("fid", "amd", "extracted", "dmem_mean", "dmem_max"):
        assert isinstance(metrics[key], (int, float)), key
    assert metrics["alignment"] is None  # no class judge for user data with pixel features
    assert metrics["settings"]["guidance_scale"] == 1.5 and metrics["method"] == "full"
    assert (tmp_path / "eval" / "extraction.png").is_file()

    # --eval_split validation measures on the validation split's prompts and images, never the test split's
    splits = prepare_data(
        DataConfig(train_data_dir=str(tiny_data_dir), validation_fraction=0.2, test_fraction=0.3)
    ).splits
    assert len(splits["validation"]) != len(splits["test"])
    assert metrics["num_test"] == len(splits["test"])
    assert (
        main(
            [
                "evaluate",
                "--model_dir",
                str(tmp_path / "model"),
                "--output_dir",
                str(tmp_path / "eval-validation"),
                "--feature_extractor",
                "pixels",
                "--eval_split",
                "validation",
                *FAST,
            ]
        )
        == 0
    )
    validation = json.loads((tmp_path / "eval-validation" / "metrics.json").read_text())
    assert validation["num_test"] == len(splits["validation"]) and validation["settings"]["eval_split"] == "validation"


def test_audit_takes_any_diffusers_folder(tiny_model_dir, tiny_data_dir, tmp_path):
    assert (
        main(
            [
                "audit",
                "--model_dir",
                str(tiny_model_dir),
                "--train_data_dir",
                str(tiny_data_dir),
                "--output_dir",
                str(tmp_path / "audit"),
                "--feature_extractor",
                "pixels",
                *FAST,
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "audit" / "metrics.json").read_text())
    assert len(metrics["attacked_prompts"]) == 3
    # The d_mem of that folder's model for the prompts it names, with the flags' steps, guidance and seed.
    pipe = load_pipeline(str(tiny_model_dir))
    expected = dmem_trajectory(
        pipe,
        metrics["attacked_prompts"],
        num_inference_steps=2,
        guidance_scale=1.5,
        seed=0,
        resolution=native_resolution(pipe),
        progress=False,
    )
    assert metrics["dmem"] == pytest.approx(expected.tolist(), rel=1e-5)
    summary = (float(expected.mean()), float(expected.max()))
    assert (metrics["dmem_mean"], metrics["dmem_max"]) == pytest.approx(summary, rel=1e-5)


def test_unknown_feature_extractor_is_exit_status_2(tiny_model_dir, tmp_path, capsys):
    assert main(["audit", "--model_dir", str(tiny_model_dir), "--feature_extractor", "sift", *FAST]) == 2
    assert "sift" in capsys.readouterr().err


def test_bad_attack_prompts_are_one_line_errors_naming_the_flag(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    for command, extra, flag in (
        (["evaluate", "--model_dir", str(tmp_path / "model")], ["--attack_prompts", "all"], "--attack_prompts"),
        (
            ["evaluate", "--model_dir", str(tmp_path / "model")],
            ["--attack_train_prompts", "0"],
            "--attack_train_prompts",
        ),
        (
            [
                "audit",
                "--model_dir",
                str(tiny_model_dir),
                "--train_data_dir",
                str(tiny_data_dir),
            ],  # audit has no train attack
            ["--attack_prompts", "train"],
            "--attack_prompts",
        ),
    ):
        assert (
            main([*command, "--output_dir", str(tmp_path / "out"), "--feature_extractor", "pixels", *FAST, *extra]) == 2
        )
        err = capsys.readouterr().err.strip()
        assert flag in err and "\n" not in err
    assert not (tmp_path / "out" / "metrics.json").exists()
