"""Typed configuration: dataclasses whose fields are the command-line flags and the YAML keys.

Precedence: field default < ``--config file.yaml`` < flags on the command line. Flag names follow
diffusers' ``train_text_to_image.py`` where the concept exists there. Written by hand rather than
with jsonargparse because we want flat diffusers-style flags and one-line errors (exit status 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from memcontrol.errors import UserError

# Where a mask's bits act (see memcontrol.peft.base): one bit per Transformer2DModel block, or the authors' layout.
LAYOUTS = ("blocks", "paper")


def opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class ModelConfig:
    pretrained_model_name_or_path: str | None = opt(
        None, "local diffusers Stable Diffusion folder; default: the built-in base model"
    )
    mixed_precision: str = opt("no", "no, fp16 or bf16 (autocast; trainable weights stay fp32)", choices=("no", "fp16", "bf16"))
    device: str = opt("auto", "auto (the accelerator if there is one; CUDA_VISIBLE_DEVICES picks which) or cpu", choices=("auto", "cpu"))


@dataclass
class DataConfig:
    train_data_dir: str | None = opt(
        None, "imagefolder with metadata.jsonl/csv (file_name, text[, subject_id, split]); builtin:NAME for a built-in set; default: builtin:digits"
    )
    resolution: int | None = opt(None, "image side in pixels; default: the model's native size")
    validation_fraction: float = opt(0.1, "share of subjects held out for validation")
    test_fraction: float = opt(0.1, "share of subjects held out for testing")
    split_seed: int = opt(0, "seed of the subject-level split")
    max_train_samples: int | None = opt(
        None, "use at most this many distinct training images (D_mem kept); default: 400 on built-in data, all on yours"
    )
    dmem_size: int | None = opt(
        None, "image-caption pairs duplicated into the memorization set D_mem; default: 10 on built-in data, 0 on yours"
    )
    dmem_repeats: int = opt(50, "times each D_mem pair appears in the training set")
    dmem_rule: str = opt("most_tokens", "how D_mem pairs are chosen", choices=("most_tokens", "random", "most_frequent_caption"))
    dataloader_num_workers: int = opt(0, "processes reading images while latents are cached")


@dataclass
class TrainConfig:
    method: str = opt("full", "fine-tuning method (see `memcontrol sites`)")
    mask: str | None = opt(None, "one 0/1 bit per site of the method, e.g. 1011001; default: all on")
    layout: str = opt(
        "blocks", "sites of the mask: blocks (one per Transformer2DModel block) or paper (the authors' 13/16-bit masks)", choices=LAYOUTS
    )
    train_outside_sites: bool = opt(
        False, "blocks layout: also train what the method has outside every site (resnets, norms, conv_in/out); `full` always does"
    )
    lora_rank: int = opt(4, "rank of the LoRA matrices (--method lora)")
    norm_learning_rate: float = opt(1e-6, "learning rate of SV-DIFF's norm-layer deltas (the authors' 1e-6)")
    train_batch_size: int = opt(32, "samples per optimisation step")
    max_train_steps: int = opt(500, "optimisation steps")
    learning_rate: float = opt(5e-4, "AdamW learning rate after warm-up")
    lr_scheduler: str = opt("constant_with_warmup", "diffusers scheduler name: constant, constant_with_warmup, cosine, linear ...")
    lr_warmup_steps: int = opt(50, "linear warm-up steps")
    adam_weight_decay: float = opt(1e-2, "AdamW weight decay")
    max_grad_norm: float = opt(1.0, "gradient clipping norm")
    caption_dropout: float = opt(0.1, "probability that a caption is replaced by the empty one (for guidance)")
    gradient_checkpointing: bool = opt(False, "trade compute for memory in the U-Net")
    seed: int = opt(0, "seed of initialisation, batches and noise")


@dataclass
class SampleConfig:
    num_inference_steps: int | None = opt(None, "DDIM steps; default: the model's recommendation")
    guidance_scale: float | None = opt(None, "classifier-free guidance; default: the model's recommendation")
    sample_batch_size: int = opt(16, "images generated per forward pass")


def _base_type(annotation: Any) -> type:
    """``int | None`` -> int."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def add_arguments(parser: argparse.ArgumentParser, *classes: type) -> None:
    """One flag per field. Defaults are suppressed so that we can tell what the user typed."""
    for cls in classes:
        group = parser.add_argument_group(cls.__name__)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind = _base_type(hints[f.name])
            kwargs: dict[str, Any] = {"help": f.metadata.get("help", ""), "default": argparse.SUPPRESS}
            if kind is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["type"] = kind
                kwargs["choices"] = f.metadata.get("choices")
            group.add_argument(f"--{f.name}", **kwargs)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--config {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise UserError(f"--config {path}: not valid YAML{line}") from None
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: expected a mapping of option: value")
    return data


def build(classes: tuple[type, ...], args: argparse.Namespace, defaults: dict[str, Any] | None = None) -> tuple:
    """Instances of ``classes`` from ``defaults`` (over the fields'), the YAML file named by ``--config`` and the flags."""
    file_values = load_yaml(args.config) if getattr(args, "config", None) else {}
    known = {f.name for cls in classes for f in dataclasses.fields(cls)}
    unknown = sorted(set(file_values) - known)
    if unknown:
        raise UserError(f"--config {args.config}: unknown option {unknown[0]!r}")
    values = {**(defaults or {}), **file_values, **{k: v for k, v in vars(args).items() if k in known}}
    return tuple(_instance(cls, values, getattr(args, "config", None)) for cls in classes)


def _instance(cls: type, values: dict[str, Any], source: str | None) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            kwargs[f.name] = _checked(f, _base_type(hints[f.name]), values[f.name], source)
    return cls(**kwargs)


def _checked(f: dataclasses.Field, kind: type, value: Any, source: str | None) -> Any:
    where = f"--config {source}: " if source else ""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if value is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
        hint = " (quote it in YAML)" if kind is str else ""
        raise UserError(f"{where}option {f.name!r} expects {kind.__name__}{hint}, got {value!r}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise UserError(f"{where}option {f.name!r}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def as_dict(*configs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in configs:
        out.update(dataclasses.asdict(c))
    return out
