"""A fine-tuned model on disk = the base model's path + only what was trained + a manifest.

model_dir/
  trained.safetensors   the method's trained tensors (the whole U-Net for `full`)
  manifest.json         base model, method, mask, config, data fingerprint, results
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

import memcontrol
from memcontrol.errors import UserError
from memcontrol.io import atomic_path, ensure_writable_dir, write_json
from memcontrol.models.pipeline import BUILTIN_MODEL_DIR, load_pipeline, resolve_model_path
from memcontrol.peft import Mask, PeftMethod, get_method

WEIGHTS_FILE = "trained.safetensors"
MANIFEST_FILE = "manifest.json"


def base_model_reference(name_or_path: str | None) -> str:
    """``builtin`` for the shipped base model (its install path varies), else an absolute path."""
    path = resolve_model_path(name_or_path)
    return "builtin" if path == BUILTIN_MODEL_DIR else str(path.resolve())


def save_trained(
    model_dir: str | Path, pipe: StableDiffusionPipeline, method: PeftMethod, mask: Mask, manifest: dict
) -> Path:
    model_dir = ensure_writable_dir(model_dir)
    with atomic_path(model_dir / WEIGHTS_FILE) as tmp:
        save_file(method.trained_state(pipe.unet), str(tmp))
    write_json(
        model_dir / MANIFEST_FILE,
        {
            **manifest,
            "method": method.name,
            "mask": "".join(map(str, mask)),
            "memcontrol_version": memcontrol.__version__,
        },
    )
    return model_dir


def read_manifest(model_dir: str | Path) -> dict:
    path = Path(model_dir) / MANIFEST_FILE
    if not path.is_file():
        raise UserError(
            f"--model_dir {model_dir}: no {MANIFEST_FILE}; expected the output folder of `memcontrol train`"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise UserError(f"{path}: not valid JSON") from None


def load_trained(
    model_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> tuple[StableDiffusionPipeline, dict]:
    """Rebuild the fine-tuned pipeline: load the base, adapt it with the saved method, options and mask,
    load the trained part, and merge it into plain U-Net weights (sampling then costs what the base does).
    """
    manifest = read_manifest(model_dir)
    weights = Path(model_dir) / WEIGHTS_FILE
    if not weights.is_file():
        raise UserError(f"--model_dir {model_dir}: no {WEIGHTS_FILE}")
    _check_complete(weights)
    pipe = load_pipeline(manifest["base_model"], device=device, dtype=dtype)
    method = get_method(manifest["method"], manifest.get("config", {}))
    method.progress = progress
    method.apply(pipe.unet, [int(b) for b in manifest["mask"]])
    method.load_trained_state(pipe.unet, load_file(str(weights), device=str(pipe.device)))
    pipe.unet = method.merge(pipe.unet)
    pipe.unet.requires_grad_(False).eval()
    return pipe, manifest


def _check_complete(weights: Path) -> None:
    """Fail before the base model loads (and SV-DIFF's SVDs run) if the file is cut short or not safetensors:
    opening it reads only the header, which must describe a file of exactly this size."""
    try:
        with safe_open(str(weights), framework="pt"):
            pass
    except SafetensorError as e:  # a full disk, an interrupted copy
        raise UserError(f"{weights}: not a complete safetensors file ({e}); copy or train the model again") from None


def load_model(
    path: str | Path | None, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[StableDiffusionPipeline, str | None]:
    """A `memcontrol train` output (it has a manifest) or a plain diffusers folder (None: the built-in base),
    with the base model whose sampling recommendations apply."""
    if path is not None and (Path(path) / MANIFEST_FILE).is_file():
        pipe, manifest = load_trained(path, device=device, dtype=dtype)
        return pipe, manifest["base_model"]
    return load_pipeline(None if path is None else str(path), device=device, dtype=dtype), path
