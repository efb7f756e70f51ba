"""`memcontrol train --mitigation ...`: flags reach the engine, the manifest records them, bad values are one line."""

from __future__ import annotations

import json

import pytest

from memcontrol.cli import main


def _train(capsys, model_dir, data_dir, out, *extra):
    code = main(
        [
            "train",
            "--pretrained_model_name_or_path",
            str(model_dir),
            "--train_data_dir",
            str(data_dir),
            "--output_dir",
            str(out),
            "--max_train_steps",
            "3",
            "--train_batch_size",
            "4",
            "--num_inference_steps",
            "2",
            "--validation_fraction",
            "0.2",
            "--test_fraction",
            "0.2",
            "--device",
            "cpu",
            *extra,
        ]
    )
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--mitigation", "rwa", "--rwa_probability", "0.5"], dict(mitigation="rwa", rwa_probability=0.5, rwa_words=2)),
        (
            ["--mitigation", "threshold", "--threshold", "0"],
            dict(mitigation="threshold", threshold=0.0, threshold_quantile=None),
        ),
    ],
)
def test_train_with_a_mitigation_records_it(capsys, tiny_model_dir, tiny_data_dir, tmp_path, flags, expected):
    code, err = _train(capsys, tiny_model_dir, tiny_data_dir, tmp_path / "out", *flags)
    assert code == 0, err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert expected.items() <= manifest["config"].items()
    skipped = 3 if expected["mitigation"] == "threshold" else 0  # threshold 0 leaves every sample out
    assert manifest["result"]["skipped_batches"] == skipped and manifest["result"]["dropped_samples"] == 4 * skipped


def test_a_bad_mitigation_is_one_line(capsys, tiny_model_dir, tiny_data_dir, tmp_path):
    code, err = _train(capsys, tiny_model_dir, tiny_data_dir, tmp_path / "out", "--mitigation", "threshold")
    assert code == 2 and err.startswith("memcontrol train: error: ") and "--threshold" in err and "\n" not in err
