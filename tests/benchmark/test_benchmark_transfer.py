"""Transfer: a search's best_mask.json trains on another dataset (`train --mask`, `benchmark --mask_file`);
a file that does not fit the method or the model is a one-line error."""

import json

import pytest

from memcontrol.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


def _on_faces(tiny_model_dir, out):
    """The tiny model fine-tuned on the second built-in dataset for two steps."""
    return [
        "--pretrained_model_name_or_path",
        str(tiny_model_dir),
        "--train_data_dir",
        "builtin:faces",
        "--device",
        "cpu",
        "--train_batch_size",
        "4",
        "--max_train_steps",
        "2",
        "--lr_warmup_steps",
        "0",
        "--dmem_size",
        "2",
        "--dmem_repeats",
        "3",
        "--num_inference_steps",
        "2",
        "--output_dir",
        str(out),
    ]


def test_a_searched_mask_trains_on_another_dataset(tiny_search_config, tiny_model_dir, tmp_path, capsys):
    search = tmp_path / "search"
    code, err = _run(
        capsys, "search", "--config", str(tiny_search_config), "--output_dir", str(search), "--n_trials", "1"
    )
    assert code == 0, err
    best_file = search / "best_mask.json"
    best = json.loads(best_file.read_text())

    code, err = _run(
        capsys,
        "train",
        "--method",
        best["method"],
        "--mask",
        str(best_file),
        *_on_faces(tiny_model_dir, tmp_path / "faces"),
    )
    assert code == 0, err
    manifest = json.loads((tmp_path / "faces" / "manifest.json").read_text())
    assert (manifest["method"], manifest["mask"]) == (best["method"], best["mask"])
    assert manifest["config"]["learning_rate"] == best["learning_rate"] and manifest["data"]["root"].endswith(
        "faces-v1"
    )

    # The benchmark's memcontrol row takes the same file: no search of its own.
    out = tmp_path / "benchmark"
    code, err = _run(
        capsys,
        "benchmark",
        "--mask_file",
        str(best_file),
        "--methods",
        "memcontrol",
        "--mitigations",
        "none",
        "--seeds",
        "0",
        "--feature_extractor",
        "pixels",
        "--fid_samples",
        "2",
        "--extraction_samples",
        "2",
        "--extraction_min_group",
        "2",
        *_on_faces(tiny_model_dir, out),
    )
    assert code == 0, err
    (line,) = (out / "table.csv").read_text().splitlines()[1:]
    assert (
        line.startswith(f"memcontrol,{best['method']},{best['mask']},{best['learning_rate']},none,")
        and not (out / "search").exists()
    )


def test_an_explicit_learning_rate_wins_over_the_files(tiny_model_dir, tmp_path, capsys):
    best_file = tmp_path / "best_mask.json"
    best_file.write_text(json.dumps({"method": "difffit", "mask": "0110100", "learning_rate": 0.02}))
    code, err = _run(
        capsys,
        "train",
        "--method",
        "difffit",
        "--mask",
        str(best_file),
        "--learning_rate",
        "0.001",
        *_on_faces(tiny_model_dir, tmp_path / "out"),
    )
    assert code == 0, err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["mask"], manifest["config"]["learning_rate"]) == ("0110100", 0.001)


@pytest.mark.parametrize(
    "content, must_name",
    [
        (
            {"method": "svdiff", "mask": "1011001", "learning_rate": 0.01},
            "give --method svdiff",
        ),  # another method's mask
        (
            {"method": "difffit", "mask": "1011001101011", "learning_rate": 0.01},
            "13 bits",
        ),  # the paper layout's, or SD v1.5's
        ({"mask": "1011001"}, "with its method and mask"),  # not a search's file
        ("{not json", "not valid JSON"),
    ],
)
def test_a_mask_file_that_does_not_fit_is_a_one_line_error(content, must_name, tiny_model_dir, tmp_path, capsys):
    best_file = tmp_path / "best_mask.json"
    best_file.write_text(content if isinstance(content, str) else json.dumps(content))
    code, err = _run(
        capsys, "train", "--method", "difffit", "--mask", str(best_file), *_on_faces(tiny_model_dir, tmp_path / "out")
    )
    message = err.replace("\r", "\n").splitlines()[-1]  # after any progress bar
    assert code == 2 and "Traceback" not in err
    assert message.startswith("memcontrol train: error: --mask ") and str(best_file) in message and must_name in message
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_mask_that_is_neither_bits_nor_a_file(tiny_model_dir, tmp_path, capsys):
    code, err = _run(capsys, "train", "--mask", "10x1", *_on_faces(tiny_model_dir, tmp_path / "out"))
    assert code == 2 and err.endswith("--mask 10x1: neither a string of 0 and 1 such as 1011 nor a best_mask.json file")
