"""Training-data extraction attack (Carlini et al. 2023), as the paper's "number of extracted images".

For each attacked prompt: generate G images; join two generations when their tile distance is below
a threshold; look for groups of at least k generations all near each other (cliques, or connected
components as in the authors' code); a group's representative (its medoid) that is also within the
threshold of the prompt's training image counts that image as extracted. A caption that several training
images share is attacked once, against each of them (``references``).

The tile distance is the maximum over a grid of tiles of the RMS difference of corresponding tiles
(L2 divided by the square root of the tile's element count) on [0, 1] images, so that a threshold
means the same at any resolution; Carlini et al. use 4 x 4 tiles and 0.15.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline
from PIL import Image
from tqdm.auto import tqdm

from memcontrol.data.imagefolder import Example, load_images
from memcontrol.errors import UserError
from memcontrol.io import atomic_path
from memcontrol.metrics.features import FeatureExtractor
from memcontrol.metrics.graphs import GROUPINGS, find_groups
from memcontrol.sampling.generate import generate, to_pil

REFERENCE_BLOCK = 64  # training images of one caption compared at once


def _tiles(images: torch.Tensor, grid: int) -> list[torch.Tensor]:
    """(N, C, H, W) -> grid * grid tensors (N, tile elements); sides that do not divide evenly give tiles differing by
    a pixel."""
    return [tile.flatten(1) for rows in images.tensor_split(grid, dim=2) for tile in rows.tensor_split(grid, dim=3)]


def tile_distances(a: torch.Tensor, b: torch.Tensor, grid: int = 4) -> torch.Tensor:
    """(N, M) distances between images a (N, C, H, W) and b (M, C, H, W): the worst tile's RMS difference.

    The maximum over tiles keeps a copy whose one region differs (a marker, a watermark) far apart,
    while noise spread over a whole image adds little.
    """
    if min(a.shape[-2:]) < grid or min(b.shape[-2:]) < grid:
        raise ValueError(f"images of {tuple(a.shape[-2:])} pixels cannot be cut into {grid} x {grid} tiles")
    out = torch.zeros(len(a), len(b), device=a.device)
    for ta, tb in zip(_tiles(a.float(), grid), _tiles(b.to(a.device, torch.float32), grid)):
        distance = (
            torch.cdist(ta, tb, compute_mode="donot_use_mm_for_euclid_dist") / ta.shape[1] ** 0.5
        )  # exact: copies give 0
        out = torch.maximum(out, distance)
    return out


@dataclass(frozen=True)
class Extraction:
    prompt: str
    training_index: int  # position of the prompt and its training image among the attacked ones
    generated_index: int  # prompt * G + sample; generate() drew it from seed + generated_index
    distance: float  # tile distance between that generation and the training image
    group_size: int
    training_image: str | None = None  # the training image's file, when known


def extraction_attack(
    generated: torch.Tensor,
    originals: torch.Tensor,
    prompts: Sequence[str],
    *,
    threshold: float = 0.15,
    min_group: int = 3,
    grouping: str = "clique",
    grid: int = 4,
) -> list[Extraction]:
    """Attack P prompts from their generations (P, G, C, H, W) and training images (P, C, H, W), all in [0, 1].

    At most one extraction per prompt (it has one training image): the closest representative.
    """
    to_training = training_distances(generated, originals, grid)
    return attack_groups(
        generated, to_training, prompts, threshold=threshold, min_group=min_group, grouping=grouping, grid=grid
    )


def attack_groups(
    generated: torch.Tensor,
    to_training: torch.Tensor,
    prompts: Sequence[str],
    *,
    threshold: float = 0.15,
    min_group: int = 3,
    grouping: str = "clique",
    grid: int = 4,
) -> list[Extraction]:
    """``extraction_attack`` from the tile distance (P, G) of each generation to its prompt's training image (the
    nearest one where several share the caption)."""
    num_prompts, samples = generated.shape[:2]
    found = []
    for p in range(num_prompts):
        distances = tile_distances(generated[p], generated[p], grid)
        best = None
        for group in find_groups((distances < threshold).cpu().numpy(), min_group, grouping):
            medoid = group[int(distances[group][:, group].sum(1).argmin())]
            distance = float(to_training[p, medoid])
            if distance < threshold and (best is None or distance < best.distance):
                best = Extraction(prompts[p], p, p * samples + medoid, distance, len(group))
        if best is not None:
            found.append(best)
    return found


def training_distances(generated: torch.Tensor, originals: torch.Tensor, grid: int = 4) -> torch.Tensor:
    """(P, G): the tile distance of each of P prompts' generations (P, G, C, H, W) to its training image (P, C, H,
    W)."""
    return torch.stack([tile_distances(generated[p], originals[p : p + 1], grid)[:, 0] for p in range(len(originals))])


def nearest_generations(
    generated: torch.Tensor, originals: torch.Tensor, grid: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """For P prompts' generations (P, G, C, H, W) and training images (P, C, H, W): the tile distance of each
    prompt's generation nearest its training image, and that generation's index among the prompt's G."""
    return training_distances(generated, originals, grid).min(dim=1)


@dataclass(frozen=True)
class Closest:
    """An attacked prompt's generation nearest its training image, extracted or not (the paper's Figure 4)."""

    prompt: str
    training_image: str
    generated_index: int  # as in Extraction
    distance: float


@dataclass
class AttackRun:
    extractions: list[Extraction]
    pairs: list[tuple[torch.Tensor, torch.Tensor]]  # (training, generated) image of each extraction
    prompts: int
    features: torch.Tensor | None = None  # of every generation, when an extractor was given
    closest: list[Closest] = field(default_factory=list)  # one per attacked prompt, in order
    closest_images: list[Image.Image] = field(default_factory=list)  # 8-bit: a quarter of the float images' memory


def run_extraction_attack(
    pipe: StableDiffusionPipeline,
    examples: Sequence[Example],
    resolution: int,
    *,
    samples_per_prompt: int = 16,
    threshold: float = 0.15,
    min_group: int = 3,
    grouping: str = "clique",
    grid: int = 4,
    seed: int = 0,
    num_inference_steps: int = 50,
    guidance_scale: float = 7.5,
    batch_size: int = 16,
    extractor: FeatureExtractor | None = None,
    references: Mapping[str, Sequence[Example]] | None = None,
    progress: bool = True,
) -> AttackRun:
    """Generate ``samples_per_prompt`` images for each distinct example's caption and attack its image, or with
    ``references`` (caption -> training examples) each of the training images that share the caption.

    Prompts are processed a few at a time, so that only a few prompts' generations are held at once; kept
    are the extracted pairs, each prompt's generation nearest its image (the paper's Figure 4) and, with
    ``extractor``, the features of every generation.
    """
    attack = dict(threshold=threshold, min_group=min_group, grouping=grouping, grid=grid)
    check_attack_settings(samples_per_prompt, **attack)
    examples = list(dict.fromkeys(examples))  # D_mem lists each pair many times; attack it once
    per_call = max(1, batch_size // samples_per_prompt)
    sampling = dict(
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        batch_size=batch_size,
        resolution=resolution,
    )
    run = AttackRun([], [], len(examples))
    features = []
    for start in tqdm(range(0, len(examples), per_call), desc="extraction attack", disable=not progress, leave=False):
        chunk = examples[start : start + per_call]
        prompts = [e.text for e in chunk]
        repeated = [text for text in prompts for _ in range(samples_per_prompt)]
        images = generate(pipe, repeated, seed=seed + start * samples_per_prompt, progress=False, **sampling)
        chunk_references = [list(references[e.text]) if references else [e] for e in chunk]
        grouped = images.unflatten(0, (len(chunk), samples_per_prompt))
        to_training, nearest_reference = _reference_distances(grouped, chunk_references, resolution, grid)
        _keep_closest(run, chunk_references, grouped, to_training, nearest_reference, start * samples_per_prompt)
        for e in attack_groups(grouped, to_training, prompts, **attack):
            reference = chunk_references[e.training_index][int(nearest_reference.flatten()[e.generated_index])]
            run.pairs.append(
                ((load_images([reference], resolution, progress=False)[0] + 1) / 2, images[e.generated_index])
            )
            run.extractions.append(
                replace(
                    e,
                    training_index=start + e.training_index,
                    generated_index=start * samples_per_prompt + e.generated_index,
                    training_image=str(reference.image_path),
                )
            )
        if extractor is not None:
            features.append(extractor(images, batch_size))
    run.features = torch.cat(features) if features else None
    return run


def _reference_distances(
    grouped: torch.Tensor, chunk_references: list[list[Example]], resolution: int, grid: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, G): the tile distance of each generation to the nearest training image of its prompt, and which one (its
    index in the prompt's list). The images are read a block at a time: a caption may be shared by thousands."""
    distances, nearest = [], []
    for generations, examples in zip(grouped, chunk_references):
        best = torch.full((len(generations),), float("inf"))
        which = torch.zeros(len(generations), dtype=torch.long)
        for first in range(0, len(examples), REFERENCE_BLOCK):
            block = (load_images(examples[first : first + REFERENCE_BLOCK], resolution, progress=False) + 1) / 2
            distance, k = tile_distances(generations, block, grid).cpu().min(dim=1)
            closer = distance < best
            best, which = torch.where(closer, distance, best), torch.where(closer, k + first, which)
        distances.append(best)
        nearest.append(which)
    return torch.stack(distances), torch.stack(nearest)


def _keep_closest(
    run: AttackRun,
    chunk_references: list[list[Example]],
    grouped: torch.Tensor,
    to_training: torch.Tensor,
    nearest_reference: torch.Tensor,
    first: int,
) -> None:
    """Add each of the chunk's prompts' generation nearest a training image to ``run``, with that image (see
    ``_reference_distances`` for ``to_training`` and ``nearest_reference``); ``first``: the chunk's first
    generated_index."""
    distances, nearest = to_training.min(dim=1)
    for p, examples in enumerate(chunk_references):
        g = int(nearest[p])
        reference = examples[int(nearest_reference[p, g])]
        run.closest.append(
            Closest(reference.text, str(reference.image_path), first + p * grouped.shape[1] + g, float(distances[p]))
        )
        run.closest_images.append(to_pil(grouped[p, g][None])[0])


def save_closest(run: AttackRun, output_dir: str | Path) -> list[dict]:
    """Write each attacked prompt's nearest generation as ``NNNN.png`` in ``output_dir``; return their records."""
    records = []
    for i, (closest, image) in enumerate(zip(run.closest, run.closest_images)):
        with atomic_path(Path(output_dir) / f"{i:04d}.png") as tmp:
            image.save(tmp, format="PNG")
        records.append({**asdict(closest), "file": f"{Path(output_dir).name}/{i:04d}.png"})
    return records


def check_attack_settings(samples_per_prompt: int, threshold: float, min_group: int, grouping: str, grid: int) -> None:
    if grouping not in GROUPINGS:
        raise UserError(f"extraction grouping {grouping!r}: expected one of {', '.join(GROUPINGS)}")
    if not 1 <= min_group <= samples_per_prompt:
        raise UserError(
            f"extraction min_group {min_group}: expected from 1 to samples_per_prompt ({samples_per_prompt})"
        )
    if threshold <= 0 or grid < 1:
        raise UserError(f"extraction threshold {threshold} and grid {grid}: expected a positive threshold and grid")


def save_extraction_grid(run: AttackRun, path: str | Path, max_pairs: int = 16) -> Path:
    """The paper's Figure 1: each extracted training image beside its generated copy, closest first."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend

    shown = sorted(range(len(run.extractions)), key=lambda i: run.extractions[i].distance)[:max_pairs]
    figure = Figure(figsize=(4.4, 0.5 + 2.3 * len(shown)), layout="constrained")
    more = f" (closest {len(shown)} shown)" if len(shown) < len(run.extractions) else ""
    figure.suptitle(f"{len(run.extractions)} of {run.prompts} training images extracted{more}", fontsize=9)
    if shown:
        for axes, i in zip(figure.subplots(len(shown), 2, squeeze=False), shown):
            _show_pair(axes, run.extractions[i], run.pairs[i])
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return Path(path)


def _show_pair(axes, extraction: Extraction, pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    titles = (
        textwrap.shorten(f"train #{extraction.training_index}: {extraction.prompt}", 40),
        f"generated #{extraction.generated_index}, d={extraction.distance:.3f}",
    )
    for ax, image, title in zip(axes, pair, titles):
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        ax.set_title(title, fontsize=7)
        ax.axis("off")
