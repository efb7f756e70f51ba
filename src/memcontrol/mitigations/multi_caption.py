"""Multiple captions per image (Somepalli et al., NeurIPS 2023: ``allcaps`` in their code).

Each access picks one caption, uniformly, among a caption and its variants: other captions of the
same images (e.g. paraphrases of a report, or captions from a captioning model). The variants come
from ``--caption_variants``, a JSON object from a training caption to the list of its variants:

    {"small left pleural effusion": ["left effusion, small", "minor fluid in the left pleural space"]}

Captions absent from the file keep their own. Every variant is fixed text, so all are cached.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from memcontrol.config import opt
from memcontrol.data.cache import CaptionEmbeddings
from memcontrol.errors import UserError
from memcontrol.mitigations.base import Mitigation, MitigationConfig, register


def read_caption_variants(path: str | Path) -> dict[str, list[str]]:
    """The ``--caption_variants`` file, checked: caption -> variants, all non-empty strings (stripped)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--caption_variants {path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"--caption_variants {path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not all(key.strip() and _texts(value) for key, value in data.items()):
        raise UserError(
            f"--caption_variants {path}: expected a JSON object from each caption to a list of non-empty strings"
        )
    return {caption.strip(): [v.strip() for v in variants] for caption, variants in data.items()}


def _texts(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)


@dataclasses.dataclass(frozen=True)
class MultiCaptionConfig(MitigationConfig):
    caption_variants: str | None = opt(
        None, "multi_caption: JSON file {caption: [other captions of the same image]}; each access picks one of them"
    )


@register
class MultiCaption(Mitigation):
    name = "multi_caption"
    config_class = MultiCaptionConfig
    in_default_grid = False  # needs a file of caption variants

    def __init__(self, options: MultiCaptionConfig | None = None):
        super().__init__(options)
        if self.options.caption_variants is None:
            raise UserError(
                "--mitigation multi_caption needs --caption_variants (a JSON file: caption -> other captions)"
            )
        self.variants = read_caption_variants(self.options.caption_variants)

    def setup(self, captions: CaptionEmbeddings, generator: torch.Generator) -> CaptionEmbeddings:
        own = [captions.texts[i] for i in captions.caption_ids.tolist()]
        variants = {text: self.variants[text] for text in set(own) if text in self.variants}
        if not variants:
            raise UserError(
                f"--caption_variants {self.options.caption_variants}: none of its captions is a training caption"
            )
        # One cache for the captions and their variants, so that a swap costs a lookup.
        run = captions.derive(own, extra=[v for vs in variants.values() for v in vs])
        # choices[i, :counts[i]]: the ids that caption i may become (itself first; padding repeats it).
        candidates = [[run.ids[t] for t in [text, *variants.get(text, [])]] for text in run.texts]
        self.counts = torch.tensor([len(c) for c in candidates])
        width = int(self.counts.max())
        self.choices = torch.tensor([c + c[:1] * (width - len(c)) for c in candidates])
        return run

    def embed(self, captions: CaptionEmbeddings, ids: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        pick = (torch.rand(len(ids), generator=generator) * self.counts[ids]).long()
        return captions.lookup(self.choices[ids, pick])
