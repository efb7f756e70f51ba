"""Bad files and folders met by the commands: one line naming them, exit status 2, never a traceback."""

from __future__ import annotations

import json
import struct
import zlib

import pytest

from memcontrol.cli import main

FAST_TRAIN = [
    "--max_train_steps",
    "1",
    "--train_batch_size",
    "2",
    "--num_inference_steps",
    "2",
    "--validation_fraction",
    "0.2",
    "--test_fraction",
    "0.2",
    "--device",
    "cpu",
]


def _run(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err.replace("\r", "\n").strip().splitlines()[-1] if err.strip() else ""  # after any progress bar


def _train(capsys, model_dir, data_dir, out, *extra):
    return _run(
        capsys,
        "train",
        "--pretrained_model_name_or_path",
        str(model_dir),
        "--train_data_dir",
        str(data_dir),
        "--output_dir",
        str(out),
        *FAST_TRAIN,
        *extra,
    )


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` grayscale pixels and holds none: 45 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_huge_image_names_the_file_and_the_limit(capsys, tiny_model_dir, tiny_data_dir, tmp_path):
    (tiny_data_dir / "images" / "003.png").write_bytes(_png_header(20_000, 20_000))
    code, message = _train(capsys, tiny_model_dir, tiny_data_dir, tmp_path / "out")
    assert code == 2 and message.startswith("memcontrol train: error: image ")
    assert "003.png" in message and "178,956,970 pixels" in message


@pytest.mark.parametrize("file_name", ["../outside.png", "images/../../outside.png", "ABSOLUTE"])
def test_file_name_outside_the_data_folder_is_refused(file_name, capsys, tiny_model_dir, tiny_data_dir, tmp_path):
    outside = tiny_data_dir.parent / "outside.png"
    outside.write_bytes((tiny_data_dir / "images" / "000.png").read_bytes())  # it exists: only the rule refuses it
    file_name = str(outside) if file_name == "ABSOLUTE" else file_name
    metadata = tiny_data_dir / "metadata.jsonl"
    rows = metadata.read_text().splitlines()
    rows[1] = json.dumps({"file_name": file_name, "text": "a small dark circle"})
    metadata.write_text("\n".join(rows) + "\n")
    code, message = _train(capsys, tiny_model_dir, tiny_data_dir, tmp_path / "out")
    assert code == 2
    expected = f"{metadata} line 2: field 'file_name' {file_name!r} must be a relative path inside {tiny_data_dir}"
    assert message == f"memcontrol train: error: {expected}"


def test_file_name_that_climbs_back_inside_is_read(capsys, tiny_model_dir, tiny_data_dir, tmp_path):
    metadata = tiny_data_dir / "metadata.jsonl"
    metadata.write_text(metadata.read_text().replace('"images/001.png"', '"images/../images/001.png"'))
    code, message = _train(capsys, tiny_model_dir, tiny_data_dir, tmp_path / "out", "--max_train_steps", "0")
    assert code == 0, message


@pytest.fixture
def svdiff_model_dir(capsys, tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "svdiff"
    assert _train(capsys, tiny_model_dir, tiny_data_dir, out, "--method", "svdiff")[0] == 0
    return out


def test_truncated_trained_weights_are_named(capsys, svdiff_model_dir, tmp_path):
    weights = svdiff_model_dir / "trained.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    code, message = _run(
        capsys,
        "generate",
        "--model_dir",
        str(svdiff_model_dir),
        "--prompt",
        "a circle",
        "--num_images",
        "1",
        "--device",
        "cpu",
        "--output_dir",
        str(tmp_path / "images"),
    )
    assert code == 2 and message.startswith(f"memcontrol generate: error: {weights}: not a complete safetensors file")
    assert not list((tmp_path / "images").glob("*.png"))


def test_reloading_an_svdiff_model_shows_its_svds(capsys, svdiff_model_dir, tmp_path):
    code = main(
        [
            "generate",
            "--model_dir",
            str(svdiff_model_dir),
            "--prompt",
            "a circle",
            "--num_images",
            "1",
            "--num_inference_steps",
            "2",
            "--device",
            "cpu",
            "--output_dir",
            str(tmp_path / "images"),
        ]
    )
    assert code == 0 and "svdiff: SVD of weights" in capsys.readouterr().err


def test_audit_of_a_missing_model_names_model_dir(capsys, tmp_path):
    code, message = _run(
        capsys,
        "audit",
        "--model_dir",
        str(tmp_path / "nowhere"),
        "--device",
        "cpu",
        "--output_dir",
        str(tmp_path / "audit"),
    )
    assert code == 2
    assert message.startswith(f"memcontrol audit: error: --model_dir {tmp_path / 'nowhere'}: expected a diffusers")
