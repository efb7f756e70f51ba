"""Read and write datasets in the Hugging Face imagefolder layout.

A dataset is a folder of images plus ``metadata.jsonl`` (or ``metadata.csv``) with the columns
``file_name`` and ``text``, and optionally ``subject_id`` and ``split``. Using the same layout as
`datasets`/`diffusers` means a user's existing folders work unchanged.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from memcontrol.errors import UserError
from memcontrol.io import write_text

METADATA_FILES = ("metadata.jsonl", "metadata.csv")
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Example:
    """One image-caption pair. `subject_id` groups images of one patient so splits keep them together."""

    image_path: Path
    text: str
    subject_id: str
    split: str | None = None


def load_imagefolder(root: str | os.PathLike) -> list[Example]:
    """Read and check a dataset folder, so that bad rows fail now rather than mid-training."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"dataset folder {root}: does not exist or is not a directory")
    metadata = _metadata_file(root)
    examples = [_example(root, metadata, where, row) for where, row in _read_rows(metadata)]
    if not examples:
        raise UserError(f"{metadata}: has no rows; expected one row per image")
    return examples


def _metadata_file(root: Path) -> Path:
    for name in METADATA_FILES:
        if (root / name).is_file():
            return root / name
    raise UserError(f"dataset folder {root}: no {' or '.join(METADATA_FILES)} found")


def _read_rows(metadata: Path) -> Iterator[tuple[str, dict]]:
    """Yield (location for error messages, row) pairs."""
    try:
        yield from (_read_jsonl if metadata.suffix == ".jsonl" else _read_csv)(metadata)
    except UnicodeDecodeError as e:
        raise UserError(f"{metadata}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _read_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    with path.open(encoding="utf-8-sig") as f:  # -sig: tolerate a byte-order mark
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path} line {number}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path} line {number}: expected a JSON object with file_name and text")
            yield f"line {number}", row


def _read_csv(path: Path) -> Iterator[tuple[str, dict]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        for column in ("file_name", "text"):
            if column not in columns:
                raise UserError(f"{path}: missing column {column!r} (found columns: {columns})")
        try:
            for row in reader:
                yield f"line {reader.line_num}", row
        except csv.Error as e:
            raise UserError(f"{path} line {reader.line_num}: not valid CSV ({e})") from None


def _example(root: Path, metadata: Path, where: str, row: dict) -> Example:
    file_name = _field(row, "file_name", metadata, where)
    text = _field(row, "text", metadata, where)
    if not _inside(file_name):  # a dataset must not make us read (and train on, and publish samples of) other files
        raise UserError(f"{metadata} {where}: field 'file_name' {file_name!r} must be a relative path inside {root}")
    image_path = root / file_name
    if not image_path.is_file():
        raise UserError(f"{metadata} {where}: file_name {file_name!r} does not exist in {root}")
    subject_id = _optional(row, "subject_id") or file_name
    split = _optional(row, "split")
    if split is not None and split not in SPLITS:
        raise UserError(f"{metadata} {where}: split {split!r} is not one of {', '.join(SPLITS)}")
    return Example(image_path=image_path, text=text, subject_id=subject_id, split=split)


def _inside(file_name: str) -> bool:
    """Whether ``file_name`` names a path under the data folder: not absolute, and no ``..`` climbing above it."""
    path = PurePath(file_name)
    return not path.anchor and PurePath(os.path.normpath(path)).parts[:1] != (os.pardir,)


def _field(row: dict, name: str, metadata: Path, where: str) -> str:
    value = row.get(name)
    if value is None:
        raise UserError(f"{metadata} {where}: missing field {name!r}")
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{metadata} {where}: field {name!r} must be a non-empty string, got {value!r}")
    return value.strip()


def _optional(row: dict, name: str) -> str | None:
    """An optional column; absent, null and blank all mean "not given"."""
    value = row.get(name)
    if value is None:
        return None
    return str(value).strip() or None


def load_image(path: str | os.PathLike, resolution: int) -> torch.Tensor:
    """Return a (3, R, R) float32 tensor in [-1, 1].

    Shorter side resized to R then center-cropped; no random flips, because mirroring a medical
    image moves the anatomy (a heart on the right is a different finding).
    """
    try:
        with Image.open(path) as image:
            image = _to_rgb(image)
    except (OSError, ValueError) as e:
        raise UserError(f"image {path}: cannot be read ({e})") from None
    except Image.DecompressionBombError:  # PIL's guard against images that would exhaust memory when decoded
        limit = f"{2 * Image.MAX_IMAGE_PIXELS:,} pixels"
        raise UserError(f"image {path}: larger than {limit}, PIL's decompression-bomb limit; resize it") from None
    image = center_crop(resize_shorter_side(image, resolution), resolution)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert to 8-bit RGB, stretching high-bit-depth grayscale by its maximum.

    X-rays often come as 16-bit (or 12-bit-in-16) PNGs, which PIL's own conversion clips to white.
    """
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        array = np.asarray(image, dtype=np.float32).clip(0, None)
        array = np.round(array * (255 / max(float(array.max()), 1.0)))
        image = Image.fromarray(array.astype(np.uint8))
    return image.convert("RGB")


def load_images(examples: Iterable[Example], resolution: int, progress: bool = True) -> torch.Tensor:
    """Load all images into one (N, 3, R, R) tensor: small datasets fit in memory and train faster."""
    examples = list(examples)
    images = [
        load_image(e.image_path, resolution)
        for e in tqdm(examples, desc="loading images", unit="img", disable=not progress)
    ]
    return torch.stack(images) if images else torch.empty(0, 3, resolution, resolution)


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """Bicubic resize keeping the aspect ratio, so the shorter side becomes `size`."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise UserError(f"resolution {size!r}: expected a positive integer")
    width, height = image.size
    scale = size / min(width, height)
    new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
    return image.resize(new_size, Image.Resampling.BICUBIC)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))


def write_metadata(root: Path, rows: Iterable[dict]) -> None:
    """Write `metadata.jsonl`: JSON lines, so captions may hold commas and quotes safely."""
    write_text(root / "metadata.jsonl", "".join(json.dumps(row) + "\n" for row in rows))


def check_new_output_dir(path: str | os.PathLike) -> Path:
    """Refuse to write over a non-empty folder: an importer must never replace a user's files."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(f"output directory {path}: already exists and is not empty; expected a new folder")
    return path
