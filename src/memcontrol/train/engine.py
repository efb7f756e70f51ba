"""The one fine-tuning engine (the inner loop of the search), for every method.

Reads like diffusers' train_text_to_image.py, minus the per-step VAE and text encoder (see cache.py):
noise the cached latents at a random timestep, predict the noise (or velocity) with the U-Net,
MSE in float32, AdamW with warm-up, gradient clipping. All randomness comes from one seeded CPU
generator, so a run is reproducible on a given device whatever the batch timing. A memorization
mitigation (memcontrol.mitigations, ``cfg.mitigation``) plugs into each step through its hooks.

Each optimisation step draws one global batch of train_batch_size x gradient_accumulation_steps x processes
samples (every process draws the same one from the same seed) and each process runs forward and backward on its
own shares of it (``process_shares``); accelerate sums the passes and DDP averages over the processes. The step's
gradient is that of the mean loss over the samples of the global batch that the mitigation keeps, so a run's
result depends on the global batch only, not on how it is split (up to float rounding).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import DDPMScheduler, StableDiffusionPipeline
from diffusers.optimization import get_scheduler
from tqdm.auto import tqdm

from memcontrol.config import TrainConfig
from memcontrol.data.cache import CaptionEmbeddings, LatentCache
from memcontrol.errors import UserError
from memcontrol.mitigations import Mitigation, get_mitigation
from memcontrol.peft import Mask, PeftMethod
from memcontrol.runtime import WEIGHT_DTYPES, cast_frozen
from memcontrol.train.state import BatchIndices, Checkpoints, Progress, TrainingState, TrainResult

LOG_EVERY = 10  # steps between loss read-outs: each one synchronises the device


class NonFiniteLoss(RuntimeError):
    """Training diverged (NaN or inf loss); a search records the trial as failed."""


@dataclass
class TrainingSet:
    latents: LatentCache
    captions: CaptionEmbeddings

    def __post_init__(self):
        if len(self.latents) != len(self.captions.caption_ids):
            raise ValueError("latents and captions must describe the same examples")


@dataclass
class Batch:
    """What a step draws for its samples: latents, noise and timesteps on the CPU, the conditioning where the
    caption embeddings are."""

    latents: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor
    conditioning: torch.Tensor

    def __len__(self) -> int:
        return len(self.latents)

    def rows(self, start: int, stop: int) -> Batch:
        rows = slice(start, stop)
        return Batch(self.latents[rows], self.noise[rows], self.timesteps[rows], self.conditioning[rows])


def draw_batch(
    data: TrainingSet,
    index: torch.Tensor,
    num_train_timesteps: int,
    caption_dropout: float,
    generator: torch.Generator,
    mitigation: Mitigation,
) -> Batch:
    """Every random draw of the batch at ``index``, for the whole batch at once: the same draws however the batch is
    then split between forward passes and processes."""
    latents = data.latents.sample(index, generator)
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.randint(0, num_train_timesteps, (len(index),), generator=generator)
    caption_ids = data.captions.caption_ids[index].clone()
    caption_ids[torch.rand(len(index), generator=generator) < caption_dropout] = data.captions.empty_id
    return Batch(latents, noise, timesteps, mitigation.embed(data.captions, caption_ids, generator))


def process_shares(batch: Batch, per_device: int, process: int, processes: int) -> list[Batch]:
    """The forward passes of ``process`` in a global batch: pass k takes the rows from (k x processes + process) x
    per_device on, as accelerate's sharded data loaders deal out batches."""
    starts = range(process * per_device, len(batch), processes * per_device)
    return [batch.rows(start, start + per_device) for start in starts]


def global_batch_size(cfg: TrainConfig, accelerator: Accelerator) -> int:
    return cfg.train_batch_size * cfg.gradient_accumulation_steps * accelerator.num_processes


def fine_tune(
    pipe: StableDiffusionPipeline,
    method: PeftMethod,
    mask: Mask,
    data: TrainingSet,
    cfg: TrainConfig,
    accelerator: Accelerator,
    progress: bool = True,
    mitigation: Mitigation | None = None,
    checkpoints: Checkpoints | None = None,
    step_context: Callable[[int], AbstractContextManager] = lambda step: nullcontext(),
) -> TrainResult:
    """Adapt ``pipe.unet`` in place with ``method``/``mask`` and train it on ``data`` with ``mitigation``.

    ``mitigation`` defaults to the one ``cfg`` names; a caller builds it first to check its options early.
    ``checkpoints``: where the run saves checkpoints, and the one it resumes from.
    ``step_context(step)``: what each step's forward and backward run inside; a gradient it sets to None makes no
    update (the one-shot search's supernet chooses the step's mask on entering and discards the rest on leaving).
    """
    if mitigation is None:
        mitigation = get_mitigation(cfg.mitigation, cfg.plugin_options)
    unet = pipe.unet
    total = sum(p.numel() for p in unet.parameters())  # the base U-Net's, before the method adds its own
    with torch.random.fork_rng(
        devices=[]
    ):  # a method's random initialisation (LoRA's A) from --seed, not the global state
        torch.default_generator.manual_seed(cfg.seed)
        params = method.apply(unet, mask)
    result = TrainResult(sum(p.numel() for p in params), total)
    if not params or cfg.max_train_steps == 0:
        return result
    if cfg.train_batch_size < 1:
        raise UserError(f"--train_batch_size must be at least 1, got {cfg.train_batch_size}")
    if cfg.gradient_accumulation_steps < 1:
        raise UserError(f"--gradient_accumulation_steps must be at least 1, got {cfg.gradient_accumulation_steps}")
    cast_frozen(unet, params, WEIGHT_DTYPES[accelerator.mixed_precision])
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    optimizer = torch.optim.AdamW(
        method.param_groups(unet, params, cfg.learning_rate), lr=cfg.learning_rate, weight_decay=cfg.adam_weight_decay
    )
    lr_scheduler = get_scheduler(
        cfg.lr_scheduler,
        optimizer,
        num_warmup_steps=cfg.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=cfg.max_train_steps * accelerator.num_processes,
    )
    model, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    generator = torch.Generator().manual_seed(cfg.seed)
    data = replace(data, captions=mitigation.setup(data.captions, generator))
    if cfg.latent_sampling == "mean":
        data = replace(data, latents=data.latents.posterior_means())
    batches = BatchIndices(len(data.latents), global_batch_size(cfg, accelerator), generator)
    num_train_timesteps = noise_scheduler.config.num_train_timesteps
    state = TrainingState(unet, method, optimizer, lr_scheduler, generator, batches, result, accelerator)
    resumed = checkpoints.restore(state) if checkpoints else Progress()

    start, counted = time.perf_counter() - resumed.seconds, resumed.counted
    running = torch.tensor(resumed.running_loss, device=accelerator.device)
    show = progress and accelerator.is_main_process
    bar = tqdm(
        range(resumed.step, cfg.max_train_steps),
        initial=resumed.step,
        total=cfg.max_train_steps,
        desc=f"train {method.name}",
        disable=not show,
        leave=False,
    )
    for step in bar:
        batch = draw_batch(data, next(batches), num_train_timesteps, cfg.caption_dropout, generator, mitigation)
        with step_context(step):
            loss, kept = accumulate_gradients(
                model, noise_scheduler, batch, data.captions, params, cfg.train_batch_size, accelerator, mitigation
            )
        result.dropped_samples += len(batch) - kept
        if loss is None:  # as Wen et al.: a batch the mitigation empties makes no step
            result.skipped_batches += 1
        else:
            accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            running += loss
            counted += 1
        optimizer.zero_grad(set_to_none=True)
        if ((step + 1) % LOG_EVERY == 0 or step + 1 == cfg.max_train_steps) and counted:
            mean = _summed_over_processes(running, accelerator).item() / counted
            if mean != mean or mean in (float("inf"), float("-inf")):
                raise NonFiniteLoss(f"loss became {mean} at step {step + 1}")
            result.losses.append((step + 1, mean))
            bar.set_postfix(loss=f"{mean:.4f}")
            running.zero_()
            counted = 0
        if checkpoints:
            checkpoints.after_step(state, Progress(step + 1, running, counted, time.perf_counter() - start))
    accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    unet.eval()
    result.steps, result.seconds = cfg.max_train_steps, time.perf_counter() - start
    result.global_batch_size = global_batch_size(cfg, accelerator)
    return result


def accumulate_gradients(
    model,
    noise_scheduler,
    batch: Batch,
    captions: CaptionEmbeddings,
    params: list[torch.nn.Parameter],
    per_device: int,
    accelerator: Accelerator,
    mitigation: Mitigation,
) -> tuple[torch.Tensor | None, int]:
    """Forward and backward over this process's shares of ``batch``, leaving (once DDP has averaged them over the
    processes) the gradients of the mean loss over the samples of the batch the mitigation keeps.

    Returns this process's part of that loss (the processes' parts sum to it; None when no sample was kept) and how
    many samples the whole batch kept.
    """
    parts = process_shares(batch, per_device, accelerator.process_index, accelerator.num_processes)
    accelerator.gradient_accumulation_steps = len(parts)  # accelerate divides each pass's loss by it, syncs at the last
    accelerator.step = 0  # its count of passes, from this batch's first whatever came before
    weighted, kept = [], []
    for part in parts:
        with accelerator.accumulate(model):
            loss, part_kept = _loss(model, noise_scheduler, part, captions, params, accelerator, mitigation)
            accelerator.backward(loss)
        weighted.append(loss.detach())
        kept.append(part_kept)
    total = _kept_in_batch(kept, len(batch), accelerator)
    if total == 0:
        return None, 0
    if total < len(batch):  # each pass counted as if its share were whole: scale to the mean over the kept samples
        for p in params:
            if p.grad is not None:
                p.grad.mul_(len(batch) / total)
    return torch.stack(weighted).sum() * (per_device / total), total


def _kept_in_batch(kept: list[int | None], size: int, accelerator: Accelerator) -> int:
    """Samples of the global batch the loss counts: all of them unless the mitigation chose (None: it did not)."""
    if all(k is None for k in kept):  # the same on every process: it is the mitigation's kind that decides
        return size
    return int(_summed_over_processes(torch.tensor(sum(kept), device=accelerator.device), accelerator))


def _summed_over_processes(value: torch.Tensor, accelerator: Accelerator) -> torch.Tensor:
    return accelerator.reduce(value, "sum") if accelerator.num_processes > 1 else value


def _loss(
    model,
    noise_scheduler,
    part: Batch,
    captions: CaptionEmbeddings,
    params: list[torch.nn.Parameter],
    accelerator: Accelerator,
    mitigation: Mitigation,
) -> tuple[torch.Tensor, int | None]:
    """One forward pass's loss over the samples the mitigation keeps, times their share of the pass, and how many
    it kept (None: the mitigation does not choose, all count)."""
    device = accelerator.device
    latents, noise, timesteps = part.latents.to(device), part.noise.to(device), part.timesteps.to(device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    with accelerator.autocast():
        prediction = model(noisy, timesteps, part.conditioning, return_dict=False)[0]
        keep = mitigation.keep(model, noisy, timesteps, prediction, captions)
    if keep is None:
        return F.mse_loss(prediction.float(), target.float()), None
    kept = int(keep.sum())
    if kept == 0:  # still a backward, of zeros: under DDP every process must hand in gradients for every weight
        return torch.stack([p.sum() for p in params]).sum() * 0.0, 0
    return F.mse_loss(prediction[keep].float(), target[keep].float()) * (kept / len(keep)), kept
