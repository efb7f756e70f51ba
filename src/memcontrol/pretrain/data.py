"""General-domain pretraining data for the built-in base model: captioned shapes, photo crops, printed digits.

Deliberately not the fine-tuning domain (digits, faces, X-rays): the base must have something to
adapt, and the frozen model must score badly on the domain, as Stable Diffusion does on X-rays.
Everything is grey, like the target domains (X-rays, digits): a base that had seen coloured photos
tinted its fine-tuned digits with their colours (measured). Shapes are grey on black.
Images are drawn at twice the resolution and average-pooled, for anti-aliased edges.
Printed digits (optional, ``digit_share``) give the base the digit concepts without the handwritten
style, so that parameter-efficient fine-tuning has something to move, as on Stable Diffusion.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from scipy.ndimage import gaussian_filter, map_coordinates
from skimage import data as skdata

from memcontrol.data.vocabulary import DIGIT_NAMES

SHAPES = ("circle", "square", "triangle", "cross")
SIZES = {"small": 0.13, "large": 0.22}  # radius as a share of the side
BRIGHTNESS = {"bright": 1.0, "dark": 0.45}
POSITIONS = {
    "top left": (0.25, 0.25),
    "top right": (0.75, 0.25),
    "bottom left": (0.25, 0.75),
    "bottom right": (0.75, 0.75),
    "center": (0.5, 0.5),
}
PHOTOS = {
    "astronaut": skdata.astronaut,
    "cameraman": skdata.camera,
    "cat": skdata.chelsea,
    "coffee": skdata.coffee,
    "coins": skdata.coins,
    "horse": skdata.horse,
    "moon": skdata.moon,
    "rocket": skdata.rocket,
    "brick": skdata.brick,
    "grass": skdata.grass,
    "gravel": skdata.gravel,
    "clock": skdata.clock,
    "galaxy": skdata.hubble_deep_field,
    "tissue": skdata.immunohistochemistry,
    "page": skdata.page,
    "text": skdata.text,
}
SHAPE_CAPTION = "a {size} {brightness} {shape} {position}"
PHOTO_CAPTION = "a photo of a {name}"


# Printed digits: the concepts of the built-in fine-tuning domain (handwritten digits) without its style,
# as Stable Diffusion knows chest X-rays but not one hospital's. No handwritten digit set is used.
# Typefaces shipped with matplotlib that have digit glyphs (cmmi10's old-style figures and the symbol fonts left out).
TYPEFACES = (
    *(f"DejaVuSans{v}.ttf" for v in ("", "-Bold", "-Oblique", "-BoldOblique")),
    *(f"DejaVuSansMono{v}.ttf" for v in ("", "-Bold", "-Oblique", "-BoldOblique")),
    *(f"DejaVuSerif{v}.ttf" for v in ("", "-Bold", "-Italic", "-BoldItalic")),
    *(f"STIXGeneral{v}.ttf" for v in ("", "Bol", "Italic", "BolIta")),
    "cmr10.ttf",
    "cmb10.ttf",
    "cmti10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
)
# The fine-tuning captions' pattern ("a handwritten digit seven") with another pretraining word in the style
# slot: the digit word decides the image whatever word stands before "digit", as "handwritten" will. The slot
# words are the shape and photo words, so the vocabulary (hence the frozen random text encoder) stays the one
# of a base pretrained without digits, whose U-Net can then be continued (--unet_from).
DIGIT_STYLE_CAPTION = "a {style} digit {name}"
# Printed digits are laid out as the scanned forms of the built-in handwritten set were (UCI optdigits): ink
# bright on black, the glyph normalised to fill a 32 x 32 bitmap, whose 4 x 4 blocks are counted into an 8 x 8
# grid of grey levels 0..16, resized to the model's resolution like any fine-tuning image. Only the glyphs' style
# differs from handwriting. Drawn smaller, thinner, raised and sharper (the first version), the classifier of real
# digits read 40% of them, and the frozen base drew the handwritten caption's digit at 16% (measured).
GLYPH_SIDE = 128  # canvas the glyph is drawn and distorted on, before it is fitted to the bitmap
BITMAP_SIDE, GRID_SIDE = 32, 8
STROKE_SHARE = (0.0, 0.05)  # extra pen width per side, as a share of the glyph's height: handwritten strokes are thick


def typeface_paths() -> list[Path]:
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return [folder / name for name in TYPEFACES]


def _distort(glyph: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stroke variation towards handwriting: rotation, shear, smooth elastic jitter of the pen's path."""
    side = glyph.shape[0]
    angle, shear = np.deg2rad(rng.uniform(-12, 12)), rng.uniform(-0.25, 0.25)
    cos, sin = np.cos(angle), np.sin(angle)
    matrix = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1, shear], [0, 1]])
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) - (side - 1) / 2
    coords = np.einsum("ij,jhw->ihw", matrix, np.stack([y, x])) + (side - 1) / 2
    jitter = gaussian_filter(rng.normal(size=(2, side, side)), sigma=(0, side / 8, side / 8))
    coords += jitter / np.abs(jitter).max() * rng.uniform(0, side / 16)
    return map_coordinates(glyph, coords, order=1, mode="constant")


def _glyph(path: Path, digit: int, rng: np.random.Generator) -> np.ndarray:
    """The digit in a typeface, with a pen from the typeface's weight to a thick one, distorted; values 0..1."""
    height = 0.6 * GLYPH_SIDE
    font = ImageFont.truetype(str(path), int(height / 0.73))  # digits are about 0.73 em high
    stroke = int(round(rng.uniform(*STROKE_SHARE) * height))
    canvas = Image.new("L", (GLYPH_SIDE, GLYPH_SIDE))
    centre = (GLYPH_SIDE / 2, GLYPH_SIDE / 2)
    pen = dict(fill=255, stroke_width=stroke, stroke_fill=255)
    ImageDraw.Draw(canvas).text(centre, str(digit), font=font, anchor="mm", **pen)
    return _distort(np.asarray(canvas, np.float32) / 255, rng)


def _grid(glyph: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The glyph's ink box scaled to fill the 32 x 32 bitmap (aspect kept, centred), blocks counted: 8 x 8, 0..16."""
    ys, xs = np.nonzero(glyph > 0.5)
    crop = Image.fromarray(np.uint8(glyph[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] * 255))
    scale = rng.uniform(0.95, 1.0) * BITMAP_SIDE / max(crop.size)
    size = tuple(max(1, round(n * scale)) for n in crop.size)
    bitmap = Image.new("L", (BITMAP_SIDE, BITMAP_SIDE))
    bitmap.paste(crop.resize(size, Image.Resampling.BOX), ((BITMAP_SIDE - size[0]) // 2, (BITMAP_SIDE - size[1]) // 2))
    block = BITMAP_SIDE // GRID_SIDE
    on = np.asarray(bitmap) >= 128
    return on.reshape(GRID_SIDE, block, GRID_SIDE, block).sum((1, 3))


def draw_digits(
    n: int, resolution: int, rng: np.random.Generator, words: Sequence[str]
) -> tuple[torch.Tensor, list[str]]:
    """Bright printed digits on black in the handwritten set's layout, with varied typeface, weight and strokes.

    ``words`` are the pretraining words that may take the style slot of a caption.
    """
    faces = typeface_paths()
    images, captions = [], []
    for _ in range(n):
        digit = int(rng.integers(10))
        counts = _grid(_glyph(faces[rng.integers(len(faces))], digit, rng), rng)
        grid = Image.fromarray(np.uint8(np.round(counts * 255 / (BITMAP_SIDE // GRID_SIDE) ** 2)))
        # Resized as the fine-tuning loader resizes the handwritten set's 8 x 8 PNGs.
        image = np.asarray(grid.resize((resolution, resolution), Image.Resampling.BICUBIC), np.float32)
        images.append(torch.from_numpy(image / 127.5 - 1).expand(3, -1, -1))
        captions.append(DIGIT_STYLE_CAPTION.format(style=rng.choice(words), name=DIGIT_NAMES[digit]))
    return torch.stack(images), captions


SLOT_WORDS = tuple(sorted({*SHAPES, *SIZES, *BRIGHTNESS, *PHOTOS}))
PRETRAIN_WORDS = tuple(
    sorted(
        {
            w
            for text in (*SLOT_WORDS, *POSITIONS, SHAPE_CAPTION, PHOTO_CAPTION, DIGIT_STYLE_CAPTION)
            for w in text.split()
            if "{" not in w
        }
    )
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
        shape, size, brightness, position = (
            rng.choice(list(options)) for options in (SHAPES, SIZES, BRIGHTNESS, POSITIONS)
        )
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


def general_domain(
    n: int, resolution: int, seed: int = 0, photo_share: float = 0.1, digit_share: float = 0.0
) -> tuple[torch.Tensor, list[str]]:
    """``n`` captioned images in [-1, 1]: shapes, photo crops and printed digits mixed."""
    rng = np.random.default_rng(seed)
    n_photos, n_digits = int(n * photo_share), int(n * digit_share)
    parts = [draw_shapes(n - n_photos - n_digits, resolution, rng)]
    if n_photos:
        parts.append(crop_photos(n_photos, resolution, rng))
    if n_digits:
        parts.append(draw_digits(n_digits, resolution, rng, SLOT_WORDS))
    return torch.cat([images for images, _ in parts]), [c for _, captions in parts for c in captions]
