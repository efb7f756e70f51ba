"""Stages written once, for `memcontrol run` and each cell of `memcontrol benchmark`.

A folder records the options it was made with and the stages done (with their times): started again,
the work skips what is done, and refuses other options, which its finished stages would not fit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from memcontrol.config import changed_option
from memcontrol.errors import UserError
from memcontrol.io import write_json

Stage = Callable[[Any, Path, bool], None]  # (job, folder, progress); its docstring says what it does
STATE_VERSION = 2
# Recorded values that a later version calls otherwise, by the version that recorded them (1: a file without
# "version"): {version: {option: {recorded: now}}}. Until version 2, --pick_rule mean was the normalised mean.
RENAMED_VALUES = {1: {"search.pick_rule": {"mean": "normalized_mean"}}}


def run_stages(
    stages: dict[str, Stage],
    job: Any,
    directory: Path,
    state_file: str,
    options: dict,
    defaults: dict,
    *,
    progress: bool,
    label: str,
) -> None:
    """Run the ``stages`` not done yet in ``directory``, recording each in ``state_file`` when done.

    ``options`` are what the results depend on, ``defaults`` their default values (see ``config.changed_option``).
    """
    path = directory / state_file
    state = _state(path, _as_stored(options), _as_stored(defaults), label)
    done = {d["stage"] for d in state["stages"]}  # as stages_done reads them
    for number, (name, stage) in enumerate(stages.items(), start=1):
        header = f"{label} [{number}/{len(stages)}] {name}:"
        if name in done:
            _say(progress, f"{header} done before, skipped")
            continue
        _say(progress, f"{header} {stage.__doc__}")
        start = time.perf_counter()
        stage(job, directory, progress)
        state["stages"].append({"stage": name, "seconds": round(time.perf_counter() - start, 1)})
        write_json(path, state)


def stages_done(path: Path) -> set[str]:
    """The stages that ``path`` (a state file) records as done; none when there is no such file yet."""
    return {d["stage"] for d in json.loads(path.read_text())["stages"]} if path.is_file() else set()


def _as_stored(options: dict) -> dict:
    return json.loads(json.dumps(options))  # as the file reads back: tuples as lists


def _state(path: Path, options: dict, defaults: dict, label: str) -> dict:
    if not path.is_file():  # the stages in a list: the file's keys are sorted, the stages keep their order
        return {"version": STATE_VERSION, "options": options, "stages": []}
    state = json.loads(path.read_text())
    old = _renamed(state["options"], state.get("version", 1))
    key = changed_option(old, options, defaults)
    if key is not None:
        raise UserError(
            f"{path.parent} holds a {label} made with {key}={json.dumps(old.get(key))}, not "
            f"{json.dumps(options.get(key))}: give another --output_dir (or delete that folder)"
        )
    return {**state, "version": STATE_VERSION, "options": old}


def _renamed(options: dict, version: int) -> dict:
    """``options`` as recorded by ``version``, in the values' present names."""
    for older in range(version, STATE_VERSION):
        for key, names in RENAMED_VALUES.get(older, {}).items():
            if key in options:
                options = {**options, key: names.get(options[key], options[key])}
    return options


def _say(progress: bool, message: str) -> None:
    if progress:
        tqdm.write(message)
