"""Feature extractors: images (N, 3, H, W) in [0, 1] -> (N, D) float features, behind one interface.

FID and AMD are only as meaningful as the space they are computed in. The paper uses a chest X-ray
DenseNet-121 (torchxrayvision); natural images use Inception; other domains and the built-in scenario
use memcontrol's own domain encoder (domain.py); raw pixels serve tiny data and tests. Pretrained
weights are never downloaded here: a missing package or file is a UserError that says how to get it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from memcontrol.data.imagefolder import Example, load_images
from memcontrol.errors import UserError
from memcontrol.metrics import domain  # noqa: F401  (registers DomainFeatures as "domain")
from memcontrol.metrics.extractor import EXTRACTORS, FeatureExtractor, resize

XRV_WEIGHTS = "densenet121-res224-mimic_ch"
XRV_WEIGHTS_URL = "https://github.com/mlmed/torchxrayvision/releases/download/v1/mimic_ch-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)


@EXTRACTORS.register
class PixelFeatures(FeatureExtractor):
    """Raw pixels at a fixed small size: no weights, for tiny data and tests."""

    name = "pixels"

    def __init__(self, device: str | torch.device = "cpu", size: int = 16):
        super().__init__(device)
        self.size, self.num_features = size, 3 * size * size

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return resize(images, self.size).flatten(1)


@EXTRACTORS.register
class XRayDenseNet(FeatureExtractor):
    """torchxrayvision's DenseNet-121 trained on MIMIC-CXR, the paper's FID features.

    As in the authors' code: ``model.features(x)`` (the convolutional trunk) mean-pooled to 1024 values,
    on one grey channel scaled to [-1024, 1024] at 224 x 224, torchxrayvision's input convention.
    """

    name = "torchxrayvision"
    num_features = 1024

    def __init__(self, device: str | torch.device = "cpu"):
        super().__init__(device)
        xrv = _import_torchxrayvision()
        path = _xrv_weights_path(xrv)
        if not path.is_file():
            raise UserError(
                f"feature extractor 'torchxrayvision': weights file {path} not found; memcontrol never downloads "
                f"weights: fetch it once from {XRV_WEIGHTS_URL} to that path"
            )
        self.model = xrv.models.DenseNet(weights=XRV_WEIGHTS).to(self.device).eval()

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        grey = resize(images.mean(1, keepdim=True), 224)
        return self.model.features((grey * 2 - 1) * 1024).mean((2, 3))


def _import_torchxrayvision():
    try:
        import torchxrayvision
    except Exception as e:  # not installed, or a dependency (torchvision) that fails to load
        raise UserError(
            f"feature extractor 'torchxrayvision': the package cannot be imported ({e}); install it with "
            "`pip install torchxrayvision` (or `pip install memcontrol[xray]`) and put "
            f"{os.path.basename(XRV_WEIGHTS_URL)} (from {XRV_WEIGHTS_URL}) in ~/.torchxrayvision/models_data/"
        ) from None
    return torchxrayvision


def _xrv_weights_path(xrv) -> Path:
    """Where torchxrayvision looks for the weights (it would download them there; we only look)."""
    cache = getattr(xrv.utils, "get_cache_dir", lambda: "~/.torchxrayvision/models_data")()
    return Path(cache).expanduser() / os.path.basename(xrv.models.model_urls[XRV_WEIGHTS]["weights_url"])


@EXTRACTORS.register
class InceptionV3(FeatureExtractor):
    """The FID Inception-v3 (pool3, 2048 values) through torchmetrics, which needs torch-fidelity."""

    name = "inception"
    num_features = 2048

    def __init__(self, device: str | torch.device = "cpu", weights: str | os.PathLike | None = None):
        super().__init__(device)
        path = (
            Path(weights)
            if weights
            else Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(INCEPTION_WEIGHTS_URL)
        )
        try:
            import torch_fidelity  # noqa: F401  (torchmetrics' Inception is torch-fidelity's)
            from torchmetrics.image.fid import NoTrainInceptionV3
        except Exception as e:  # not installed, or its torchvision fails to load
            raise UserError(
                f"feature extractor 'inception': {e}; install it with `pip install 'memcontrol[inception]'`"
            ) from None
        if not path.is_file():
            raise UserError(
                f"feature extractor 'inception': weights file {path} not found; memcontrol never downloads weights: "
                f"fetch it once from {INCEPTION_WEIGHTS_URL} to that path"
            )
        self.model = NoTrainInceptionV3(
            name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(path)
        )
        self.model.to(self.device)

    @classmethod
    def load(cls, device: str | torch.device, weights: str | os.PathLike | None) -> InceptionV3:
        return cls(device, weights)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images.clamp(0, 1) * 255).round().to(torch.uint8))


def make_extractor(
    name: str, *, device: str | torch.device = "cpu", weights: str | os.PathLike | None = None
) -> FeatureExtractor:
    """The extractor registered as ``name``; ``weights`` is the domain encoder's file (or another Inception file)."""
    return EXTRACTORS.get(name).load(device, weights)


def features_of_examples(
    extractor: FeatureExtractor,
    examples: Sequence[Example],
    resolution: int,
    *,
    batch_size: int = 64,
    progress: bool = True,
) -> torch.Tensor:
    """Features of image files, read a batch at a time so that 100,000 training images never sit in memory."""
    out = [
        extractor((load_images(examples[i : i + batch_size], resolution, progress=False) + 1) / 2, batch_size)
        for i in tqdm(
            range(0, len(examples), batch_size), desc=f"{extractor.name} features", disable=not progress, leave=False
        )
    ]
    return torch.cat(out) if out else torch.empty(0, extractor.num_features)
