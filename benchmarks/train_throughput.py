"""Training throughput of memcontrol's engine against a diffusers-style loop, on the same model, batch and method.

    python benchmarks/train_throughput.py [--method full] [--steps 40] [--batch_size 32] [--repeats 3]
        [--pretrained_model_name_or_path DIR --train_data_dir DIR --max_train_samples N --resolution PX
         --mixed_precision fp16 --gradient_checkpointing]

memcontrol (train/engine.py ``fine_tune``) encodes the training images (VAE) and captions (text
encoder) once, then each step runs only the U-Net. The reference loop below is written the way
diffusers' examples/text_to_image/train_text_to_image.py does it: at every step the batch's images
go through the VAE (``latent_dist.sample()``) and its tokens through the text encoder, then the same
U-Net step (noise, MSE in float32, backward, clipping, AdamW, scheduler; autocast and gradient
checkpointing as the flags say, on the accelerator if there is one). The reference gets its
images decoded and its captions tokenized up front (diffusers' DataLoader does that work per step),
so it is timed slightly in its favour. Both run on the built-in base model and the built-in training
list (or the model and data the flags give), built fresh for each run; the figure is the median over ``--repeats``
alternating runs of the timed steps only (setup excluded; memcontrol's one-time encoding is printed apart), after one
untimed warm-up run of each.

The built-in model's VAE and text encoder are tiny next to its U-Net, so there the gain is small.
The script also counts (torch.utils.flop_counter, on the meta device: nothing is run or allocated)
the FLOPs of one sample's training step on the SD v1.5 architecture at 224 and 512 px with and
without the VAE and text encoder: the speedup caching can give there if time follows FLOPs.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import diffusers  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from diffusers import AutoencoderKL, DDPMScheduler  # noqa: E402
from diffusers.optimization import get_scheduler  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from training_flags import add_training_flags, model_config  # noqa: E402  (this folder is on sys.path)
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

from memcontrol.config import DataConfig, TrainConfig  # noqa: E402
from memcontrol.data.imagefolder import load_images  # noqa: E402
from memcontrol.data.prepare import prepare_data  # noqa: E402
from memcontrol.models.architectures import build_unet  # noqa: E402
from memcontrol.peft import get_method  # noqa: E402
from memcontrol.runtime import load_for_training, make_accelerator, native_resolution  # noqa: E402
from memcontrol.train.engine import batch_indices, fine_tune  # noqa: E402
from memcontrol.train.run import build_training_set  # noqa: E402

diffusers.utils.logging.set_verbosity_error()
diffusers.utils.logging.disable_progress_bar()
transformers.utils.logging.disable_progress_bar()


def train_config(args) -> TrainConfig:
    # No warm-up, so that both loops take the same steps at the same learning rate from the first.
    return TrainConfig(
        method=args.method,
        train_batch_size=args.batch_size,
        max_train_steps=args.steps,
        lr_warmup_steps=0,
        gradient_checkpointing=args.gradient_checkpointing,
    )


def resolution(args, pipe) -> int:
    return args.resolution or native_resolution(pipe)


def release() -> None:
    """Free what the previous run left (accelerate's wrappers make reference cycles), so that runs start alike."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def memcontrol_run(args, examples) -> tuple[float, float]:
    """(seconds of the training steps, seconds of the one-time encoding) with memcontrol's engine."""
    model = model_config(args)
    accelerator = make_accelerator(model)
    pipe = load_for_training(model, accelerator)
    method = get_method(args.method)
    start = time.perf_counter()
    training_set = build_training_set(pipe, examples, resolution(args, pipe), progress=False)
    encode_seconds = time.perf_counter() - start
    result = fine_tune(
        pipe, method, method.check_mask(pipe.unet, None), training_set, train_config(args), accelerator, progress=False
    )
    return result.seconds, encode_seconds


def diffusers_run(args, examples) -> float:
    """Seconds of the training steps of a loop as diffusers' train_text_to_image.py writes it."""
    cfg, model = train_config(args), model_config(args)
    accelerator = make_accelerator(model)
    pipe = load_for_training(model, accelerator)
    vae, text_encoder, tokenizer, unet = pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.unet
    pixel_values = load_images(examples, resolution(args, pipe), progress=False)
    input_ids = tokenizer(
        [e.text for e in examples],
        max_length=tokenizer.model_max_length,
        padding="max_length",
        truncation=True,
        return_tensors="pt",
    ).input_ids
    method = get_method(args.method)
    params = method.apply(unet, method.check_mask(unet, None))
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    optimizer = torch.optim.AdamW(
        method.param_groups(unet, params, cfg.learning_rate), lr=cfg.learning_rate, weight_decay=cfg.adam_weight_decay
    )
    lr_scheduler = get_scheduler(
        cfg.lr_scheduler, optimizer, num_warmup_steps=0, num_training_steps=cfg.max_train_steps
    )
    unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    batches = batch_indices(len(examples), cfg.train_batch_size, torch.Generator().manual_seed(cfg.seed))
    weight_dtype = vae.dtype

    start = time.perf_counter()
    for _ in range(cfg.max_train_steps):
        index = next(batches)
        # ---- as in train_text_to_image.py: frozen VAE and text encoder at every step
        latents = vae.encode(pixel_values[index].to(accelerator.device, weight_dtype)).latent_dist.sample()
        latents = latents * vae.config.scaling_factor
        noise = torch.randn_like(latents)
        timesteps = torch.randint(
            0, noise_scheduler.config.num_train_timesteps, (len(index),), device=latents.device
        ).long()
        noisy_latents = noise_scheduler.add_noise(latents, noise, timesteps)
        encoder_hidden_states = text_encoder(input_ids[index].to(accelerator.device), return_dict=False)[0]
        target = noise
        # ---- the same U-Net step as memcontrol's
        with accelerator.autocast():
            model_pred = unet(noisy_latents, timesteps, encoder_hidden_states, return_dict=False)[0]
        loss = F.mse_loss(model_pred.float(), target.float(), reduction="mean")
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # the script reads the loss every step (train_loss += avg_loss.item())
    return time.perf_counter() - start


def sd15_flops(method_name: str, resolution: int, batch_size: int) -> tuple[float, float, float]:
    """GFLOPs of one step of ``batch_size`` samples on SD v1.5's architecture: VAE encode, text encoder (77 tokens),
    U-Net forward + backward with the method (with SV-DIFF, the weights it rebuilds at each step count too)."""
    with torch.device("meta"):
        vae = AutoencoderKL(  # SD v1.5's VAE (its config on the Hub)
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            latent_channels=4,
            norm_num_groups=32,
            sample_size=512,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(  # CLIP ViT-L/14's text tower
                vocab_size=49408,
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                max_position_embeddings=77,
                hidden_act="quick_gelu",
            )
        )
    unet = build_unet("sd15")
    method = get_method(method_name)
    method.apply(unet, method.check_mask(unet, None))

    def count(fn) -> float:
        with FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops() / 1e9

    with torch.no_grad():
        vae_flops = count(
            lambda: vae.encode(torch.empty(batch_size, 3, resolution, resolution, device="meta")).latent_dist.sample()
        )
        text_flops = count(lambda: text_encoder(torch.zeros(batch_size, 77, dtype=torch.long, device="meta"))[0])
    latents = torch.empty(batch_size, 4, resolution // 8, resolution // 8, device="meta")
    states = torch.empty(batch_size, 77, 768, device="meta")
    unet_flops = count(
        lambda: unet(latents, torch.zeros(batch_size, device="meta"), states).sample.float().square().mean().backward()
    )
    return vae_flops, text_flops, unet_flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="full", help="fine-tuning method, as --method of memcontrol train")
    parser.add_argument("--steps", type=int, default=40, help="timed optimisation steps per run")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each loop, alternating; the median is reported")
    add_training_flags(parser)
    args = parser.parse_args()
    examples = prepare_data(
        DataConfig(train_data_dir=args.train_data_dir, max_train_samples=args.max_train_samples)
    ).training
    samples = args.steps * args.batch_size
    print(
        f"method {args.method}, batch {args.batch_size}, {args.steps} steps, {len(examples)} training items, "
        f"mixed precision {args.mixed_precision}, gradient checkpointing {args.gradient_checkpointing}, "
        f"{make_accelerator(model_config(args)).device} ({torch.get_num_threads()} torch threads)"
    )
    warm_up = argparse.Namespace(**{**vars(args), "steps": 2})
    (
        memcontrol_run(warm_up, examples),
        diffusers_run(warm_up, examples),
    )  # first-call costs (allocator, kernels) out of the timings
    engine, reference, encode = [], [], []
    for repeat in range(args.repeats):
        runs = [("memcontrol", memcontrol_run), ("diffusers", diffusers_run)]
        for name, run in runs if repeat % 2 == 0 else runs[::-1]:  # alternate the order against drifting load
            release()
            if name == "memcontrol":
                seconds, encoded = run(args, examples)
                engine.append(seconds)
                encode.append(encoded)
            else:
                seconds = run(args, examples)
                reference.append(seconds)
            print(f"  run {repeat + 1} {name:10s} {seconds:7.2f} s  {samples / seconds:8.1f} samples/s")
    ours, theirs = statistics.median(engine), statistics.median(reference)
    print(f"memcontrol engine:      {samples / ours:8.1f} samples/s (median of {args.repeats})")
    print(f"diffusers-style loop:   {samples / theirs:8.1f} samples/s (median of {args.repeats})")
    print(
        f"memcontrol one-time encoding of {len(examples)} items: {statistics.median(encode):.2f} s "
        f"(once per process; with it, these {args.steps} steps: {theirs / (ours + statistics.median(encode)):.2f}x)"
    )
    for side in (224, 512):
        vae_flops, text_flops, unet_flops = sd15_flops(args.method, side, args.batch_size)
        print(
            f"SD v1.5 architecture at {side} px, {args.method}, per sample of a batch of {args.batch_size} (FLOP "
            f"count, not timed): VAE encode {vae_flops / args.batch_size:.0f} + text encoder "
            f"{text_flops / args.batch_size:.0f} + U-Net fwd+bwd {unet_flops / args.batch_size:.0f} GFLOP -> caching "
            "bound "
            f"{(vae_flops + text_flops + unet_flops) / unet_flops:.2f}x"
        )
    print(f"train_speedup_vs_diffusers_loop: {theirs / ours:.2f}x")


if __name__ == "__main__":
    main()
