"""``memcontrol <command>``: parse flags and YAML into typed configs, call the library, report errors.

Bad input (a ``UserError``) ends with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import warnings
from collections.abc import Callable

from memcontrol.config import DataConfig, ModelConfig, SampleConfig, TrainConfig, add_arguments, build
from memcontrol.errors import UserError
from memcontrol.models.architectures import ARCHITECTURES

DEFAULT_OUTPUT = "outputs"
HEADLINE_METRICS = ("fid", "amd", "alignment", "extracted", "dmem_mean", "dmem_max")
DESCRIPTION = """\
Fine-tune Stable Diffusion on sensitive images without memorizing them (MemControl, Dutt et al. 2024):
search where in the U-Net a parameter-efficient method may learn, fine-tune under the mask chosen, and
measure generation quality and memorization. `memcontrol run` does it all on the built-in data.
`memcontrol COMMAND --help` lists a command's options; any of them can also come from a --config YAML file."""
SEVERAL_PROCESS_COMMANDS = ("train",)  # those that share their work between the processes of accelerate launch


def _quiet_libraries() -> None:
    """Keep the terminal for our progress bars: library warnings about optional extras are noise here."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import diffusers.utils.logging
    import transformers.utils.logging

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a search reports its trials (and their failures) itself
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _cmd_train(args: argparse.Namespace) -> None:
    from memcontrol.peft.mask_file import read_searched_mask
    from memcontrol.runtime import is_main_process
    from memcontrol.train.run import run_train

    classes = (ModelConfig, DataConfig, TrainConfig, SampleConfig)
    model, data, train, sample = build(classes, args)
    searched = read_searched_mask(train.mask)
    if searched and searched.learning_rate is not None:  # searched with the mask; --learning_rate (flag or YAML) still wins
        model, data, train, sample = build(classes, args, defaults={"learning_rate": searched.learning_rate})
    summary = run_train(model, data, train, sample, args.output_dir)
    if is_main_process():  # under accelerate launch: one report, not one per process
        print(json.dumps(summary, indent=2))
        print(f"trained weights, manifest and sample grid written to {args.output_dir}")


def _cmd_generate(args: argparse.Namespace) -> None:
    from memcontrol.sampling.run import run_generate

    model, data, sample = build((ModelConfig, DataConfig, SampleConfig), args)
    grid = run_generate(model, data, sample, args.output_dir, args.model_dir, args.prompt, args.num_images, args.seed)
    print(f"images and grid written to {grid.parent}")


def _cmd_pretrain(args: argparse.Namespace) -> None:
    from memcontrol.pretrain.run import PRETRAIN_DEFAULTS, PretrainConfig, pretrain
    from memcontrol.runtime import make_accelerator

    model, train, cfg = build((ModelConfig, TrainConfig, PretrainConfig), args, defaults=PRETRAIN_DEFAULTS)
    report = pretrain(args.output_dir, cfg, train, make_accelerator(model))
    print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=2))


def _cmd_sites(args: argparse.Namespace) -> None:
    from memcontrol.peft import MethodOptions, get_method
    from memcontrol.peft.accounting import account, format_accounting, meta_unet
    from memcontrol.peft.mask_file import resolve_mask

    model, train = build((ModelConfig, TrainConfig), args)
    method = get_method(train.method, MethodOptions.from_config(train))
    unet = meta_unet(model.pretrained_model_name_or_path, args.architecture)
    report = account(unet, method, resolve_mask(train.mask, method, unet))
    print(json.dumps(report) if args.json else format_accounting(report))


def _cmd_import(args: argparse.Namespace) -> None:
    from memcontrol.data.importers import import_medmnist, import_mimic_cxr

    if args.source == "mimic-cxr":
        out = import_mimic_cxr(args.input, args.output_dir, resolution=args.resolution, limit=args.limit)
    else:
        out = import_medmnist(args.input, args.output_dir, flag=args.flag)
    print(f"imagefolder written to {out}")


def _cmd_metrics(args: argparse.Namespace) -> None:
    """`evaluate` (a memcontrol-trained model on held-out data) and `audit` (memorization of any model)."""
    from memcontrol.metrics.evaluate import EvalConfig
    from memcontrol.metrics.run import run_audit, run_evaluate
    from memcontrol.metrics.setup import FeatureConfig

    model, features, settings = build((ModelConfig, FeatureConfig, EvalConfig), args)
    if args.command == "evaluate":
        metrics = run_evaluate(args.model_dir, args.output_dir, model, features, settings)
    else:
        metrics = run_audit(args.model_dir, args.train_data_dir, args.output_dir, model, features, settings)
    print(json.dumps({k: metrics[k] for k in HEADLINE_METRICS if k in metrics}, indent=2))
    print(f"metrics.json and figures written to {args.output_dir}")


def _cmd_search(args: argparse.Namespace) -> None:
    from memcontrol.search import RunConfig, run_search

    best = run_search(RunConfig.from_args(args), args.output_dir)
    print(json.dumps({k: best[k] for k in ("method", "mask", "learning_rate", "metrics", "trainable_fraction")}, indent=2))
    print(f"trials.csv, pareto.json, best_mask.json, pareto.png and convergence.png written to {args.output_dir}")


def _cmd_run(args: argparse.Namespace) -> None:
    from memcontrol.pipeline import run_pipeline
    from memcontrol.search import RunConfig

    report = run_pipeline(RunConfig.from_args(args), args.output_dir)
    print(f"report written to {report}")


def _cmd_benchmark(args: argparse.Namespace) -> None:
    from memcontrol.benchmark import BenchmarkRunConfig, run_benchmark

    table = run_benchmark(BenchmarkRunConfig.from_args(args), args.output_dir)
    print(table.read_text())
    print(f"table.md, table.csv, cells.csv, tradeoff.png/csv and the closest-generation figures written to {args.output_dir}")


def _cmd_train_encoder(args: argparse.Namespace) -> None:
    from memcontrol.metrics.builtin_encoder import train_builtin_encoder

    print(json.dumps(train_builtin_encoder(args.output, steps=args.steps), indent=2))


def _plugins_epilog() -> str:
    """Each plug-in family with its members, read from where they are defined: a new one is listed by itself."""
    from memcontrol.config import SAMPLER_CHOICES
    from memcontrol.metrics.features import EXTRACTORS
    from memcontrol.mitigations import mitigation_names
    from memcontrol.peft import method_names
    from memcontrol.search.objectives import OBJECTIVES
    from memcontrol.search.pick import PICK_RULES

    families = (
        ("PEFT methods", "--method", method_names()),
        ("mitigations", "--mitigation", mitigation_names()),
        ("feature extractors", "--feature_extractor", list(EXTRACTORS)),
        ("search objectives", "--objectives", list(OBJECTIVES)),
        ("mask pick rules", "--pick_rule", list(PICK_RULES)),
        ("search samplers", "--sampler", list(SAMPLER_CHOICES)),
    )
    lines = ["plug-ins, chosen by the flag shown:"]
    for family, flag, names in families:
        heading = f"  {family} ({flag}): "
        lines.append(textwrap.fill(", ".join(names), width=100, initial_indent=heading, subsequent_indent="    "))
    return "\n".join(lines)


def _require_one_process(command: str) -> None:
    """Refuse to repeat a command's whole work in each of the processes accelerate launch started (torchrun sets
    WORLD_SIZE)."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if processes > 1 and command not in SEVERAL_PROCESS_COMMANDS:
        raise UserError(
            f"runs in one process, not {processes} (WORLD_SIZE): under accelerate launch only `memcontrol train` "
            "shares its work between processes"
        )


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage block is one `--help` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="memcontrol",
        description=DESCRIPTION,
        epilog=_plugins_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the plug-in list one family a line
    )
    commands = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")

    def command(name: str, help: str, run: Callable, *configs: type, output: str | None = None) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        if configs:
            sub.add_argument("--config", help="YAML file of option: value (flags on the command line win)")
            add_arguments(sub, *configs)
        if output:
            sub.add_argument("--output_dir", default=f"{DEFAULT_OUTPUT}/{output}", help="where results are written")
        return sub

    command("train", "fine-tune a base model with a method and mask", _cmd_train,
            ModelConfig, DataConfig, TrainConfig, SampleConfig, output="train")
    gen = command("generate", "generate images with a base or fine-tuned model", _cmd_generate,
                  ModelConfig, DataConfig, SampleConfig, output="generate")
    gen.add_argument("--model_dir", help="output folder of `memcontrol train`; default: the base model itself")
    gen.add_argument("--prompt", action="append", help="a prompt (repeatable); default: validation captions of the data")
    gen.add_argument("--num_images", type=int, default=16, help="images to generate")
    gen.add_argument("--seed", type=int, default=0, help="image i uses seed + i")

    from memcontrol.pretrain.run import PretrainConfig

    command("pretrain", "pretrain the built-in base model on general-domain data", _cmd_pretrain,
            ModelConfig, TrainConfig, PretrainConfig, output="base-model")
    sites = command("sites", "list a method's sites and count what it trains under a mask (on the meta device: no weights)",
                    _cmd_sites, ModelConfig, TrainConfig)
    sites.add_argument("--architecture", choices=ARCHITECTURES, help="a shipped U-Net architecture instead of a model folder")
    sites.add_argument("--json", action="store_true", help="print one JSON object: sites, trainable, total, fraction")
    from memcontrol.metrics.builtin_encoder import BUILTIN_ENCODER
    from memcontrol.metrics.evaluate import EvalConfig
    from memcontrol.metrics.setup import FeatureConfig

    evaluate = command("evaluate", "FID, AMD, alignment, extraction attack and d_mem of a fine-tuned model on held-out data",
                       _cmd_metrics, ModelConfig, FeatureConfig, EvalConfig, output="evaluate")
    evaluate.add_argument("--model_dir", required=True, help="output folder of `memcontrol train`")
    audit = command("audit", "memorization metrics of any fine-tuned diffusers model against its training data",
                    _cmd_metrics, ModelConfig, FeatureConfig, EvalConfig, output="audit")
    audit.add_argument("--model_dir", required=True, help="a diffusers folder or the output folder of `memcontrol train`")
    audit.add_argument("--train_data_dir", help="the model's training imagefolder; default: builtin:digits")
    encoder = command("train-encoder", "rebuild the shipped built-in domain encoder (features and class judge)", _cmd_train_encoder)
    encoder.add_argument("--output", default=str(BUILTIN_ENCODER), help="where the encoder's safetensors file goes")
    encoder.add_argument("--steps", type=int, default=1500, help="optimisation steps")
    from memcontrol.search import RunConfig

    for name, help, run in (
        ("search", "stage 1: search PEFT masks for low memorization and high quality (Optuna), then pick one", _cmd_search),
        ("run", "the whole MemControl pipeline: search -> pick -> fine-tune with the mask -> evaluate -> report.md", _cmd_run),
    ):
        command(name, help, run, *RunConfig.classes(), output=name)
    from memcontrol.benchmark import BenchmarkRunConfig

    command("benchmark", "methods x mitigations x seeds on one dataset: each trained and evaluated, as tables and figures",
            _cmd_benchmark, *BenchmarkRunConfig.classes(), output="benchmark")
    imp = command("import", "write an imagefolder from MIMIC-CXR-JPG or a MedMNIST .npz file", _cmd_import)
    imp.add_argument("source", choices=("mimic-cxr", "medmnist"))
    imp.add_argument("input", help="MIMIC-CXR-JPG root folder, or the .npz file")
    imp.add_argument("--output_dir", required=True, help="new imagefolder to write")
    imp.add_argument("--resolution", type=int, help="mimic-cxr: resize the shorter side to this")
    imp.add_argument("--limit", type=int, help="mimic-cxr: import at most this many images")
    imp.add_argument("--flag", help="medmnist: dataset flag (pneumoniamnist, chestmnist) for label names")
    return parser


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed
        return int(e.code or 0)
    try:
        _require_one_process(args.command)
        args.run(args)
    except UserError as e:
        print(f"memcontrol {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0

