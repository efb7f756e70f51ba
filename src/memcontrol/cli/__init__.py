"""``memcontrol <command>``: parse flags and YAML into typed configs, call the library, report errors.

Each command family is a module of this package (its flags, and what it calls in the library); nothing else imports
them. Bad input (a ``UserError``) ends with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import warnings
from collections.abc import Callable

from memcontrol.cli import benchmark, data, generate, metrics, pipeline, pretrain, search, sites, train
from memcontrol.config import add_arguments
from memcontrol.errors import UserError

DEFAULT_OUTPUT = "outputs"
DESCRIPTION = """\
Fine-tune Stable Diffusion on sensitive images without memorizing them (MemControl, Dutt et al. 2024):
search where in the U-Net a parameter-efficient method may learn, fine-tune under the mask chosen, and
measure generation quality and memorization. `memcontrol run` does it all on the built-in data.
`memcontrol COMMAND --help` lists a command's options; any of them can also come from a --config YAML file."""
SEVERAL_PROCESS_COMMANDS = ("train", "run")  # those that share their work between the processes of accelerate launch


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


def _plugins_epilog() -> str:
    """Each plug-in family with its members, read from where they are defined: a new one is listed by itself."""
    from memcontrol.metrics.extractor import EXTRACTORS
    from memcontrol.mitigations.base import MITIGATIONS
    from memcontrol.peft.base import METHODS
    from memcontrol.search import CROSSOVERS, OBJECTIVES, PICK_RULES, SAMPLERS, STRATEGIES

    families = (
        ("PEFT methods", METHODS),
        ("mitigations", MITIGATIONS),
        ("feature extractors", EXTRACTORS),
        ("search objectives", OBJECTIVES),
        ("mask pick rules", PICK_RULES),
        ("search samplers", SAMPLERS),
        ("NSGA-II crossovers", CROSSOVERS),
        ("search strategies", STRATEGIES),
    )
    lines = ["plug-ins, chosen by the flag shown:"]
    for family, registry in families:
        heading = f"  {family} ({registry.flag}): "
        lines.append(
            textwrap.fill(", ".join(registry.names()), width=100, initial_indent=heading, subsequent_indent="    ")
        )
    return "\n".join(lines)


def _require_one_process(command: str) -> None:
    """Refuse to repeat a command's whole work in each of the processes accelerate launch started (torchrun sets
    WORLD_SIZE)."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if processes > 1 and command not in SEVERAL_PROCESS_COMMANDS:
        raise UserError(
            f"runs in one process, not {processes} (WORLD_SIZE): under accelerate launch only `memcontrol train` "
            "and `memcontrol run` share their work between processes"
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

    def command(
        name: str, help: str, run: Callable, *configs: type, output: str | None = None
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        if configs:
            sub.add_argument("--config", help="YAML file of option: value (flags on the command line win)")
            add_arguments(sub, *configs)
        if output:
            sub.add_argument("--output_dir", default=f"{DEFAULT_OUTPUT}/{output}", help="where results are written")
        return sub

    for family in (train, generate, pretrain, sites, metrics, search, pipeline, benchmark, data):  # --help's order
        family.add_commands(command)
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
