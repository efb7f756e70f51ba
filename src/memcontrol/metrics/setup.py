"""How a measurement is set up from the options: the feature extractor (``--feature_extractor``), the classes of
captions for the alignment score, and the sampling settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from memcontrol.config import SampleConfig, opt
from memcontrol.metrics.builtin_encoder import BUILTIN_ENCODER, caption_class
from memcontrol.metrics.evaluate import EvalConfig
from memcontrol.metrics.features import FeatureExtractor, make_extractor
from memcontrol.sampling.samples import sample_settings


@dataclass
class FeatureConfig:
    feature_extractor: str = opt(
        "auto",
        "auto: the built-in domain encoder on built-in data, torchxrayvision otherwise",
        registry="feature extractor",
        also=("auto",),
    )
    feature_weights: str | None = opt(None, "weights file of the extractor (domain: default the built-in encoder)")
    clip_model: str | None = opt(None, "local CLIP folder for a CLIP score (optional)")


def feature_extractor(cfg: FeatureConfig, builtin_data: bool, device) -> FeatureExtractor:
    name = cfg.feature_extractor
    if name == "auto":
        name = "domain" if builtin_data else "torchxrayvision"
    weights = cfg.feature_weights or (BUILTIN_ENCODER if name == "domain" else None)
    return make_extractor(name, device=device, weights=weights)


def caption_classes(
    cfg: FeatureConfig, builtin_data: bool, extractor: FeatureExtractor
) -> Callable[[str], str | None] | None:
    """Caption -> class for the alignment score: only the built-in encoder on built-in data knows the classes."""
    return caption_class if builtin_data and extractor.name == "domain" and not cfg.feature_weights else None


def resolve_sampling(settings: EvalConfig, base_model: str | None) -> EvalConfig:
    """The settings with guidance and steps filled in from the base model's recommendation where not given."""
    sampling = sample_settings(base_model, SampleConfig(settings.num_inference_steps, settings.guidance_scale))
    return dataclasses.replace(settings, **sampling)
