"""Built-in datasets, written as imagefolders from data bundled with installed packages.

They let every command run offline in seconds on a CPU (no download, no credentials), while
keeping the paper's protocol: a few captions carry a unique case code (``... case k412``), so
those pairs are unique and can be duplicated into a memorization set, and the remaining coded
pairs serve as controls with captions of the same length.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from memcontrol.data.imagefolder import write_metadata
from memcontrol.data.vocabulary import (
    CASE_CODES,
    CASE_SUFFIX,
    DIGIT_CAPTION,
    DIGIT_NAMES,
    FACE_CAPTION,
    FACE_CLASSES,
)
from memcontrol.errors import UserError
from memcontrol.io import atomic_dir

VERSION = "v1"  # bump when a dataset's content changes, so stale caches are not reused
BUILTIN_PREFIX = "builtin:"
CODE_SEED = 0


def _digits() -> tuple[np.ndarray, list[str], int]:
    """scikit-learn's 1,797 real 8x8 digits (values 0..16), ink bright on black."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    return images, [DIGIT_CAPTION.format(name=DIGIT_NAMES[y]) for y in digits.target], 3


def _faces() -> tuple[np.ndarray, list[str], int]:
    """scikit-image's LFW subset: 200 images of 25x25, the first 100 faces, the last 100 not."""
    from skimage.data import lfw_subset

    faces = lfw_subset()
    if faces.dtype != np.uint8:  # scikit-image returns floats in [0, 1] despite its docstring
        faces = np.round(faces * 255).astype(np.uint8)
    names = [FACE_CLASSES[0]] * 100 + [FACE_CLASSES[1]] * (len(faces) - 100)
    return faces, [FACE_CAPTION.format(name=name) for name in names], 10


# name -> () -> (grayscale uint8 images (N, H, W), captions, coded captions per class)
BUILTIN_DATASETS: dict[str, Callable[[], tuple[np.ndarray, list[str], int]]] = {
    "digits": _digits,
    "faces": _faces,
}


def cache_dir() -> Path:
    return Path(os.environ.get("MEMCONTROL_CACHE") or Path.home() / ".cache" / "memcontrol")


def builtin_dataset_path(name: str) -> Path:
    """Path of built-in dataset `name`, written on first use and reused afterwards."""
    if name not in BUILTIN_DATASETS:
        raise UserError(f"built-in dataset {name!r}: unknown; expected one of {', '.join(BUILTIN_DATASETS)}")
    path = cache_dir() / "datasets" / f"{name}-{VERSION}"
    if not path.is_dir():
        with atomic_dir(path) as tmp:
            _write(tmp, *BUILTIN_DATASETS[name]())
    return path


def resolve_dataset(train_data_dir: str | os.PathLike | None) -> Path:
    """None -> built-in `digits`; ``builtin:NAME`` -> that built-in; anything else is a folder path."""
    if train_data_dir is None:
        return builtin_dataset_path("digits")
    if isinstance(train_data_dir, str) and train_data_dir.startswith(BUILTIN_PREFIX):
        return builtin_dataset_path(train_data_dir.removeprefix(BUILTIN_PREFIX))
    return Path(train_data_dir)


def add_case_codes(captions: Sequence[str], per_class: int, seed: int = CODE_SEED) -> list[str]:
    """Append a distinct case code to `per_class` seeded-chosen captions of each distinct caption."""
    rng = random.Random(seed)
    chosen = [
        i
        for caption in sorted(set(captions))
        for i in rng.sample([i for i, c in enumerate(captions) if c == caption], per_class)
    ]
    codes = rng.sample(CASE_CODES, len(chosen))
    coded = list(captions)
    for i, code in zip(chosen, codes):
        coded[i] += CASE_SUFFIX.format(code=code)
    return coded


def _write(root: Path, images: np.ndarray, captions: list[str], per_class: int) -> None:
    """Save grayscale PNGs at native size; the model's resolution is applied when loading."""
    (root / "images").mkdir()
    rows = []
    for i, (image, caption) in enumerate(zip(images, add_case_codes(captions, per_class))):
        file_name = f"images/{i:04d}.png"
        Image.fromarray(image).save(root / file_name)
        rows.append({"file_name": file_name, "text": caption})
    write_metadata(root, rows)
