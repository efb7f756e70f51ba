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


def _tiles(images: torch.Tensor, grid: int) -> list[torch.Tensor]:
    """(N, C, H, W) -> grid * grid tensors (N, tile elements); sides that do not divide evenly give tiles differing by a pixel."""
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
        distance = torch.cdist(ta, tb, compute_mode="donot_use_mm_for_euclid_dist") / ta.shape[1] ** 0.5  # exact: copies give 0
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
    originals: torch.Tensor | Sequence[torch.Tensor],
    prompts: Sequence[str],
    *,
    threshold: float = 0.15,
    min_group: int = 3,
    grouping: str = "clique",
    grid: int = 4,
) -> list[Extraction]:
    """Attack P prompts from their generations (P, G, C, H, W) and training images, all in [0, 1]: one per prompt
    (P, C, H, W), or P tensors (K, C, H, W) of the K training images that share each prompt's caption.

    At most one extraction per prompt: the representative closest to one of its training images.
    """
    num_prompts, samples = generated.shape[:2]
    references = _per_prompt(originals)
    found = []
    for p in range(num_prompts):
        distances = tile_distances(generated[p], generated[p], grid)
        best = None
        for group in find_groups((distances < threshold).cpu().numpy(), min_group, grouping):
            medoid = group[int(distances[group][:, group].sum(1).argmin())]
            distance, _ = nearest_reference(generated[p, medoid], references[p], grid)
            if distance < threshold and (best is None or distance < best.distance):
                best = Extraction(prompts[p], p, p * samples + medoid, distance, len(group))
        if best is not None:
            found.append(best)
    return found


def _per_prompt(originals: torch.Tensor | Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
    """Each prompt's training images (K, C, H, W), from one image per prompt (P, C, H, W) or already per prompt."""
    return originals[:, None] if isinstance(originals, torch.Tensor) else originals


def nearest_reference(image: torch.Tensor, references: torch.Tensor, grid: int = 4) -> tuple[float, int]:
    """The tile distance of ``image`` (C, H, W) to the nearest of ``references`` (K, C, H, W), and which one."""
    distance, k = tile_distances(image[None], references, grid)[0].min(dim=0)
    return float(distance), int(k)


def nearest_generations(
    generated: torch.Tensor, originals: torch.Tensor | Sequence[torch.Tensor], grid: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """For P prompts' generations (P, G, C, H, W) and training images (as in ``extraction_attack``): the tile
    distance of each prompt's generation nearest one of its training images, and that generation's index among the
    prompt's G."""
    references = _per_prompt(originals)
    distances = torch.stack([tile_distances(generated[p], refs, grid).amin(dim=1) for p, refs in enumerate(references)])
    return distances.min(dim=1)


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
    sampling = dict(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, batch_size=batch_size, resolution=resolution)
    run = AttackRun([], [], len(examples))
    features = []
    for start in tqdm(range(0, len(examples), per_call), desc="extraction attack", disable=not progress, leave=False):
        chunk = examples[start : start + per_call]
        prompts = [e.text for e in chunk]
        repeated = [text for text in prompts for _ in range(samples_per_prompt)]
        images = generate(pipe, repeated, seed=seed + start * samples_per_prompt, progress=False, **sampling)
        chunk_references = [list(references[e.text]) if references else [e] for e in chunk]
        originals = _load_references(chunk_references, resolution)
        grouped = images.unflatten(0, (len(chunk), samples_per_prompt))
        _keep_closest(run, chunk_references, grouped, originals, start * samples_per_prompt, grid)
        for e in extraction_attack(grouped, originals, prompts, **attack):
            _, k = nearest_reference(images[e.generated_index], originals[e.training_index], grid)
            run.pairs.append((originals[e.training_index][k], images[e.generated_index]))
            run.extractions.append(replace(
                e,
                training_index=start + e.training_index,
                generated_index=start * samples_per_prompt + e.generated_index,
                training_image=str(chunk_references[e.training_index][k].image_path),
            ))
        if extractor is not None:
            features.append(extractor(images, batch_size))
    run.features = torch.cat(features) if features else None
    return run


def _load_references(chunk_references: list[list[Example]], resolution: int) -> list[torch.Tensor]:
    """Each prompt's training images (K, C, H, W) in [0, 1], loaded in one call."""
    images = (load_images([e for examples in chunk_references for e in examples], resolution, progress=False) + 1) / 2
    return list(images.split([len(examples) for examples in chunk_references]))


def _keep_closest(
    run: AttackRun, chunk_references: list[list[Example]], grouped: torch.Tensor, originals: list[torch.Tensor],
    first: int, grid: int,
) -> None:
    """Add the nearest generation of each of the chunk's prompts to ``run``, with the training image it is nearest;
    ``first`` is the chunk's first generated_index."""
    distances, nearest = nearest_generations(grouped, originals, grid)
    for p, examples in enumerate(chunk_references):
        image = grouped[p, nearest[p]]
        reference = examples[nearest_reference(image, originals[p], grid)[1]]
        generated_index = first + p * grouped.shape[1] + int(nearest[p])
        run.closest.append(Closest(reference.text, str(reference.image_path), generated_index, float(distances[p])))
        run.closest_images.append(to_pil(image[None])[0])


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
        raise UserError(f"extraction min_group {min_group}: expected from 1 to samples_per_prompt ({samples_per_prompt})")
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
