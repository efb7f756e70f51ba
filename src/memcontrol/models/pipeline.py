"""Load a diffusers-format Stable Diffusion folder from a local path (never from a hub)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from memcontrol.errors import UserError

BUILTIN_MODEL_DIR = Path(__file__).parent / "builtin" / "base"
REQUIRED_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
# Sampling settings a model folder may recommend in this file (diffusers ignores it).
RECOMMENDATIONS_FILE = "memcontrol.json"
DEFAULT_RECOMMENDATIONS = {"guidance_scale": 7.5, "num_inference_steps": 50}


def resolve_model_path(name_or_path: str | None) -> Path:
    """``None`` or ``"builtin"`` is the base model shipped with memcontrol; anything else a local folder."""
    if name_or_path in (None, "", "builtin"):
        return BUILTIN_MODEL_DIR
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise UserError(
            f"--pretrained_model_name_or_path {name_or_path}: no such directory (a local diffusers folder is expected)"
        )
    index = path / "model_index.json"
    missing = [c for c in REQUIRED_COMPONENTS if not (path / c).is_dir()]
    if not index.is_file() or missing:
        what = "model_index.json" if not index.is_file() else "subfolders " + ", ".join(missing)
        raise UserError(
            f"--pretrained_model_name_or_path {path}: not a diffusers Stable Diffusion folder (missing {what})"
        )
    return path


def load_pipeline(
    name_or_path: str | None = None, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> StableDiffusionPipeline:
    path = resolve_model_path(name_or_path)
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            path,
            dtype=dtype,
            local_files_only=True,
            use_safetensors=True,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    except (OSError, ValueError, json.JSONDecodeError) as e:
        raise UserError(
            f"--pretrained_model_name_or_path {path}: cannot be loaded as a diffusers pipeline ({_first_line(e)})"
        ) from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def recommendations(name_or_path: str | None) -> dict:
    """Sampling settings the model folder recommends, over diffusers' defaults."""
    path = resolve_model_path(name_or_path) / RECOMMENDATIONS_FILE
    found = json.loads(path.read_text()) if path.is_file() else {}
    return {**DEFAULT_RECOMMENDATIONS, **found}


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
