"""Caption alignment: does a generated image show what its caption asks for?

The paper scores it with BioViL-T, a chest X-ray vision-language model. memcontrol offers two
judges that run offline: the built-in domain encoder's classifier (the probability it gives to the
caption's class, for datasets whose captions name a class) and torchmetrics' CLIP score (natural
images) with a CLIP model that is already on this machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch

from memcontrol.errors import UserError
from memcontrol.metrics.domain import DomainFeatures

CLIP_BATCH = 64


def class_probability_score(probabilities: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean over images of the probability (N, C) given to each image's intended class (N,)."""
    return float(probabilities.gather(1, targets.long()[:, None]).mean())


def class_alignment(
    classifier: DomainFeatures, images: torch.Tensor, captions: Sequence[str], class_of: Callable[[str], str | None]
) -> float | None:
    """Mean probability of each caption's class for images (N, 3, H, W) in [0, 1].

    ``class_of`` maps a caption to a class name of the classifier, or None to leave that image out;
    the result is None when every image is left out.
    """
    index = {name: i for i, name in enumerate(classifier.class_names)}
    kept = [(i, class_of(caption)) for i, caption in enumerate(captions)]
    kept = [(i, name) for i, name in kept if name is not None]
    for _, name in kept:
        if name not in index:
            raise UserError(
                f"alignment: class {name!r} is not one of the domain encoder's classes ({', '.join(index)})"
            )
    if not kept:
        return None
    probabilities = classifier.class_probabilities(images[[i for i, _ in kept]])
    return class_probability_score(probabilities, torch.tensor([index[name] for _, name in kept]))


def load_clip(model: str | os.PathLike, device: str | torch.device = "cpu") -> tuple:
    """A CLIP model and processor from a local folder or the local hub cache; nothing is downloaded."""
    from transformers import CLIPModel, CLIPProcessor

    try:
        clip = CLIPModel.from_pretrained(model, local_files_only=True).to(device).eval()
        processor = CLIPProcessor.from_pretrained(model, local_files_only=True)
    except OSError as e:
        raise UserError(
            f"CLIP model {model}: not available on this machine ({str(e).strip().splitlines()[0]}); memcontrol never "
            "downloads weights: give a local folder, or fetch one once, e.g. `huggingface-cli download "
            "openai/clip-vit-large-patch14`"
        ) from None
    _torchmetrics_clip_score()  # missing: say so now rather than after generating the images to score
    return clip, processor


def _torchmetrics_clip_score() -> Callable:
    try:
        from torchmetrics.functional.multimodal import clip_score
    except ImportError:
        raise UserError("CLIP score: needs torchmetrics; install it with `pip install 'memcontrol[clip]'`") from None
    return clip_score


@torch.no_grad()
def clip_score(images: torch.Tensor, captions: Sequence[str], clip: tuple) -> float:
    """torchmetrics' CLIP score (100 x cosine similarity, mean, floored at 0) of images in [0, 1] and their captions.

    ``clip`` comes from ``load_clip``. Images go through in batches; the result is the mean of the
    batch scores weighted by batch size.
    """
    torchmetrics_clip_score = _torchmetrics_clip_score()
    device = clip[0].device
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    total = 0.0
    for start in range(0, len(pixels), CLIP_BATCH):
        batch = list(pixels[start : start + CLIP_BATCH].to(device))
        texts = list(captions[start : start + CLIP_BATCH])
        total += float(torchmetrics_clip_score(batch, texts, model_name_or_path=lambda: clip)) * len(batch)
    return total / len(pixels)
