"""Checkpoints to resume a fine-tuning run mid-training (diffusers' --checkpointing_steps, --resume_from_checkpoint).

    OUTPUT_DIR/checkpoints/checkpoint-STEP/
      trained.safetensors        the trainable weights, as the method saves them
      optimizer.pt               optimizer, LR scheduler (and fp16 grad scaler) state, read with weights_only=True
      random_states.safetensors  the engine's generator state and the batch sampler's buffer
      state.json                 step, losses so far, the loss summed since the last read-out, counts, seconds,
                                 and the options the run was made with

A run resumed from a checkpoint draws the batches, noise and timesteps the uninterrupted run draws after that
step, so its final weights are the same. No mitigation keeps state between steps: the engine draws their
set-up again from the seed before the generator's state is restored.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

import memcontrol
from memcontrol.config import changed_option
from memcontrol.errors import UserError
from memcontrol.io import atomic_dir, write_json
from memcontrol.peft import PeftMethod

CHECKPOINTS_DIR = "checkpoints"
PREFIX = "checkpoint-"
WEIGHTS, OPTIMIZER, STATE = "trained.safetensors", "optimizer.pt", "state.json"
RANDOM_STATES = "random_states.safetensors"
# Options that change neither what a step computes nor its order: a run may resume under other values.
NOT_RECORDED = {
    "device",
    "dataloader_num_workers",
    "gradient_checkpointing",
    "checkpointing_steps",
    "checkpoints_total_limit",
    "resume_from_checkpoint",
}


@dataclass
class TrainResult:
    trainable_parameters: int
    total_parameters: int
    steps: int = 0
    seconds: float = 0.0
    losses: list[tuple[int, float]] = field(default_factory=list)
    dropped_samples: int = 0  # left out of the loss by the mitigation
    skipped_batches: int = 0  # every sample left out: no optimizer step
    global_batch_size: int = 0  # samples per optimizer step: per device x accumulation x processes

    @property
    def trainable_fraction(self) -> float:
        return self.trainable_parameters / self.total_parameters


class BatchIndices(Iterator[torch.Tensor]):
    """Endless full batches from consecutive seeded permutations (epochs run into each other).

    ``buffer`` (the rest of the current permutations) and the generator's state are where it stands: a checkpoint
    saves both.
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.buffer = torch.empty(0, dtype=torch.long)

    def __next__(self) -> torch.Tensor:
        while len(self.buffer) < self.batch_size:
            self.buffer = torch.cat([self.buffer, torch.randperm(self.n, generator=self.generator)])
        batch, self.buffer = self.buffer[: self.batch_size], self.buffer[self.batch_size :]
        return batch


@dataclass
class TrainingState:
    """The objects of a fine-tuning run whose state a checkpoint holds."""

    unet: nn.Module
    method: PeftMethod
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any
    generator: torch.Generator
    batches: BatchIndices
    result: TrainResult
    accelerator: Accelerator


@dataclass
class Progress:
    """Where the loop stands after ``step`` steps: the loss summed over the ``counted`` steps since the last read-out,
    and the seconds spent."""

    step: int = 0
    running_loss: float | torch.Tensor = 0.0
    counted: int = 0
    seconds: float = 0.0


def recorded_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options a checkpoint must have been made with to be resumed (JSON-normalised, as state.json reads back)."""
    return json.loads(json.dumps({k: v for k, v in options.items() if k not in NOT_RECORDED}))


@dataclass(frozen=True)
class Checkpoints:
    """Saves a checkpoint every ``every`` steps into ``directory``, keeping the newest ``total_limit``, and restores
    the one ``resume`` names (``latest``, a folder, or a folder's name in ``directory``)."""

    directory: Path
    every: int | None
    total_limit: int | None
    resume: str | None
    options: dict[str, Any]  # what the run's results depend on (recorded_options)
    defaults: dict[str, Any]  # their defaults: a checkpoint made before an option existed fits while it is at default

    def __post_init__(self):
        if self.every is not None and self.every < 0:
            raise UserError(f"--checkpointing_steps must be 0 (off) or more, got {self.every}")
        if self.total_limit is not None and self.total_limit < 1:
            raise UserError(f"--checkpoints_total_limit must be at least 1, got {self.total_limit}")
        self._resume_folder()  # a checkpoint that is missing or made with other options is refused now, before any work

    def restore(self, state: TrainingState) -> Progress:
        """Load the checkpoint ``resume`` names into ``state``; a fresh Progress when there is none to resume."""
        folder = self._resume_folder()
        if folder is None:
            return Progress()
        saved = _read_state(folder)
        device = str(state.accelerator.device)
        state.method.load_trained_state(state.unet, _read(folder / WEIGHTS, lambda p: load_file(str(p), device=device)))
        # On the CPU: load_state_dict moves each tensor to its parameter's device, but AdamW's `step` must stay there.
        optimizer = _read(folder / OPTIMIZER, lambda p: torch.load(p, map_location="cpu", weights_only=True))
        state.optimizer.load_state_dict(optimizer["optimizer"])
        state.lr_scheduler.load_state_dict(optimizer["lr_scheduler"])
        if state.accelerator.scaler is not None:
            state.accelerator.scaler.load_state_dict(optimizer["grad_scaler"])
        random = _read(folder / RANDOM_STATES, lambda p: load_file(str(p)))
        state.generator.set_state(random["generator"])
        state.batches.buffer = random["batch_buffer"]
        result = state.result
        result.losses = [(step, loss) for step, loss in saved["losses"]]
        result.dropped_samples, result.skipped_batches = saved["dropped_samples"], saved["skipped_batches"]
        if state.accelerator.is_main_process:
            tqdm.write(f"resuming from {folder} (step {saved['step']})")
        return Progress(saved["step"], saved["running_loss"], saved["counted"], saved["seconds"])

    def after_step(self, state: TrainingState, progress: Progress) -> None:
        """Save a checkpoint when ``progress.step`` is a multiple of ``every`` (the main process writes it)."""
        if not self.every or progress.step % self.every:
            return
        if state.accelerator.is_main_process:
            self._save(state, progress)
            self._prune()
        state.accelerator.wait_for_everyone()

    def _save(self, state: TrainingState, progress: Progress) -> None:
        result = state.result
        with atomic_dir(self.directory / f"{PREFIX}{progress.step}") as tmp:
            save_file(state.method.trained_state(state.unet), str(tmp / WEIGHTS))
            optimizer = {"optimizer": state.optimizer.state_dict(), "lr_scheduler": state.lr_scheduler.state_dict()}
            if state.accelerator.scaler is not None:
                optimizer["grad_scaler"] = state.accelerator.scaler.state_dict()
            torch.save(optimizer, tmp / OPTIMIZER)
            save_file(
                {"generator": state.generator.get_state(), "batch_buffer": state.batches.buffer.contiguous()},
                str(tmp / RANDOM_STATES),
            )
            write_json(
                tmp / STATE,
                {
                    "step": progress.step,
                    "losses": result.losses,
                    "running_loss": float(progress.running_loss),
                    "counted": progress.counted,
                    "dropped_samples": result.dropped_samples,
                    "skipped_batches": result.skipped_batches,
                    "seconds": progress.seconds,
                    "options": self.options,
                    "memcontrol_version": memcontrol.__version__,
                },
            )

    def _prune(self) -> None:
        """Keep the newest ``total_limit`` checkpoints, and remove what a save killed midway left."""
        for leftover in self.directory.glob(f".{PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)
        if self.total_limit:
            for old in saved_checkpoints(self.directory)[: -self.total_limit]:
                shutil.rmtree(old)

    def _resume_folder(self) -> Path | None:
        """The checkpoint to resume from, checked to be made with this run's options; None: start from step 0."""
        folder = self._find_resume_folder()
        if folder is not None:
            recorded = _read_state(folder)["options"]
            key = changed_option(recorded, self.options, self.defaults)
            if key is not None:
                was, now = json.dumps(recorded.get(key)), json.dumps(self.options.get(key))
                raise UserError(
                    f"--resume_from_checkpoint {folder}: that checkpoint was made with {key}={was}, not {now}: "
                    "give the options it was made with, or another --output_dir"
                )
        return folder

    def _find_resume_folder(self) -> Path | None:
        if self.resume is None:
            return None
        if self.resume == "latest":
            saved = saved_checkpoints(self.directory)
            return saved[-1] if saved else None
        for folder in (Path(self.resume), self.directory / self.resume):
            if (folder / STATE).is_file():
                return folder
        raise UserError(
            f"--resume_from_checkpoint {self.resume}: not a checkpoint; expected latest, or a folder "
            f"{CHECKPOINTS_DIR}/{PREFIX}STEP written by --checkpointing_steps"
        )


def saved_checkpoints(directory: Path) -> list[Path]:
    """The complete checkpoints in ``directory``, oldest first (a save in progress has a hidden temporary name)."""
    folders = [
        p for p in directory.glob(f"{PREFIX}*") if p.name.removeprefix(PREFIX).isdigit() and (p / STATE).is_file()
    ]
    return sorted(folders, key=lambda p: int(p.name.removeprefix(PREFIX)))


def _read_state(folder: Path) -> dict[str, Any]:
    return _read(folder / STATE, lambda p: json.loads(p.read_text()))


def _read(path: Path, load):
    """``load(path)``; a missing or damaged file of a checkpoint is the user's to delete, not a traceback."""
    try:
        return load(path)
    except Exception as e:  # noqa: BLE001 (safetensors, torch and json each raise their own errors on a damaged file)
        kind = type(e).__name__
        raise UserError(f"{path}: unreadable checkpoint file ({kind}); delete that checkpoint folder") from None
