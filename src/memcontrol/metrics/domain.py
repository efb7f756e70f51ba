"""A small CNN classifier of the training domain, used as a feature extractor and an alignment judge.

The paper scores quality with encoders pretrained on chest X-rays (DenseNet-121 for FID, BioViL-T for
alignment). For other domains, and for the built-in scenario, no such encoder exists, so memcontrol
trains this one as a classifier of the caption classes: its penultimate layer gives the features
(FID, AMD) and its class probabilities say whether a sample shows its caption's class.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from memcontrol.errors import UserError
from memcontrol.io import atomic_path
from memcontrol.metrics.extractor import EXTRACTORS, FeatureExtractor, resize

FORMAT = "memcontrol-domain-encoder-1"  # safetensors metadata: tells this file apart from other weights


@dataclass(frozen=True)
class DomainEncoderConfig:
    class_names: tuple[str, ...]
    input_size: int = 32  # images are resized to this side: the encoder does not depend on the data resolution
    width: int = 32  # a multiple of 8 (GroupNorm groups)
    feature_dim: int = 128


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: the same output in train and eval mode, and for batches of one image.
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(8, c_out), nn.SiLU())


class DomainCNN(nn.Module):
    """Images (N, 3, H, W) in [0, 1] -> class logits; ``features`` gives the penultimate layer."""

    def __init__(self, config: DomainEncoderConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.trunk = nn.Sequential(
            _block(3, w, 1),
            _block(w, 2 * w, 2),
            _block(2 * w, 4 * w, 2),
            _block(4 * w, 4 * w, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * w, config.feature_dim),
            nn.SiLU(),
        )
        self.head = nn.Linear(config.feature_dim, len(config.class_names))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.trunk(resize(images, self.config.input_size) * 2 - 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


@EXTRACTORS.register
class DomainFeatures(FeatureExtractor):
    """The domain encoder as a feature extractor; its classifier also scores caption alignment."""

    name = "domain"

    def __init__(self, model: DomainCNN):
        super().__init__(next(model.parameters()).device)
        self.model = model.eval()
        self.num_features = model.config.feature_dim
        self.class_names = model.config.class_names

    @classmethod
    def load(cls, device: str | torch.device, weights: str | os.PathLike | None) -> DomainFeatures:
        if weights is None:
            raise UserError("feature extractor 'domain': needs the path of its weights (a .safetensors domain encoder)")
        return cls(load_domain_encoder(weights, device))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.features(images)

    @torch.no_grad()
    def class_probabilities(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """(N, number of classes) softmax probabilities, float32 on the CPU."""
        out = [
            self.model(images[i : i + batch_size].to(self.device, torch.float32)).softmax(-1).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(out) if out else torch.empty(0, len(self.class_names))


def train_domain_encoder(
    images: torch.Tensor,
    labels: torch.Tensor,
    class_names: Sequence[str],
    *,
    steps: int = 500,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    input_size: int = 32,
    width: int = 32,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> DomainCNN:
    """Train a classifier of ``labels`` (indices into ``class_names``) on ``images`` in [0, 1]; returned in eval
    mode."""
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need as many labels as images, at least one; got {len(images)} images, {len(labels)} labels")
    torch.manual_seed(seed)  # initial weights
    model = DomainCNN(DomainEncoderConfig(tuple(class_names), input_size=input_size, width=width)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(steps), desc="train domain encoder", disable=not progress, leave=False):
        index = torch.randint(0, len(images), (min(batch_size, len(images)),), generator=generator)
        loss = F.cross_entropy(model(images[index].to(device)), labels[index].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


def save_domain_encoder(model: DomainCNN, path: str | os.PathLike) -> Path:
    """One safetensors file: the weights plus the config (class names included) as metadata."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT, "config": json.dumps(asdict(model.config))})
    return Path(path)


def load_domain_encoder(path: str | os.PathLike, device: str | torch.device = "cpu") -> DomainCNN:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"domain encoder {path}: no such file (expected a .safetensors written by save_domain_encoder)")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise UserError(f"domain encoder {path}: not a readable safetensors file ({e})") from None
    if metadata.get("format") != FORMAT:
        raise UserError(
            f"domain encoder {path}: not a memcontrol domain encoder (metadata format {metadata.get('format')!r})"
        )
    config = json.loads(metadata["config"])
    model = DomainCNN(DomainEncoderConfig(**{**config, "class_names": tuple(config["class_names"])}))
    model.load_state_dict(state)
    return model.to(device).eval()
