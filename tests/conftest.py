"""Fixtures shared by the whole suite: a tiny random diffusers folder and a tiny imagefolder."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from PIL import Image

from memcontrol.config import DataConfig, ModelConfig, SampleConfig, TrainConfig


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # pytest -n N runs N processes: one torch thread each, so that N workers on N cores do not oversubscribe them
        import torch

        torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    """Slow modules first: xdist hands out files in collection order, and the suite lasts as long as its longest
    worker."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Built-in datasets are materialised once per test session, away from the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MEMCONTROL_CACHE", str(tmp_path_factory.mktemp("memcontrol-cache")))
    mp.setenv("HF_HUB_OFFLINE", "1")
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A randomly initialised pipeline of the built-in architecture, written with save_pretrained."""
    from memcontrol.pretrain.components import random_pipeline

    path = tmp_path_factory.mktemp("tiny-sd")
    random_pipeline(seed=0).save_pretrained(path, safe_serialization=True)
    return path


def write_imagefolder(root, n=12, classes=("circle", "square", "triangle")):
    """n 16x16 grayscale images with class captions, one subject per two images."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        name = f"images/{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(root / name)
        rows.append(
            {
                "file_name": name,
                "text": f"a large bright {classes[i % len(classes)]} top left",
                "subject_id": f"p{i // 2}",
            }
        )
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture
def tiny_data_dir(tmp_path):
    return write_imagefolder(tmp_path / "data")


@pytest.fixture
def fast_train_flags(tiny_model_dir, tiny_data_dir):
    """fast_train_flags(out): `memcontrol train` flags for two steps of batch 2 of the tiny model on the tiny data."""

    def flags(out) -> list[str]:
        return [
            "--pretrained_model_name_or_path",
            str(tiny_model_dir),
            "--train_data_dir",
            str(tiny_data_dir),
            "--output_dir",
            str(out),
            "--max_train_steps",
            "2",
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

    return flags


@pytest.fixture
def tiny_configs(tiny_model_dir, tiny_data_dir):
    """Configs for a seconds-long run of the real code path on the tiny model and data."""
    return (
        ModelConfig(pretrained_model_name_or_path=str(tiny_model_dir), device="cpu"),
        DataConfig(train_data_dir=str(tiny_data_dir), validation_fraction=0.2, test_fraction=0.2),
        TrainConfig(train_batch_size=4, max_train_steps=4, lr_warmup_steps=0),
        SampleConfig(num_inference_steps=3, guidance_scale=1.5, sample_batch_size=8),
    )


@pytest.fixture
def tiny_search_config(tiny_model_dir, tiny_data_dir, tmp_path):
    """A YAML config for `memcontrol search` and `run`: seconds per trial on the tiny model and data."""
    import yaml

    path = tmp_path / "tiny-search.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "pretrained_model_name_or_path": str(tiny_model_dir),
                "train_data_dir": str(tiny_data_dir),
                "device": "cpu",
                "validation_fraction": 0.2,
                "test_fraction": 0.2,
                "dmem_size": 2,
                "dmem_repeats": 3,
                "method": "svdiff",
                "train_batch_size": 4,
                "max_train_steps": 2,
                "lr_warmup_steps": 0,
                "num_inference_steps": 2,
                "guidance_scale": 1.5,
                "sample_batch_size": 16,
                "feature_extractor": "pixels",
                "extraction_samples": 3,
                "extraction_min_group": 2,
                "n_trials": 3,
                "sampler": "nsga2",  # its generations at population 2: bred from the third trial on
                "population_size": 2,
                "proxy_fraction": 0.5,
                "heartbeat_interval": 1,
                "grace_period": 2,
            }
        )
    )
    return path


@pytest.fixture
def wait_for():
    """wait_for(condition, process, log_path, timeout): poll until ``condition()`` holds while the background
    ``process`` (whose output goes to ``log_path``) still runs; fail with the log's end if it ends or time runs out."""

    def wait(condition, process, log_path, timeout=180):
        deadline = time.monotonic() + timeout
        while not condition():
            assert process.poll() is None, f"the process ended early:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"timed out:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.02)

    return wait
