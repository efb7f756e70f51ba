"""The command line: typed flags and YAML, and bad input ending in one line with exit status 2."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from memcontrol.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err.strip()


def test_train_with_a_diffusers_folder_writes_weights_manifest_and_grid(
    fast_train_flags, capsys, tiny_model_dir, tmp_path
):
    code, err = _run(capsys, "train", *fast_train_flags(tmp_path / "out"))
    assert code == 0, err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["base_model"] == str(tiny_model_dir.resolve())
    assert manifest["method"] == "full" and manifest["result"]["steps"] == 2
    assert manifest["data"]["fingerprint"] and manifest["config"]["learning_rate"] == 5e-4
    assert (tmp_path / "out" / "trained.safetensors").is_file()
    assert (tmp_path / "out" / "samples" / "grid.png").is_file()


def test_yaml_config_is_read_and_flags_win(fast_train_flags, capsys, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"learning_rate": 1e-3, "max_train_steps": 3, "seed": 4}))
    argv = fast_train_flags(tmp_path / "out")
    code, err = _run(capsys, "train", "--config", str(config), *argv)
    assert code == 0, err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["config"]["learning_rate"] == 1e-3  # from the file
    assert manifest["config"]["seed"] == 4
    assert manifest["config"]["max_train_steps"] == 2  # the flag wins over the file


def test_generate_from_a_trained_model_is_reproducible(fast_train_flags, capsys, tmp_path):
    assert _run(capsys, "train", *fast_train_flags(tmp_path / "model"))[0] == 0
    common = [
        "--model_dir",
        str(tmp_path / "model"),
        "--prompt",
        "a large bright circle top left",
        "--num_images",
        "2",
        "--num_inference_steps",
        "2",
        "--device",
        "cpu",
    ]
    assert _run(capsys, "generate", *common, "--output_dir", str(tmp_path / "a"))[0] == 0
    assert _run(capsys, "generate", *common, "--output_dir", str(tmp_path / "b"))[0] == 0
    for name in ("0000.png", "0001.png", "grid.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def _bad_metadata(data_dir, text):
    (data_dir / "metadata.jsonl").write_text(text)
    return []


def _write(path, content: str | bytes, *args):
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return list(args)


BAD_INPUTS = {
    "data folder missing": (lambda d, m, t: ["--train_data_dir", str(t / "nowhere")], "nowhere"),
    "image unreadable": (lambda d, m, t: _write(d / "images" / "000.png", b"not a png"), "000.png"),
    "no caption column": (lambda d, m, t: _bad_metadata(d, '{"file_name": "images/000.png"}\n'), "text"),
    "file does not exist": (
        lambda d, m, t: _bad_metadata(d, '{"file_name": "images/gone.png", "text": "a"}\n'),
        "gone.png",
    ),
    "empty dataset": (lambda d, m, t: _bad_metadata(d, ""), "metadata.jsonl"),
    "model path missing": (lambda d, m, t: ["--pretrained_model_name_or_path", str(t / "no-model")], "no-model"),
    "model not diffusers": (
        lambda d, m, t: (t / "plain").mkdir() or ["--pretrained_model_name_or_path", str(t / "plain")],
        "model_index.json",
    ),
    "unknown method": (lambda d, m, t: ["--method", "magic"], "magic"),
    "bad mask": (lambda d, m, t: ["--mask", "10x1"], "--mask"),
    "bad YAML": (
        lambda d, m, t: _write(t / "bad.yaml", "learning_rate: [1,\n", "--config", str(t / "bad.yaml")),
        "bad.yaml",
    ),
    "unknown YAML key": (
        lambda d, m, t: _write(t / "k.yaml", "learning_rat: 1\n", "--config", str(t / "k.yaml")),
        "learning_rat",
    ),
    "wrong YAML type": (lambda d, m, t: _write(t / "w.yaml", "seed: many\n", "--config", str(t / "w.yaml")), "seed"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_status_2(
    fast_train_flags, case, capsys, tiny_model_dir, tiny_data_dir, tmp_path
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier-result.json").write_text("{}")
    make_args, must_name = BAD_INPUTS[case]
    extra = make_args(tiny_data_dir, tiny_model_dir, tmp_path)
    code, err = _run(capsys, "train", *fast_train_flags(out), *extra)
    assert code == 2 and "Traceback" not in err
    message = err.replace("\r", "\n").splitlines()[-1]  # after any progress bar
    assert message.startswith("memcontrol train: error: ") and must_name in message
    assert sorted(p.name for p in out.iterdir()) == ["earlier-result.json"]  # earlier results untouched


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_dir(fast_train_flags, capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, err = _run(capsys, "train", *fast_train_flags(locked / "out"))
    assert code == 2 and "locked" in err


def test_output_dir_that_is_a_file(fast_train_flags, capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, err = _run(capsys, "train", *fast_train_flags(blocker / "out"))
    assert code == 2 and "output directory" in err


def test_mixed_precision_bf16_trains_and_samples(fast_train_flags, capsys, tmp_path):
    code, err = _run(capsys, "train", *fast_train_flags(tmp_path / "out"), "--mixed_precision", "bf16")
    assert code == 0, err
    assert (tmp_path / "out" / "samples" / "grid.png").is_file()
