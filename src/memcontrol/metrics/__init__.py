"""Memorization and quality metrics: d_mem, FID, AMD, caption alignment, the extraction attack.

Metrics are pure functions of tensors (features, images); feature extractors and the runners that
generate images are kept apart, so each metric can be checked against a known answer.
"""

from memcontrol.metrics.alignment import class_alignment, class_probability_score, clip_score, load_clip
from memcontrol.metrics.amd import amd, nearest_cosine
from memcontrol.metrics.dmem import (
    DMEM_MODES,
    dmem_scores,
    dmem_summary,
    dmem_training_noise,
    dmem_trajectory,
    encode_latents,
)
from memcontrol.metrics.domain import (
    DomainCNN,
    DomainFeatures,
    load_domain_encoder,
    save_domain_encoder,
    train_domain_encoder,
)
from memcontrol.metrics.evaluate import EvalConfig, audit_model, evaluate_model
from memcontrol.metrics.extraction import (
    AttackRun,
    Extraction,
    extraction_attack,
    run_extraction_attack,
    save_extraction_grid,
    tile_distances,
)
from memcontrol.metrics.features import EXTRACTORS, FeatureExtractor, features_of_examples, make_extractor
from memcontrol.metrics.fid import fid, fid_of_images, frechet_distance, gaussian_stats
from memcontrol.metrics.graphs import GROUPINGS, find_groups, maximum_clique

__all__ = [
    "DMEM_MODES",
    "EXTRACTORS",
    "GROUPINGS",
    "AttackRun",
    "DomainCNN",
    "DomainFeatures",
    "EvalConfig",
    "Extraction",
    "FeatureExtractor",
    "amd",
    "audit_model",
    "class_alignment",
    "class_probability_score",
    "clip_score",
    "dmem_scores",
    "dmem_summary",
    "dmem_training_noise",
    "dmem_trajectory",
    "encode_latents",
    "evaluate_model",
    "extraction_attack",
    "features_of_examples",
    "fid",
    "fid_of_images",
    "find_groups",
    "frechet_distance",
    "gaussian_stats",
    "load_clip",
    "load_domain_encoder",
    "make_extractor",
    "maximum_clique",
    "nearest_cosine",
    "run_extraction_attack",
    "save_domain_encoder",
    "save_extraction_grid",
    "tile_distances",
    "train_domain_encoder",
]
