"""MedMNIST ``.npz`` files -> imagefolder with captions made from the class labels.

MedMNIST has no patient ids, so each image is its own subject; its official train/val/test split
is kept in the `split` column (MedMNIST made it patient-wise where the source allowed).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from string import Formatter

import numpy as np
from numpy.lib.npyio import NpzFile
from PIL import Image

from memcontrol.data.imagefolder import check_new_output_dir, write_metadata
from memcontrol.errors import UserError
from memcontrol.io import atomic_dir

CHESTMNIST_FINDINGS = (
    "atelectasis",
    "cardiomegaly",
    "effusion",
    "infiltration",
    "mass",
    "nodule",
    "pneumonia",
    "pneumothorax",
    "consolidation",
    "edema",
    "emphysema",
    "fibrosis",
    "pleural thickening",
    "hernia",
)
LABEL_NAMES: dict[str, dict[int, str]] = {
    "pneumoniamnist": {0: "normal", 1: "pneumonia"},
    "chestmnist": dict(enumerate(CHESTMNIST_FINDINGS)),
}
NO_FINDING = "no finding"
SPLITS = {"train": "train", "val": "validation", "test": "test"}  # npz prefix -> split column
KEYS = tuple(f"{prefix}_{kind}" for prefix in SPLITS for kind in ("images", "labels"))


def import_medmnist(
    npz_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    labels: dict[int, str] | None = None,
    template: str = "a chest x-ray showing {label}",
    flag: str | None = None,
) -> Path:
    """Write every image of the three splits as a PNG captioned ``template.format(label=...)``.

    Multi-label files (labels of shape (N, K), e.g. chestmnist) join the positive findings with
    " and ", or say "no finding". Label names come from `labels`, else from the built-in table
    for `flag` (guessed from the file name, e.g. ``pneumoniamnist_224.npz``).
    """
    npz_path, output_dir = Path(npz_path), check_new_output_dir(output_dir)
    names = labels or _builtin_labels(npz_path, flag)
    _check_template(template)
    with _open_npz(npz_path) as npz, atomic_dir(output_dir) as tmp:
        rows = [row for prefix in SPLITS for row in _write_split(npz_path, npz, prefix, tmp, names, template)]
        write_metadata(tmp, rows)
    return output_dir


def _write_split(
    npz_path: Path, npz: NpzFile, prefix: str, out: Path, names: dict[int, str], template: str
) -> list[dict]:
    """Save one split's images as PNGs (one split in memory at a time: the 224 px files are GBs)."""
    images, targets = _split_arrays(npz_path, npz, prefix)
    split = SPLITS[prefix]
    (out / split).mkdir()
    rows = []
    for i, (image, target) in enumerate(zip(images, targets)):
        file_name = f"{split}/{i:06d}.png"
        Image.fromarray(image).save(out / file_name)
        caption = template.format(label=_label_text(target, names, npz_path))
        rows.append({"file_name": file_name, "text": caption, "split": split})
    return rows


def _builtin_labels(npz_path: Path, flag: str | None) -> dict[int, str]:
    flag = (flag or npz_path.stem.split("_")[0]).lower()
    if flag not in LABEL_NAMES:
        raise UserError(
            f"{npz_path}: no built-in label names for {flag!r} (known: {', '.join(LABEL_NAMES)}); "
            "pass labels={index: name}"
        )
    return LABEL_NAMES[flag]


def _check_template(template: str) -> None:
    try:
        fields = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
    except ValueError:
        fields = set()
    if fields != {"label"}:
        raise UserError(f"template {template!r}: expected a format string whose only field is {{label}}")


def _open_npz(npz_path: Path) -> NpzFile:
    """Open the archive and check its keys; arrays are read later, one split at a time."""
    try:
        npz = np.load(npz_path)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise UserError(f"{npz_path}: cannot be read as a MedMNIST .npz ({e})") from None
    if not isinstance(npz, NpzFile):
        raise UserError(f"{npz_path}: is a single array, expected a MedMNIST .npz archive")
    missing = [key for key in KEYS if key not in npz.files]
    if missing:
        npz.close()
        raise UserError(f"{npz_path}: missing key(s) {', '.join(missing)}; a MedMNIST .npz has {', '.join(KEYS)}")
    return npz


def _split_arrays(npz_path: Path, npz: NpzFile, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        images, labels = npz[f"{prefix}_images"], npz[f"{prefix}_labels"]
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise UserError(f"{npz_path}: {prefix} arrays cannot be read ({e})") from None
    if images.dtype != np.uint8 or not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3)):
        raise UserError(
            f"{npz_path}: {prefix}_images has dtype {images.dtype} and shape {images.shape}; "
            "expected uint8 (N, H, W) or (N, H, W, 3)"
        )
    if labels.ndim not in (1, 2) or len(labels) != len(images):
        raise UserError(
            f"{npz_path}: {prefix}_labels has shape {labels.shape}; expected ({len(images)}, 1) or ({len(images)}, K)"
        )
    return images, labels


def _label_text(target: np.ndarray, names: dict[int, str], npz_path: Path) -> str:
    """Name of a class index, or the joined names of a multi-hot vector's positives."""
    target = np.atleast_1d(target)
    indices = [int(target[0])] if len(target) == 1 else [int(i) for i in np.flatnonzero(target)]
    unknown = [i for i in indices if i not in names]
    if unknown:
        raise UserError(f"{npz_path}: label {unknown[0]} has no name; expected one of {sorted(names)} in labels")
    return " and ".join(names[i] for i in indices) or NO_FINDING
