from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from memcontrol.data.imagefolder import (
    Example,
    check_new_output_dir,
    load_image,
    load_imagefolder,
    load_images,
)
from memcontrol.errors import UserError


def test_jsonl_with_optional_columns(tmp_path, write_dataset):
    root = write_dataset(
        tmp_path / "ds",
        [
            {"file_name": "a.png", "text": " a scan ", "subject_id": 7, "split": "train"},
            {"file_name": "sub/b.png", "text": "another scan", "split": "test"},
        ],
    )
    assert load_imagefolder(root) == [
        Example(root / "a.png", "a scan", "7", "train"),
        Example(root / "sub/b.png", "another scan", "sub/b.png", "test"),
    ]


def test_csv(tmp_path, write_image):
    root = tmp_path / "ds"
    write_image(root / "a.png")
    (root / "metadata.csv").write_text('file_name,text,subject_id\na.png,"a scan, frontal",p1\n')
    assert load_imagefolder(root) == [Example(root / "a.png", "a scan, frontal", "p1")]


@pytest.mark.parametrize(
    "rows, expected",
    [
        ([], "metadata.jsonl: has no rows"),
        ([{"text": "x"}], "line 1: missing field 'file_name'"),
        ([{"file_name": "a.png"}], "line 1: missing field 'text'"),
        ([{"file_name": "a.png", "text": "x"}, {"file_name": "b.png", "text": "  "}], "line 2: field 'text'"),
        ([{"file_name": "a.png", "text": "x", "split": "val"}], "split 'val' is not one of"),
    ],
)
def test_bad_rows(tmp_path, rows, expected, write_dataset):
    write_dataset(tmp_path / "ds", rows)
    with pytest.raises(UserError, match=expected):
        load_imagefolder(tmp_path / "ds")


def test_missing_image_is_named(tmp_path, write_dataset):
    write_dataset(tmp_path / "ds", [{"file_name": "gone.png", "text": "x"}], images=False)
    with pytest.raises(UserError, match="file_name 'gone.png' does not exist"):
        load_imagefolder(tmp_path / "ds")


def test_unparsable_jsonl_names_line(tmp_path, write_dataset):
    root = write_dataset(tmp_path / "ds", [{"file_name": "a.png", "text": "x"}])
    with open(root / "metadata.jsonl", "a") as f:
        f.write("{not json\n[1, 2]\n")
    with pytest.raises(UserError, match=r"metadata.jsonl line 2: not valid JSON"):
        load_imagefolder(root)
    (root / "metadata.jsonl").write_text("[1, 2]\n")
    with pytest.raises(UserError, match=r"line 1: expected a JSON object"):
        load_imagefolder(root)


def test_csv_without_text_column(tmp_path, write_image):
    root = tmp_path / "ds"
    write_image(root / "a.png")
    (root / "metadata.csv").write_text("file_name,caption\na.png,x\n")
    with pytest.raises(UserError, match=r"metadata.csv: missing column 'text'"):
        load_imagefolder(root)


def test_bad_folders(tmp_path):
    with pytest.raises(UserError, match="nope: does not exist or is not a directory"):
        load_imagefolder(tmp_path / "nope")
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="file: does not exist or is not a directory"):
        load_imagefolder(tmp_path / "file")
    with pytest.raises(UserError, match="no metadata.jsonl or metadata.csv"):
        load_imagefolder(tmp_path)


def test_load_image_resizes_shorter_side_and_center_crops(tmp_path, write_image):
    path = tmp_path / "wide.png"
    write_image(path, size=(30, 10), value=0)
    image = Image.open(path).convert("L")
    image.paste(255, (10, 0, 20, 10))  # bright middle third, dark sides
    image.save(path)
    x = load_image(path, 10)
    assert x.shape == (3, 10, 10) and x.dtype == torch.float32
    assert x[:, :, 2:8].min() > 0.9  # the crop kept the middle
    assert x.min() >= -1 and x.max() <= 1


def test_load_image_corrupt(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match="bad.png: cannot be read"):
        load_image(tmp_path / "bad.png", 8)


def test_load_images(tmp_path, write_image):
    examples = [Example(write_image(tmp_path / f"{i}.png", value=255), "x", str(i)) for i in range(3)]
    x = load_images(examples, 4, progress=False)
    assert x.shape == (3, 3, 4, 4) and torch.allclose(x, torch.ones_like(x))
    with pytest.raises(UserError, match="resolution 0"):
        load_images(examples, 0, progress=False)


def test_check_new_output_dir(tmp_path):
    assert check_new_output_dir(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "new").mkdir()
    assert check_new_output_dir(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "new" / "keep.txt").write_text("")
    with pytest.raises(UserError, match="new: already exists and is not empty"):
        check_new_output_dir(tmp_path / "new")


def test_metadata_encoding(tmp_path, write_image):
    root = tmp_path / "ds"
    write_image(root / "a.png")
    (root / "metadata.csv").write_bytes("\ufefffile_name,text\na.png,x\n".encode())  # as Excel saves it
    assert load_imagefolder(root)[0].text == "x"
    (root / "metadata.csv").write_bytes(b"file_name,text\na.png,caf\xe9\n")
    with pytest.raises(UserError, match="metadata.csv: not UTF-8 text"):
        load_imagefolder(root)


def test_load_16_bit_image_is_not_clipped(tmp_path):
    twelve_bit = np.array([[0, 4095], [2048, 4095]], dtype=np.uint16)  # 12-bit X-ray in a 16-bit PNG
    Image.fromarray(twelve_bit).save(tmp_path / "x.png")
    x = load_image(tmp_path / "x.png", 2)
    assert torch.allclose(x[0], torch.tensor([[-1.0, 1.0], [128 / 127.5 - 1, 1.0]]), atol=1e-5)
