"""Typed configuration: dataclasses whose fields are the command-line flags and the YAML keys.

Precedence: field default < ``--config file.yaml`` < flags on the command line. Flag names follow
diffusers' ``train_text_to_image.py`` where the concept exists there. Written by hand rather than
with jsonargparse because we want flat diffusers-style flags and one-line errors (exit status 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from diffusers.optimization import SchedulerType

from memcontrol.errors import UserError
from memcontrol.registry import declared_options, option_groups, plugin_values, registry_of

# Shipped YAML configs, found by name: `--config cpu`.
PRESETS_DIR = Path(__file__).parent / "configs"


def opt(default: Any, help: str, **extra: Any) -> Any:
    """A config field: its default, its --help text and what it accepts, checked with the type when a config is built
    from flags and YAML: ``choices``, or ``registry``, a kind of plug-in (the names registered for it in
    memcontrol.registry, and the extra ones in ``also``); for numbers ``min``, ``above`` (exclusive) and ``max``.

    A list field (``list[str]``, ``list[float]`` ...) takes a comma-separated flag, or a YAML list or comma-separated
    string; each item is checked as a field of the item's type would be (``choices`` and bounds apply to the items),
    repeats are dropped, and ``min_items`` says how many distinct items it needs.
    """
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


class MethodRate(str):
    """``METHOD`` or ``METHOD@LEARNING_RATE`` (``--baselines``, the benchmark's ``--methods``): the text as given, which
    names its folders and rows, and its parts; ``learning_rate`` None: at ``--learning_rate``."""

    method: str
    learning_rate: float | None

    def __new__(cls, text: str) -> MethodRate:
        self = super().__new__(cls, text.strip())
        self.method, at, rate = self.partition("@")
        try:
            self.learning_rate = float(rate) if at else None
        except ValueError:
            raise ValueError(f"expected METHOD or METHOD@LEARNING_RATE, e.g. full@5e-4, got {text!r}") from None
        if self.learning_rate is not None and not (math.isfinite(self.learning_rate) and self.learning_rate >= 0):
            raise ValueError(f"expected a finite learning rate of at least 0 after the @, got {text!r}")
        return self


@dataclass
class ModelConfig:
    pretrained_model_name_or_path: str | None = opt(
        None, "local diffusers Stable Diffusion folder; default: the built-in base model"
    )
    mixed_precision: str = opt(
        "no", "no, fp16 or bf16 (autocast; trainable weights stay fp32)", choices=("no", "fp16", "bf16")
    )
    device: str = opt(
        "auto",
        "auto (the accelerator if there is one; CUDA_VISIBLE_DEVICES picks which) or cpu",
        choices=("auto", "cpu"),
    )
    allow_tf32: bool = opt(
        False,
        "TF32 for float32 matmuls on Ampere and newer GPUs: faster, slightly less precise (diffusers' --allow_tf32)",
    )


@dataclass
class DataConfig:
    train_data_dir: str | None = opt(
        None,
        "imagefolder with metadata.jsonl/csv (file_name, text[, subject_id, split]); builtin:NAME for a built-in set; "
        "default: builtin:digits",
    )
    resolution: int | None = opt(None, "image side in pixels; default: the model's native size", min=1)
    validation_fraction: float = opt(0.1, "share of subjects held out for validation", min=0, max=1)
    test_fraction: float = opt(0.1, "share of subjects held out for testing", min=0, max=1)
    split_seed: int = opt(0, "seed of the subject-level split", min=0)
    max_train_samples: int | None = opt(
        None,
        "use at most this many distinct training images (D_mem kept); default: 400 on built-in data, all on yours",
        min=1,
    )
    dmem_size: int | None = opt(
        None,
        "image-caption pairs duplicated into the memorization set D_mem; default: 10 on built-in data, 0 on yours",
        min=0,
    )
    dmem_repeats: int = opt(50, "times each D_mem pair appears in the training set", min=1)
    dmem_rule: str = opt(
        "most_tokens", "how D_mem pairs are chosen", choices=("most_tokens", "random", "most_frequent_caption")
    )
    dataloader_num_workers: int = opt(0, "processes reading images while latents are cached", min=0)


@dataclass
class TrainConfig:
    method: str = opt(
        "full",
        "fine-tuning method (see `memcontrol sites`); all: those of --global_methods (search and run)",
        registry="method",
        also=("all",),
    )
    mask: str | None = opt(
        None,
        "one 0/1 bit per site of the method, e.g. 1011001, or the best_mask.json of a search (of --method; "
        "its learning rate too unless --learning_rate is given); default: all on",
    )
    train_batch_size: int = opt(
        32, "samples per device in each forward pass (a step: this x accumulation x processes)", min=1
    )
    gradient_accumulation_steps: int = opt(
        1,
        "forward passes whose gradients make one optimisation step (diffusers' flag): a larger batch, same memory",
        min=1,
    )
    max_train_steps: int = opt(
        1000, "optimisation steps (the built-in scenario memorises D_mem in 1,000 full fine-tuning steps)", min=0
    )
    learning_rate: float = opt(5e-4, "AdamW learning rate after warm-up", min=0)
    lr_scheduler: str = opt(
        "constant_with_warmup",
        "diffusers scheduler name: constant, constant_with_warmup, cosine, linear ...",
        choices=tuple(s.value for s in SchedulerType),  # what diffusers' get_scheduler accepts
    )
    lr_warmup_steps: int = opt(50, "linear warm-up steps", min=0)
    adam_weight_decay: float = opt(1e-2, "AdamW weight decay", min=0)
    max_grad_norm: float = opt(1.0, "gradient clipping norm", above=0)
    caption_dropout: float = opt(
        0.1, "probability that a caption is replaced by the empty one (for guidance)", min=0, max=1
    )
    latent_sampling: str = opt(
        "mean",
        "mean: train on the VAE posterior means; sample: draw from the posterior at each step (diffusers' script). "
        "The posterior noise is noise the U-Net cannot predict at small timesteps; on SD's VAE it is tiny either way",
        choices=("mean", "sample"),
    )
    gradient_checkpointing: bool = opt(False, "trade compute for memory in the U-Net")
    seed: int = opt(0, "seed of initialisation, batches and noise", min=0)
    mitigation: str = opt("none", "memorization mitigation while training", registry="mitigation")
    checkpointing_steps: int | None = opt(
        None,
        "save a checkpoint every N steps into OUTPUT_DIR/checkpoints/checkpoint-STEP (0 or unset: none); "
        "`memcontrol run` and benchmark cells resume from the latest by themselves",
        min=0,
    )
    checkpoints_total_limit: int | None = opt(None, "keep only the newest N checkpoints; default: all", min=1)
    resume_from_checkpoint: str | None = opt(
        None,
        "continue from a checkpoint: latest (the newest in OUTPUT_DIR/checkpoints; from the start if none) "
        "or its folder",
    )
    # The options of the methods and mitigations, by flag name: those given (the others are at their defaults).
    # Each plug-in declares its own (memcontrol.registry); they are flags and YAML keys as the fields above are.
    plugin_options: dict[str, Any] = field(default_factory=dict, metadata={"plugins": ("method", "mitigation")})


@dataclass
class SampleConfig:
    num_inference_steps: int | None = opt(None, "DDIM steps; default: the model's recommendation", min=1)
    guidance_scale: float | None = opt(None, "classifier-free guidance; default: the model's recommendation", min=0)
    sample_batch_size: int = opt(16, "images generated per forward pass", min=1)


@dataclass
class SearchConfig:
    """The mask search (stage 1): its objectives, sampler, budget and storage; the sampler's and the strategy's own
    options are theirs (``plugin_options``)."""

    n_trials: int = opt(
        20, "finished trials the study is to hold (per method with --method all and union), whoever runs them", min=1
    )
    objectives: list[str] = opt(["dmem_mean", "fid"], "two or more metrics", registry="objective", min_items=2)
    proxy_fraction: float = opt(
        0.01, "share of the training images, besides D_mem, in the search's training set (the paper: 1%)", min=0, max=1
    )
    trial_train_steps: int | None = opt(None, "optimisation steps of each trial; default: --max_train_steps", min=0)
    trial_fid_samples: int | None = opt(
        None, "validation prompts (and real validation images) for each trial's FID; default: --fid_samples", min=2
    )
    search_learning_rate: bool = opt(False, "search the learning rate as well, on a log scale (the authors)")
    learning_rate_min: float = opt(1e-5, "lowest learning rate searched", above=0)
    learning_rate_max: float = opt(1e-3, "highest learning rate searched", above=0)
    global_methods: list[str] = opt(
        ["svdiff", "difffit", "attention"],
        "the methods --method all searches",
        registry="method",
        min_items=1,
    )
    global_search: str = opt(
        "union",
        "--method all: union of per-method Pareto fronts (the paper), or one study choosing the method",
        choices=("union", "categorical"),
    )
    sampler: str = opt(
        "gp",
        "gp (default: the best of the samplers replayed on the mask table at 16 and 32 trials, benchmarks/RESULTS.md "
        "section 8), tpe, nsga2 (the paper; random search below its population), random",
        registry="sampler",
    )
    search_seed: int = opt(
        0,
        "seed of the sampler; trial n draws from seed + n, so that workers and resumed runs never propose alike",
        min=0,
    )
    pick_rule: str = opt(
        "normalized_mean",
        "choose on the Pareto front by: normalized_mean (default), the mean of the objectives "
        "min-max normalised over the trials, as FID (hundreds) beside d_mem (about 1) would decide the raw mean alone; "
        "mean, the paper's mean of the raw values (a maximised objective subtracted); ideal, distance to the ideal "
        "point; chebyshev, the worst objective (both normalised)",
        registry="pick rule",
    )
    baselines: list[MethodRate] = opt(
        [],
        "methods also trained with every site on, as trials are, for comparison: METHOD[@LEARNING_RATE],... "
        "(e.g. full@5e-4,svdiff)",
        registry="method",
    )
    storage: str | None = opt(
        None,
        "study storage URL (sqlite:///f.db, postgresql://..., mysql://...): workers on one URL share the study; "
        "default: sqlite in --output_dir",
    )
    study_name: str = opt("memcontrol", "name of the study in the storage (the method is appended)")
    heartbeat_interval: int = opt(60, "seconds between a running trial's heartbeats", min=1)
    grace_period: int | None = opt(
        None, "seconds without a heartbeat after which a trial counts as interrupted; default: 2 heartbeats", min=1
    )
    max_retry: int = opt(1, "times an interrupted trial is run again with the same proposal", min=0)
    strategy: str = opt(
        "bilevel",
        "bilevel: each trial fine-tunes one proposed mask (the paper); oneshot: train one weight-sharing supernet on "
        "the proxy set, score masks from it without retraining, and confirm its Pareto front with stand-alone trials",
        registry="search strategy",
    )
    # The options of the samplers and search strategies, by flag name, as TrainConfig's plugin_options: each declares
    # its own (memcontrol.search: outer_loop.py, oneshot.py); recorded flat in this section (search.population_size).
    plugin_options: dict[str, Any] = field(default_factory=dict, metadata={"plugins": ("sampler", "search strategy")})


def _base_type(annotation: Any) -> type:
    """``int | None`` -> int."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def add_arguments(parser: argparse.ArgumentParser, *classes: type) -> None:
    """One flag per field, and one per option of each registered plug-in (grouped under the plug-in's name) where a
    class holds them. Defaults are suppressed so that we can tell what the user typed.

    A field that several configs share (``seed``, ``guidance_scale`` ...) is one flag that sets all of them.
    """
    seen: set[str] = set()
    for title, options in _flag_groups(classes):
        group = parser.add_argument_group(title)
        for cls, f in options:
            if f.name in seen:
                continue
            seen.add(f.name)
            kind, choices = _base_type(typing.get_type_hints(cls)[f.name]), _choices(f)
            text = f.metadata.get("help", "")
            kwargs: dict[str, Any] = {"default": argparse.SUPPRESS}
            if kind is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            elif _item_type(kind):  # the text, split and checked in build() as a YAML value is
                text += f"; comma-separated{': any of ' + ', '.join(choices) if choices else ''}"
                kwargs["metavar"] = "A,B,..."
            else:
                kwargs["type"] = kind
                kwargs["choices"] = choices
            kwargs["help"] = text.replace("%", "%%")  # argparse formats help with %: "1%" must not break --help
            group.add_argument(f"--{f.name}", **kwargs)


def _flag_groups(classes: tuple[type, ...]) -> list[tuple[str, list[tuple[type, dataclasses.Field]]]]:
    """(title, [(class, field)]) of the flags of ``classes``: each class's fields, then the options of the plug-ins
    whose kinds a class's field marked ``plugins`` names, grouped by plug-in. Refuses a plug-in option
    that a field of ``classes`` already names: one flag would set both."""
    groups, plugins = [], []
    for cls in classes:
        fields = dataclasses.fields(cls)
        groups.append((cls.__name__, [(cls, f) for f in fields if not f.metadata.get("plugins")]))
        if any(f.metadata.get("plugins") for f in fields):
            plugins += option_groups(_plugin_kinds(cls)).items()
    taken = {f.name for _, options in groups for _, f in options}
    for title, options in plugins:
        clash = next((f.name for _, f in options if f.name in taken), None)
        if clash:
            raise ValueError(f"{title}: option --{clash} is already a flag of {', '.join(c.__name__ for c in classes)}")
    return [*groups, *plugins]


def _plugin_kinds(holder: type) -> tuple[str, ...]:
    """The kinds of plug-in whose options ``holder`` holds: those its ``plugins`` field names (not every registry its
    fields choose from: SearchConfig's --baselines names methods, whose options are TrainConfig's)."""
    return next((f.metadata["plugins"] for f in dataclasses.fields(holder) if f.metadata.get("plugins")), ())


def _choices(f: dataclasses.Field) -> tuple | None:
    """What field ``f`` accepts: its ``choices``, or the names of its ``registry`` and ``also``."""
    if "registry" in f.metadata:
        return (*registry_of(f.metadata["registry"]).names(), *f.metadata.get("also", ()))
    return f.metadata.get("choices")


def _item_type(kind: Any) -> type | None:
    """``list[float]`` -> float; None for a type that is not a list."""
    return typing.get_args(kind)[0] if typing.get_origin(kind) is list else None


def split_items(text: str) -> list[str]:
    """``"a, b,,a"`` -> ["a", "b"]: the items of a comma-separated list option, repeats dropped."""
    return list(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def resolve_config(name_or_path: str | Path) -> Path:
    """A YAML file, or the name of a preset shipped with memcontrol (``--config cpu``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    preset = PRESETS_DIR / f"{name_or_path}.yaml"
    if preset.is_file():
        return preset
    raise UserError(f"--config {name_or_path}: no such file, nor a preset ({', '.join(preset_names())})")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = resolve_config(path)
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
    """Instances of ``classes`` from ``defaults`` (over the fields'), the YAML file named by ``--config`` and the
    flags."""
    file_values = load_yaml(args.config) if getattr(args, "config", None) else {}
    known = {f.name for _, options in _flag_groups(classes) for _, f in options}
    unknown = sorted(set(file_values) - known)
    if unknown:
        raise UserError(f"--config {args.config}: unknown option {unknown[0]!r}")
    flags = {k: v for k, v in vars(args).items() if k in known}
    values = {**(defaults or {}), **file_values, **flags}
    # An error names where its value came from: the YAML file, or else the flag.
    labels = {name: f"--config {args.config}: option {name!r}" for name in file_values if name not in flags}
    return tuple(_instance(cls, values, labels) for cls in classes)


def _instance(cls: type, values: dict[str, Any], labels: dict[str, str]) -> Any:
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("plugins"):
            options = declared_options(_plugin_kinds(cls))
            kwargs[f.name] = {name: _value(*options[name], values, labels) for name in options if name in values}
        elif f.name in values:
            kwargs[f.name] = _value(cls, f, values, labels)
    return cls(**kwargs)


def _value(cls: type, f: dataclasses.Field, values: dict[str, Any], labels: dict[str, str]) -> Any:
    """The value of field ``f`` of ``cls`` in ``values``, checked."""
    kind = _base_type(typing.get_type_hints(cls)[f.name])
    return _checked(f, kind, values[f.name], labels.get(f.name, f"--{f.name}"))


def check_fields(config: Any) -> None:
    """Check a config's values as its flags are checked: a library caller's bad value is the same one-line error."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        _checked(f, _base_type(hints[f.name]), getattr(config, f.name), f"--{f.name}")


def _checked(f: dataclasses.Field, kind: type, value: Any, label: str) -> Any:
    """``value`` of field ``f``, checked against its type, choices and bounds; ``label`` names it in errors."""
    if _item_type(kind):
        if value is None and f.default is None:  # a list field whose default (None) has a meaning of its own
            return None
        return _checked_list(f, _item_type(kind), value, label)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if value is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
        hint = " (quote it in YAML)" if kind is str else ""
        raise UserError(f"{label} expects {kind.__name__}{hint}, got {value!r}")
    choices = _choices(f)
    if choices and (value.method if isinstance(value, MethodRate) else value) not in choices:
        raise UserError(f"{label}: expected one of {', '.join(choices)}, got {value!r}")
    if kind in (int, float) and value is not None:
        _check_bounds(f, value, label)
    return value


def _checked_list(f: dataclasses.Field, item: type, value: Any, label: str) -> list:
    """A list field's value (a list, comma-separated text, or one item), each item checked, repeats dropped."""
    if isinstance(value, str):
        value = split_items(value)
    items = list(dict.fromkeys(_checked(f, item, _parsed(item, v, label), label) for v in _as_list(value)))
    least = f.metadata.get("min_items", 0)
    if len(items) < least:
        raise UserError(f"{label}: expected at least {least} distinct values, comma-separated, got {len(items)}")
    return items


def _as_list(value: Any) -> list:
    if value is None:  # a YAML key without a value
        return []
    return value if isinstance(value, list) else [value]


def _parsed(item: type, value: Any, label: str) -> Any:
    """An item of a list given as text (a flag, a comma-separated YAML string) as its type; other values unchanged."""
    if not isinstance(value, str) or item is str:
        return value
    try:
        return item(value)
    except ValueError as e:
        detail = str(e) if item is MethodRate else f"expected {item.__name__} values, got {value!r}"
        raise UserError(f"{label}: {detail}") from None


def _check_bounds(f: dataclasses.Field, value: float, label: str) -> None:
    """Every number must be finite (argparse and YAML both accept nan and inf) and within the field's declared
    ``min``, ``above`` (exclusive) and ``max``: a bad value fails now, not as a traceback hours into a run."""
    if not math.isfinite(value):
        raise UserError(f"{label}: expected a finite number, got {value}")
    low, above, high = f.metadata.get("min"), f.metadata.get("above"), f.metadata.get("max")
    if low is not None and value < low:
        raise UserError(f"{label}: expected at least {low}, got {value}")
    if above is not None and value <= above:
        raise UserError(f"{label}: expected more than {above}, got {value}")
    if high is not None and value > high:
        raise UserError(f"{label}: expected at most {high}, got {value}")


def as_dict(*configs: Any) -> dict[str, Any]:
    """The options of ``configs`` by name, flat as the flags are: the plug-ins' ones (every registered option, at its
    default where not given) in place of the field that holds them."""
    out: dict[str, Any] = {}
    for c in configs:
        values = dataclasses.asdict(c)
        for f in dataclasses.fields(c):
            if f.metadata.get("plugins"):
                values.update(plugin_values(values.pop(f.name), _plugin_kinds(type(c))))
        out.update(values)
    return out


def changed_option(recorded: dict[str, Any], current: dict[str, Any], defaults: dict[str, Any]) -> str | None:
    """The first option (in sorted order) whose value ``current`` changes from ``recorded``; None when none does.

    An option that ``recorded`` lacks and ``current`` holds at its default (``defaults``) is unchanged: results
    made before the option existed were made as its default does, so that a new release does not disown them.
    """
    for key in sorted(set(recorded) | set(current)):
        if key not in recorded and key in defaults and current.get(key) == defaults[key]:
            continue
        old = recorded.get(key)
        if isinstance(old, str) and isinstance(current.get(key), list):  # recorded before list options were lists
            old = split_items(old)
        if old != current.get(key):
            return key
    return None
