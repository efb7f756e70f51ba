"""From a DataConfig to the lists every command uses: splits, D_mem, the training list."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from memcontrol.config import DataConfig
from memcontrol.data.builtin import BUILTIN_PREFIX, resolve_dataset
from memcontrol.data.imagefolder import Example, load_image, load_imagefolder
from memcontrol.data.memorization import with_memorization_set
from memcontrol.data.splits import split_examples
from memcontrol.errors import UserError

# The built-in scenario: a small training set in which D_mem is a large share, so that full
# fine-tuning memorises within CPU minutes. User data gets neither unless asked.
BUILTIN_DEFAULTS = {"dmem_size": 10, "max_train_samples": 400}


@dataclass
class PreparedData:
    root: Path
    splits: dict[str, list[Example]]
    dmem: list[Example]  # the unique pairs that were duplicated
    training: list[Example]  # train split plus the D_mem copies
    fingerprint: str

    def describe(self) -> dict:
        return {
            "root": str(self.root),
            "fingerprint": self.fingerprint,
            **{f"num_{name}": len(examples) for name, examples in self.splits.items()},
            "num_training_items": len(self.training),
            "dmem": [e.text for e in self.dmem],
        }


def is_builtin(train_data_dir: str | None) -> bool:
    return train_data_dir is None or str(train_data_dir).startswith(BUILTIN_PREFIX)


def prepare_data(cfg: DataConfig) -> PreparedData:
    root = resolve_dataset(cfg.train_data_dir)
    examples = load_imagefolder(root)
    test = cfg.test_fraction
    splits = split_examples(
        examples, (1 - cfg.validation_fraction - test, cfg.validation_fraction, test), seed=cfg.split_seed
    )
    if not splits["train"]:
        raise UserError(f"{root}: the train split is empty; lower --validation_fraction/--test_fraction")
    defaults = BUILTIN_DEFAULTS if is_builtin(cfg.train_data_dir) else {"dmem_size": 0, "max_train_samples": None}
    size = cfg.dmem_size if cfg.dmem_size is not None else defaults["dmem_size"]
    limit = cfg.max_train_samples if cfg.max_train_samples is not None else defaults["max_train_samples"]
    training, dmem = with_memorization_set(splits["train"], size, cfg.dmem_repeats, cfg.dmem_rule, seed=cfg.split_seed)
    if limit is not None:
        training = _limit_distinct(training, dmem, limit, seed=cfg.split_seed)
    return PreparedData(root, splits, dmem, training, fingerprint(examples))


def _limit_distinct(training: list[Example], dmem: list[Example], limit: int, seed: int) -> list[Example]:
    """Keep every D_mem copy and a seeded sample of the other examples, ``limit`` distinct images in all."""
    if limit < len(dmem):
        raise UserError(f"--max_train_samples {limit}: must be at least the D_mem size ({len(dmem)})")
    kept_dmem = set(dmem)
    others = [e for e in training if e not in kept_dmem]
    others = random.Random(seed).sample(others, min(len(others), limit - len(dmem)))
    return [e for e in training if e in kept_dmem] + others


def fingerprint(examples: list[Example]) -> str:
    """Changes when a file, its size or its caption changes (file contents are not hashed: too slow at scale)."""
    digest = hashlib.sha256()
    for e in sorted(examples, key=lambda e: str(e.image_path)):
        digest.update(f"{e.image_path.name}\t{e.image_path.stat().st_size}\t{e.text}\t{e.subject_id}\n".encode())
    return digest.hexdigest()[:16]


class ImageDataset(Dataset):
    def __init__(self, examples: list[Example], resolution: int):
        self.examples, self.resolution = examples, resolution

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> torch.Tensor:
        return load_image(self.examples[i].image_path, self.resolution)


def image_batches(examples: list[Example], resolution: int, batch_size: int = 64, num_workers: int = 0) -> DataLoader:
    """Images in [-1, 1], in order, for encoding; files are read lazily so any dataset size fits."""
    return DataLoader(ImageDataset(examples, resolution), batch_size=batch_size, num_workers=num_workers)
