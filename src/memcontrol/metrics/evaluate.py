"""The paper's evaluation (Table 1) of one model, and a memorization audit, from the metric functions.

``evaluate_model``: quality on test prompts (FID against the real test images, caption alignment),
AMD of those samples to the training set, and memorization of D_mem (extraction attack, d_mem); with
``attack_prompts`` train or both, the extraction attack on ordinary training captions too, counted apart.
``audit_model``: the memorization metrics alone, on D_mem or on a seeded sample of training pairs.
Samples are generated a chunk at a time, so memory does not grow with the number of prompts.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline
from tqdm.auto import tqdm

from memcontrol.config import opt
from memcontrol.data.imagefolder import Example
from memcontrol.errors import UserError
from memcontrol.io import ensure_writable_dir
from memcontrol.metrics.alignment import class_alignment, clip_score, load_clip
from memcontrol.metrics.amd import amd
from memcontrol.metrics.dmem import DMEM_MODES, dmem_scores, dmem_summary
from memcontrol.metrics.domain import DomainFeatures
from memcontrol.metrics.extraction import (
    check_attack_settings,
    run_extraction_attack,
    save_closest,
    save_extraction_grid,
)
from memcontrol.metrics.features import FeatureExtractor, features_of_examples
from memcontrol.metrics.fid import fid
from memcontrol.metrics.graphs import GROUPINGS
from memcontrol.sampling.generate import generate

CHUNK = 256  # generated images held at once
EVAL_SPLITS = ("test", "validation")
EXTRACTION_FIGURE = "extraction.png"
CLOSEST_DIR = "closest"  # each attacked prompt's generation nearest its training image
ATTACK_PROMPTS = ("dmem", "train", "both")
TRAIN_ATTACK = "_train"  # suffix of the train attack's keys and files (extracted_train, extraction_train.png ...)


@dataclass
class EvalConfig:
    seed: int = opt(0, "seed of the evaluation's samples (image i uses seed + i)", min=0)
    eval_split: str = opt(
        "test",
        "split whose prompts and real images measure FID, AMD and alignment: test (the held-out evaluation), or "
        "validation to tune options such as the learning rate without looking at the test split",
        choices=EVAL_SPLITS,
    )
    num_inference_steps: int | None = opt(None, "DDIM steps; default: the base model's recommendation", min=1)
    guidance_scale: float | None = opt(
        None, "classifier-free guidance; default: the base model's recommendation", min=0
    )
    batch_size: int = opt(16, "images per generation (and d_mem) forward pass", min=1)
    feature_batch_size: int = opt(64, "images per feature-extractor forward pass", min=1)
    fid_samples: int | None = opt(None, "test prompts (and real test images) used for FID; default: all", min=2)
    dmem_mode: str = opt(
        "trajectory", "trajectory (the paper's Eq. 6) or training-noise (the authors' code)", choices=DMEM_MODES
    )
    dmem_samples_per_prompt: int = opt(1, "noise seeds per prompt for d_mem", min=1)
    extraction_samples: int = opt(16, "generations per attacked prompt (Carlini et al.: 500, the authors: 50)", min=1)
    extraction_min_group: int = opt(3, "clique size that flags a prompt (the authors: 3, Carlini et al.: 10)", min=1)
    extraction_grouping: str = opt("clique", "clique, or connected-components (the authors' code)", choices=GROUPINGS)
    extraction_threshold: float = opt(
        0.15, "normalised tile distance under which two images match (Carlini et al.)", above=0
    )
    extraction_grid: int = opt(4, "tiles per side in the extraction distance", min=1)
    attack_prompts: str = opt(
        "dmem",
        "prompts of the extraction attack: dmem (D_mem's), train (ordinary training captions, as the "
        "authors attacked, see --attack_train_prompts) or both, counted apart (extracted, extracted_train)",
        choices=ATTACK_PROMPTS,
    )
    attack_train_prompts: int = opt(
        1000,
        "training captions attacked by --attack_prompts train or both: the first N distinct captions of the "
        "training split in file order, D_mem's left out, each against every training image with it (the authors: "
        "1000)",
        min=1,
    )
    audit_prompts: int = opt(100, "training pairs attacked by `audit` when the model has no D_mem", min=1)

    def __post_init__(self):
        """Fail before hours of generation, not after."""
        if self.dmem_mode not in DMEM_MODES:
            raise UserError(f"dmem_mode {self.dmem_mode!r}: expected one of {', '.join(DMEM_MODES)}")
        if self.attack_prompts not in ATTACK_PROMPTS:
            raise UserError(f"attack_prompts {self.attack_prompts!r}: expected one of {', '.join(ATTACK_PROMPTS)}")
        check_attack_settings(
            self.extraction_samples,
            self.extraction_threshold,
            self.extraction_min_group,
            self.extraction_grouping,
            self.extraction_grid,
        )

    def sampling(self) -> dict:
        if self.num_inference_steps is None or self.guidance_scale is None:
            raise ValueError("resolve num_inference_steps and guidance_scale (see metrics.setup) before sampling")
        return dict(
            num_inference_steps=self.num_inference_steps, guidance_scale=self.guidance_scale, batch_size=self.batch_size
        )


def evaluate_model(
    pipe: StableDiffusionPipeline,
    *,
    train_examples: Sequence[Example],
    test_examples: Sequence[Example],
    dmem_examples: Sequence[Example],
    resolution: int,
    extractor: FeatureExtractor,
    output_dir: str | Path,
    settings: EvalConfig | None = None,
    class_of: Callable[[str], str | None] | None = None,
    classifier: DomainFeatures | None = None,
    clip_model: str | None = None,
    train_split: Sequence[Example] | None = None,
    progress: bool = True,
) -> dict:
    """fid, amd, alignment, clip_score, extracted, dmem_mean, dmem_max, with the settings used; with
    ``settings.attack_prompts`` train or both, extracted_train of attacked_train training captions (taken in the
    order of ``train_split``, the training split in file order, default ``train_examples``'s).

    ``alignment`` (needs ``class_of``, caption -> class name or None) is the domain classifier's
    probability of each caption's class: ``classifier``, or ``extractor`` when it is the domain encoder.
    ``clip_score`` needs ``clip_model``, a local CLIP folder. Either is None when not asked for.
    """
    s = settings or EvalConfig()
    output_dir = ensure_writable_dir(output_dir)
    test = list(test_examples)[: s.fid_samples]
    if len(test) < 2:
        raise UserError(f"evaluation: FID needs at least 2 test examples, got {len(test)}")
    judge = alignment_judge(classifier, extractor) if class_of else None
    clip = load_clip(clip_model, pipe._execution_device) if clip_model else None
    generated, alignment, clip_value = score_samples(
        pipe, test, resolution, s, extractor, judge, class_of, clip, progress
    )
    real = features_of_examples(extractor, test, resolution, batch_size=s.feature_batch_size, progress=progress)
    training = _training_features(extractor, train_examples, resolution, s, progress)
    dmem = list(dict.fromkeys(dmem_examples))
    attack_dmem = s.attack_prompts != "train"
    memorization, _ = _memorization(pipe, dmem, resolution, s, output_dir, None, progress, attack=attack_dmem)
    if s.attack_prompts != "dmem":
        prompts = train_attack_prompts(train_split or train_examples, train_examples, dmem, s.attack_train_prompts)
        train_attack = train_extraction_metrics(pipe, *prompts, resolution, s, output_dir, progress)
        figures = {**memorization["figures"], **train_attack["figures"]}
        memorization = {**memorization, **train_attack, "figures": figures}
    return {
        "fid": fid(real, generated),
        "amd": amd(generated, training),
        "alignment": alignment,
        "clip_score": clip_value,
        **memorization,
        "num_test": len(test),
        "num_training_images": len(training),
        "feature_extractor": extractor.name,
        "settings": asdict(s),
    }


def score_samples(
    pipe,
    test: list[Example],
    resolution: int,
    s: EvalConfig,
    extractor,
    judge,
    class_of,
    clip,
    progress: bool,
    on_images: Callable[[torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, float | None, float | None]:
    """Generate from the test captions a chunk at a time: the samples' features, alignment and CLIP score.

    ``judge`` (see ``alignment_judge``) and ``class_of``, and ``clip`` (see ``load_clip``), may be None;
    ``on_images``, when given, receives each chunk's images, in the captions' order (image i from seed s.seed + i).
    """
    features, alignment, clip_scores = [], [], []
    for start in tqdm(range(0, len(test), CHUNK), desc="evaluate", disable=not progress, leave=False):
        captions = [e.text for e in test[start : start + CHUNK]]
        images = generate(pipe, captions, seed=s.seed + start, resolution=resolution, progress=False, **s.sampling())
        if on_images is not None:
            on_images(images)
        features.append(extractor(images, s.feature_batch_size))
        if judge is not None:
            alignment.append(
                (class_alignment(judge, images, captions, class_of), sum(class_of(c) is not None for c in captions))
            )
        if clip is not None:
            clip_scores.append((clip_score(images, captions, clip), len(captions)))
    return torch.cat(features), _weighted_mean(alignment), _weighted_mean(clip_scores)


def audit_model(
    pipe: StableDiffusionPipeline,
    train_examples: Sequence[Example],
    *,
    resolution: int,
    extractor: FeatureExtractor,
    output_dir: str | Path,
    dmem_examples: Sequence[Example] = (),
    settings: EvalConfig | None = None,
    progress: bool = True,
) -> dict:
    """Memorization alone: the extraction attack and d_mem on D_mem (or, without one, on ``audit_prompts``
    training pairs drawn with the seed), and the AMD of the attack's generations to the training set."""
    s = settings or EvalConfig()
    if s.attack_prompts != "dmem":
        raise UserError(
            f"--attack_prompts {s.attack_prompts}: `audit` attacks D_mem, or --audit_prompts training pairs without"
            " one; the attack on training captions is `evaluate`'s and `benchmark`'s"
        )
    output_dir = ensure_writable_dir(output_dir)
    distinct = list(dict.fromkeys(train_examples))
    attacked = list(dict.fromkeys(dmem_examples)) or random.Random(s.seed).sample(
        distinct, min(s.audit_prompts, len(distinct))
    )
    if not attacked:
        raise UserError("audit: no training examples to attack")
    memorization, features = _memorization(pipe, attacked, resolution, s, output_dir, extractor, progress)
    training = _training_features(extractor, distinct, resolution, s, progress)
    return {
        **memorization,
        "amd": amd(features, training),
        "attacked_prompts": [e.text for e in attacked],
        "num_training_images": len(training),
        "feature_extractor": extractor.name,
        "settings": asdict(s),
    }


NO_EXTRACTION = {"extracted": None, "extractions": [], "closest": [], "figures": {}}


def _memorization(
    pipe,
    examples: list[Example],
    resolution: int,
    s: EvalConfig,
    output_dir: Path,
    extractor,
    progress: bool,
    attack: bool = True,
) -> tuple[dict, torch.Tensor | None]:
    """Extraction attack (unless not ``attack``; its figure written to ``output_dir``) and d_mem on ``examples``; None
    values when there are none."""
    if not examples:
        return {**NO_EXTRACTION, "dmem_mean": None, "dmem_max": None, "dmem": []}, None
    if not attack:
        return {**NO_EXTRACTION, **dmem_metrics(pipe, examples, resolution, s, progress)}, None
    extraction, features = extraction_metrics(pipe, examples, resolution, s, output_dir, extractor, progress)
    return {**extraction, **dmem_metrics(pipe, examples, resolution, s, progress)}, features


def extraction_metrics(
    pipe,
    examples: list[Example],
    resolution: int,
    s: EvalConfig,
    output_dir: Path,
    extractor,
    progress: bool,
    references: Mapping[str, Sequence[Example]] | None = None,
    suffix: str = "",
) -> tuple[dict, torch.Tensor | None]:
    """The extraction attack on ``examples`` (see ``run_extraction_attack`` for ``references``; its figure and closest
    generations written to ``output_dir``, their names and keys ending with ``suffix``), and the features of its
    generations when an ``extractor`` is given."""
    run = run_extraction_attack(
        pipe,
        examples,
        resolution,
        samples_per_prompt=s.extraction_samples,
        threshold=s.extraction_threshold,
        min_group=s.extraction_min_group,
        grouping=s.extraction_grouping,
        grid=s.extraction_grid,
        seed=s.seed,
        extractor=extractor,
        references=references,
        progress=progress,
        **s.sampling(),
    )
    figure = output_dir / EXTRACTION_FIGURE.replace(".png", f"{suffix}.png")
    metrics = {
        f"extracted{suffix}": len(run.extractions),
        f"extractions{suffix}": [asdict(e) for e in run.extractions],
        f"closest{suffix}": save_closest(run, output_dir / f"{CLOSEST_DIR}{suffix}"),
        "figures": {f"extraction{suffix}": str(save_extraction_grid(run, figure))},
    }
    return metrics, run.features


def train_attack_prompts(
    train_split: Sequence[Example], trained: Sequence[Example], dmem: Sequence[Example], limit: int
) -> tuple[list[Example], dict[str, list[Example]]]:
    """The train attack's prompts, as the authors took them: the first ``limit`` distinct captions of ``train_split``
    in its order, among the ``trained`` images and without D_mem's captions (attacked apart); one example of each,
    and caption -> every trained image that carries it (the attack compares with each)."""
    trained_set, dmem_captions = set(trained), {e.text for e in dmem}
    references: dict[str, list[Example]] = {}
    for example in dict.fromkeys(train_split):
        if example in trained_set and example.text not in dmem_captions:
            references.setdefault(example.text, []).append(example)
    captions = list(references)[:limit]
    return [references[c][0] for c in captions], {c: references[c] for c in captions}


def train_extraction_metrics(
    pipe,
    examples: list[Example],
    references: dict[str, list[Example]],
    resolution: int,
    s: EvalConfig,
    output_dir: Path,
    progress: bool,
) -> dict:
    """extracted_train of attacked_train captions, with their extractions, closest generations and figure."""
    if not examples:
        return {
            **{f"{key}{TRAIN_ATTACK}": value for key, value in NO_EXTRACTION.items() if key != "figures"},
            "attacked_train": 0,
            "figures": {},
        }
    metrics, _ = extraction_metrics(pipe, examples, resolution, s, output_dir, None, progress, references, TRAIN_ATTACK)
    return {**metrics, "attacked_train": len(examples)}


def dmem_metrics(
    pipe,
    examples: list[Example],
    resolution: int,
    s: EvalConfig,
    progress: bool,
    on_images: Callable[[torch.Tensor], None] | None = None,
) -> dict:
    """d_mem of each of ``examples``, their mean and maximum (``on_images``: see ``dmem_trajectory``)."""
    dmem = dmem_scores(
        pipe,
        examples,
        mode=s.dmem_mode,
        resolution=resolution,
        seed=s.seed,
        samples_per_prompt=s.dmem_samples_per_prompt,
        progress=progress,
        on_images=on_images,
        **s.sampling(),
    )
    return {**dmem_summary(dmem), "dmem": dmem.tolist()}


def _training_features(extractor, train_examples, resolution: int, s: EvalConfig, progress: bool) -> torch.Tensor:
    """Features of each distinct training image (D_mem copies count once)."""
    distinct = list(dict.fromkeys(train_examples))
    return features_of_examples(extractor, distinct, resolution, batch_size=s.feature_batch_size, progress=progress)


def alignment_judge(classifier: DomainFeatures | None, extractor: FeatureExtractor) -> DomainFeatures:
    judge = classifier or extractor
    if not isinstance(judge, DomainFeatures):
        raise UserError(
            "alignment: a caption-to-class mapping needs the domain encoder (as classifier or as the feature extractor)"
        )
    return judge


def _weighted_mean(parts: list[tuple[float | None, int]]) -> float | None:
    """Mean of per-chunk means weighted by their counts; None when nothing was scored."""
    parts = [(value, n) for value, n in parts if value is not None and n]
    total = sum(n for _, n in parts)
    return sum(value * n for value, n in parts) / total if total else None
