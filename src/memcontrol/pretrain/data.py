"""General-domain pretraining data for the built-in base model: captioned shapes and photo crops.

Deliberately not the fine-tuning domain (digits, faces, X-rays): the base must have something to
adapt, and the frozen model must score badly on the domain, as Stable Diffusion does on X-rays.
Everything is grey, like the target domains (X-rays, digits): a base that had seen coloured photos
tinted its fine-tuned digits with their colours (measured). Shapes are grey on black.
Images are drawn at twice the resolution and average-pooled, for anti-aliased edges.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data as skdata

SHAPES = ("circle", "square", "triangle", "cross")
SIZES = {"small": 0.13, "large": 0.22}  # radius as a share of the side
BRIGHTNESS = {"bright": 1.0, "dark": 0.45}
POSITIONS = {"top left": (0.25, 0.25), "top right": (0.75, 0.25), "bottom left": (0.25, 0.75), "bottom right": (0.75, 0.75), "center": (0.5, 0.5)}
PHOTOS = {
    "astronaut": skdata.astronaut, "cameraman": skdata.camera, "cat": skdata.chelsea, "coffee": skdata.coffee,
    "coins": skdata.coins, "horse": skdata.horse, "moon": skdata.moon, "rocket": skdata.rocket,
    "brick": skdata.brick, "grass": skdata.grass, "gravel": skdata.gravel, "clock": skdata.clock,
    "galaxy": skdata.hubble_deep_field, "tissue": skdata.immunohistochemistry, "page": skdata.page, "text": skdata.text,
}
SHAPE_CAPTION = "a {size} {brightness} {shape} {position}"
PHOTO_CAPTION = "a photo of a {name}"
PRETRAIN_WORDS = tuple(
    sorted({w for text in (*SHAPES, *SIZES, *BRIGHTNESS, *POSITIONS, *PHOTOS, SHAPE_CAPTION, PHOTO_CAPTION) for w in text.split() if "{" not in w})
)


def shape_mask(shape: str, x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask of a shape of radius ``r`` centred at the origin of the coordinates ``x``, ``y``."""
    if shape == "circle":
        return x**2 + y**2 <= r**2
    if shape == "square":
        return (abs(x) <= 0.85 * r) & (abs(y) <= 0.85 * r)
    if shape == "triangle":
        return (y >= -r) & (y <= 0.8 * r) & (abs(x) <= 0.6 * (y + r))
    if shape == "cross":
        return ((abs(x) <= 0.3 * r) & (abs(y) <= r)) | ((abs(y) <= 0.3 * r) & (abs(x) <= r))
    raise ValueError(shape)


def draw_shapes(n: int, resolution: int, rng: np.random.Generator) -> tuple[torch.Tensor, list[str]]:
    side = 2 * resolution
    y, x = np.mgrid[0:side, 0:side] + 0.5
    images, captions = np.zeros((n, 3, side, side), np.float32), []
    for i in range(n):
        shape, size, brightness, position = (rng.choice(list(options)) for options in (SHAPES, SIZES, BRIGHTNESS, POSITIONS))
        cx, cy = (np.array(POSITIONS[position]) + rng.uniform(-0.05, 0.05, 2)) * side
        mask = shape_mask(shape, x - cx, y - cy, SIZES[size] * side)
        images[i][:, mask] = BRIGHTNESS[brightness]
        captions.append(SHAPE_CAPTION.format(size=size, brightness=brightness, shape=shape, position=position))
    pooled = F.avg_pool2d(torch.from_numpy(images), 2)
    return pooled * 2 - 1, captions


def crop_photos(n: int, resolution: int, rng: np.random.Generator) -> tuple[torch.Tensor, list[str]]:
    photos = {name: Image.fromarray(load()).convert("L") for name, load in PHOTOS.items()}
    images, captions = [], []
    for _ in range(n):
        name = rng.choice(list(photos))
        photo = photos[name]
        crop = int(rng.uniform(0.15, 0.6) * min(photo.size))
        left, top = rng.integers(0, photo.width - crop + 1), rng.integers(0, photo.height - crop + 1)
        tile = photo.crop((left, top, left + crop, top + crop)).resize((resolution, resolution), Image.BICUBIC)
        images.append(torch.from_numpy(np.asarray(tile, np.float32) / 127.5 - 1).expand(3, -1, -1))
        captions.append(PHOTO_CAPTION.format(name=name))
    return torch.stack(images), captions


def general_domain(n: int, resolution: int, seed: int = 0, photo_share: float = 0.1) -> tuple[torch.Tensor, list[str]]:
    """``n`` captioned images in [-1, 1], shapes and photo crops mixed."""
    rng = np.random.default_rng(seed)
    n_photos = int(n * photo_share)
    shapes, captions = draw_shapes(n - n_photos, resolution, rng)
    if n_photos == 0:
        return shapes, captions
    photos, photo_captions = crop_photos(n_photos, resolution, rng)
    return torch.cat([shapes, photos]), captions + photo_captions
