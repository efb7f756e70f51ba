"""The one fine-tuning engine (the inner loop of the search), for every method.

Reads like diffusers' train_text_to_image.py, minus the per-step VAE and text encoder (see cache.py):
noise the cached latents at a random timestep, predict the noise (or velocity) with the U-Net,
MSE in float32, AdamW with warm-up, gradient clipping. All randomness comes from one seeded CPU
generator, so a run is reproducible on a given device whatever the batch timing. A memorization
mitigation (memcontrol.mitigations, ``cfg.mitigation``) plugs into each step through its hooks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import DDPMScheduler, StableDiffusionPipeline
from diffusers.optimization import get_scheduler
from tqdm.auto import tqdm

from memcontrol.config import TrainConfig
from memcontrol.errors import UserError
from memcontrol.mitigations import Mitigation, MitigationOptions, get_mitigation
from memcontrol.peft import Mask, PeftMethod
from memcontrol.runtime import WEIGHT_DTYPES, cast_frozen
from memcontrol.train.cache import CaptionEmbeddings, LatentCache
from memcontrol.train.state import Checkpoints, Progress, TrainingState

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
class TrainResult:
    trainable_parameters: int
    total_parameters: int
    steps: int = 0
    seconds: float = 0.0
    losses: list[tuple[int, float]] = field(default_factory=list)
    dropped_samples: int = 0  # left out of the loss by the mitigation
    skipped_batches: int = 0  # every sample left out: no optimizer step

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
        batch, self.buffer = self.buffer[:self.batch_size], self.buffer[self.batch_size:]
        return batch


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
) -> TrainResult:
    """Adapt ``pipe.unet`` in place with ``method``/``mask`` and train it on ``data`` with ``mitigation``.

    ``mitigation`` defaults to the one ``cfg`` names; a caller builds it first to check its options early.
    ``checkpoints``: where the run saves checkpoints, and the one it resumes from.
    """
    if mitigation is None:
        mitigation = get_mitigation(cfg.mitigation, MitigationOptions.from_config(cfg))
    unet = pipe.unet
    total = sum(p.numel() for p in unet.parameters())  # the base U-Net's, before the method adds its own
    params = method.apply(unet, mask)
    result = TrainResult(sum(p.numel() for p in params), total)
    if not params or cfg.max_train_steps == 0:
        return result
    if cfg.train_batch_size < 1:
        raise UserError(f"--train_batch_size must be at least 1, got {cfg.train_batch_size}")
    cast_frozen(unet, params, WEIGHT_DTYPES[accelerator.mixed_precision])
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    optimizer = torch.optim.AdamW(method.param_groups(unet, params, cfg.learning_rate), lr=cfg.learning_rate, weight_decay=cfg.adam_weight_decay)
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
    batches = BatchIndices(len(data.latents), cfg.train_batch_size, generator)
    state = TrainingState(unet, method, optimizer, lr_scheduler, generator, batches, result, accelerator)
    resumed = checkpoints.restore(state) if checkpoints else Progress()

    start, counted = time.perf_counter() - resumed.seconds, resumed.counted
    running = torch.tensor(resumed.running_loss, device=accelerator.device)
    bar = tqdm(range(resumed.step, cfg.max_train_steps), initial=resumed.step, total=cfg.max_train_steps,
               desc=f"train {method.name}", disable=not progress, leave=False)
    for step in bar:
        loss, dropped = _loss(model, noise_scheduler, data, next(batches), cfg.caption_dropout, generator, accelerator, mitigation)
        result.dropped_samples += dropped
        if loss is None:  # as Wen et al.: a batch the mitigation empties makes no step
            result.skipped_batches += 1
        else:
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            running += loss.detach()
            counted += 1
        if ((step + 1) % LOG_EVERY == 0 or step + 1 == cfg.max_train_steps) and counted:
            mean = running.item() / counted
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
    return result


def _loss(
    model, noise_scheduler, data: TrainingSet, index, caption_dropout, generator, accelerator, mitigation: Mitigation
) -> tuple[torch.Tensor | None, int]:
    """The batch's loss over the samples the mitigation keeps (None when it keeps none), and how many it left out."""
    device = accelerator.device
    latents = data.latents.sample(index, generator)
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(index),), generator=generator)
    caption_ids = data.captions.caption_ids[index].clone()
    caption_ids[torch.rand(len(index), generator=generator) < caption_dropout] = data.captions.empty_id
    conditioning = mitigation.embed(data.captions, caption_ids, generator)
    latents, noise, timesteps = latents.to(device), noise.to(device), timesteps.to(device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    with accelerator.autocast():
        prediction = model(noisy, timesteps, conditioning, return_dict=False)[0]
        keep = mitigation.keep(model, noisy, timesteps, prediction, data.captions)
    if keep is None:
        return F.mse_loss(prediction.float(), target.float()), 0
    dropped = int((~keep).sum())
    if dropped == len(keep):
        return None, dropped
    return F.mse_loss(prediction[keep].float(), target[keep].float()), dropped
