"""Evaluating a fine-tuned model (`memcontrol evaluate`, the last stage of `memcontrol run`) and auditing any model
(`memcontrol audit`): load the model, pick the data and the encoder, write metrics.json."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from memcontrol.config import DataConfig, ModelConfig
from memcontrol.data.builtin import resolve_dataset
from memcontrol.data.imagefolder import load_imagefolder
from memcontrol.data.prepare import is_builtin, prepare_data
from memcontrol.errors import UserError
from memcontrol.io import ensure_writable_dir, write_json
from memcontrol.metrics.evaluate import EvalConfig, audit_model, evaluate_model
from memcontrol.metrics.setup import FeatureConfig, caption_classes, feature_extractor, resolve_sampling
from memcontrol.peft.trained import MANIFEST_FILE, load_model, load_trained
from memcontrol.runtime import WEIGHT_DTYPES, make_accelerator, native_resolution

METRICS_FILE = "metrics.json"


def run_evaluate(
    model_dir: str, output_dir: str | Path, model_cfg: ModelConfig, features: FeatureConfig, settings: EvalConfig
) -> dict:
    """Evaluate a `memcontrol train` output on the held-out split (``settings.eval_split``) of the data it was trained
    on."""
    device = make_accelerator(model_cfg).device
    pipe, manifest = load_trained(model_dir, device=device, dtype=WEIGHT_DTYPES[model_cfg.mixed_precision])
    data_cfg = DataConfig(**{f.name: manifest["config"][f.name] for f in dataclasses.fields(DataConfig)})
    data = prepare_data(data_cfg)
    builtin = is_builtin(data_cfg.train_data_dir)
    extractor = feature_extractor(features, builtin, device)
    settings = resolve_sampling(settings, manifest["base_model"])
    metrics = evaluate_model(
        pipe,
        train_examples=data.training,
        test_examples=data.splits[settings.eval_split],
        dmem_examples=data.dmem,
        resolution=manifest["resolution"],
        extractor=extractor,
        output_dir=output_dir,
        settings=settings,
        class_of=caption_classes(features, builtin, extractor),
        clip_model=features.clip_model,
        train_split=data.splits["train"],
    )
    return _write(
        output_dir, {**metrics, "model_dir": str(model_dir), "method": manifest["method"], "mask": manifest["mask"]}
    )


def run_audit(
    model_dir: str,
    train_data_dir: str | None,
    output_dir: str | Path,
    model_cfg: ModelConfig,
    features: FeatureConfig,
    settings: EvalConfig,
) -> dict:
    """Memorization metrics of any diffusers model (or `memcontrol train` output) against its training images."""
    device = make_accelerator(model_cfg).device
    dtype = WEIGHT_DTYPES[model_cfg.mixed_precision]
    pipe, base_model = load_model(_audited_model_dir(model_dir), device=device, dtype=dtype)
    examples = load_imagefolder(resolve_dataset(train_data_dir))
    extractor = feature_extractor(features, is_builtin(train_data_dir), device)
    metrics = audit_model(
        pipe,
        examples,
        resolution=native_resolution(pipe),
        extractor=extractor,
        output_dir=output_dir,
        settings=resolve_sampling(settings, base_model),
    )
    return _write(output_dir, {**metrics, "model_dir": str(model_dir), "train_data_dir": train_data_dir})


def _audited_model_dir(model_dir: str) -> str:
    """``--model_dir`` of `audit`, checked here so that the error names that flag, not the base model's."""
    path = Path(model_dir)
    if model_dir != "builtin" and not (path / MANIFEST_FILE).is_file() and not (path / "model_index.json").is_file():
        raise UserError(
            f"--model_dir {model_dir}: expected a diffusers folder (with model_index.json) or the output folder of"
            f" `memcontrol train` (with {MANIFEST_FILE})"
        )
    return model_dir


def _write(output_dir, metrics: dict) -> dict:
    write_json(ensure_writable_dir(output_dir) / METRICS_FILE, metrics)
    return metrics
