"""The metrics a search can optimise, their directions, and their measurement on one trial's model.

Every objective is a key of `memcontrol evaluate`'s metrics.json and is measured by the same
functions (memcontrol.metrics.evaluate), on the search's data: d_mem and the extraction attack on
D_mem's prompts, sample quality on validation prompts. What does not change between trials (real
validation features, training features) is computed once for the whole search.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from memcontrol.data.imagefolder import Example
from memcontrol.errors import UserError
from memcontrol.metrics.alignment import load_clip
from memcontrol.metrics.amd import amd
from memcontrol.metrics.evaluate import EvalConfig, alignment_judge, dmem_metrics, extraction_metrics, score_samples
from memcontrol.metrics.features import FeatureExtractor, features_of_examples
from memcontrol.metrics.fid import fid
from memcontrol.registry import Registry


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str  # Optuna's "minimize" or "maximize"
    needs: str  # what measuring it takes: "samples" (from validation prompts), "dmem" or "extraction" (on D_mem)
    label: str  # axis label

    @property
    def sign(self) -> int:
        """+1 or -1: times the value, an objective to minimise."""
        return 1 if self.direction == "minimize" else -1


# In the order outputs list the metrics in.
OBJECTIVES: Registry[Objective] = Registry("objective", "--objectives")
OBJECTIVES.register(Objective("dmem_mean", "minimize", "dmem", "d_mem, mean over D_mem prompts"))
OBJECTIVES.register(Objective("dmem_max", "minimize", "dmem", "d_mem, max over D_mem prompts"))
OBJECTIVES.register(Objective("fid", "minimize", "samples", "FID on validation prompts"))
OBJECTIVES.register(Objective("amd", "maximize", "samples", "AMD to the training images"))
OBJECTIVES.register(Objective("alignment", "maximize", "samples", "caption alignment"))
OBJECTIVES.register(Objective("clip_score", "maximize", "samples", "CLIP score"))
OBJECTIVES.register(Objective("extracted", "minimize", "extraction", "extracted D_mem images"))


def get_objectives(names: Sequence[str]) -> list[Objective]:
    """The objectives named (``--objectives``), in that order."""
    return [OBJECTIVES.get(name) for name in names]


class TrialMetrics:
    """Measures the objectives (and only those) of a fine-tuned pipeline."""

    def __init__(
        self,
        objectives: Sequence[Objective],
        *,
        validation: Sequence[Example],
        dmem: Sequence[Example],
        training: Sequence[Example],
        resolution: int,
        extractor: FeatureExtractor,
        settings: EvalConfig,
        class_of: Callable[[str], str | None] | None = None,
        clip_model: str | None = None,
    ):
        self.names = {o.name for o in objectives}
        self.needs = {o.needs for o in objectives}
        self.dmem, self.resolution, self.extractor, self.settings = list(dmem), resolution, extractor, settings
        self.validation = list(validation)[: settings.fid_samples]
        self._check(class_of, clip_model)
        self.class_of = class_of if "alignment" in self.names else None
        self.judge = alignment_judge(None, extractor) if self.class_of else None
        self.clip = load_clip(clip_model, extractor.device) if "clip_score" in self.names else None
        self.real = self._features(self.validation) if "fid" in self.names else None
        self.training = self._features(list(dict.fromkeys(training))) if "amd" in self.names else None

    def _check(self, class_of, clip_model) -> None:
        """Fail before the first trial, not in every one."""
        if "alignment" in self.names and class_of is None:
            raise UserError(
                "objective 'alignment': needs the built-in domain encoder on built-in data (--feature_extractor auto)"
            )
        if "clip_score" in self.names and not clip_model:
            raise UserError("objective 'clip_score': needs --clip_model, a local CLIP folder")
        if self.needs & {"dmem", "extraction"} and not self.dmem:
            raise UserError("objectives on D_mem (d_mem, extracted): the data has no D_mem; set --dmem_size")
        if "samples" in self.needs and len(self.validation) < 2:
            raise UserError(f"objectives on samples: need at least 2 validation examples, got {len(self.validation)}")

    def _features(self, examples: list[Example]) -> torch.Tensor:
        return features_of_examples(
            self.extractor, examples, self.resolution, batch_size=self.settings.feature_batch_size, progress=False
        )

    def __call__(
        self, pipe: StableDiffusionPipeline, output_dir: Path, keep: int = 0
    ) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        """The objectives' values, and the first ``keep`` images that measuring them generated anyway, by group:
        "validation" (FID's samples) and "dmem" (the ends of d_mem's trajectories, one per prompt), image i from
        seed + i.

        ``output_dir`` receives the extraction attack's figure when it runs.
        """
        s, values = self.settings, {}
        sinks = {"validation": FirstImages(keep), "dmem": FirstImages(keep if s.dmem_samples_per_prompt == 1 else 0)}
        if "samples" in self.needs:
            generated, alignment, clip = score_samples(
                pipe,
                self.validation,
                self.resolution,
                s,
                self.extractor,
                self.judge,
                self.class_of,
                self.clip,
                False,
                on_images=sinks["validation"].sink,
            )
            values.update(alignment=alignment, clip_score=clip)
            if self.real is not None:
                values["fid"] = fid(self.real, generated)
            if self.training is not None:
                values["amd"] = amd(generated, self.training)
        if "dmem" in self.needs:
            values.update(dmem_metrics(pipe, self.dmem, self.resolution, s, False, on_images=sinks["dmem"].sink))
        if "extraction" in self.needs:
            values.update(extraction_metrics(pipe, self.dmem, self.resolution, s, output_dir, None, False)[0])
        shown = {name: sink.images for name, sink in sinks.items() if sink.images is not None}
        return {o.name: values[o.name] for o in OBJECTIVES if values.get(o.name) is not None}, shown


class FirstImages:
    """Keeps the first ``count`` images of those generated in batches; ``sink`` is None when it keeps none."""

    def __init__(self, count: int):
        self.count, self.parts = count, []
        self.sink = self._take if count > 0 else None

    def _take(self, images: torch.Tensor) -> None:
        missing = self.count - sum(len(part) for part in self.parts)
        if missing > 0:
            self.parts.append(images[:missing])

    @property
    def images(self) -> torch.Tensor | None:
        return torch.cat(self.parts) if self.parts else None
