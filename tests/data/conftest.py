"""Shared fixtures for the data tests: tiny images and imagefolders written in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _write_image(path: Path, size: tuple[int, int] = (12, 10), value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0]), value, dtype=np.uint8)).save(path)
    return path


def _write_dataset(root: Path, rows: list[dict], images: bool = True) -> Path:
    """An imagefolder with `metadata.jsonl` holding `rows`, and an image for each file_name."""
    root.mkdir(parents=True, exist_ok=True)
    for row in rows:
        if images and "file_name" in row:
            _write_image(root / row["file_name"])
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture
def write_image():
    """write_image(path, size=(w, h), value=v): a uniform grayscale image, format from the suffix."""
    return _write_image


@pytest.fixture
def write_dataset():
    """write_dataset(root, rows, images=True): `metadata.jsonl` of `rows` plus their images."""
    return _write_dataset


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """Point the built-in dataset cache at a fresh folder."""
    monkeypatch.setenv("MEMCONTROL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
