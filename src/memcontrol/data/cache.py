"""Encode once what stays frozen: image latents (VAE) and caption embeddings (text encoder).

diffusers' train_text_to_image.py runs the VAE and the text encoder at every step; both are frozen
during fine-tuning, so their outputs are computed once here and the steps only run the U-Net.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from tqdm.auto import tqdm

# Above this size caption embeddings are computed per batch instead of kept (77 x 768 floats per
# caption on SD v1.5: 100,000 distinct reports would take 12 GB).
EMBEDDING_CACHE_BYTES = 2 * 1024**3


class LatentCache:
    """The VAE posterior of every training image: a fresh latent sample is drawn at each step."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor | None, scaling_factor: float):
        # In the standard memory format: a VAE's CPU convolutions return channels-last strides, which would
        # carry into the U-Net, and torch 2.13's CPU GroupNorm backward crashes (SIGSEGV) on channels-last
        # input that needs no gradient while the norm's weight trains (SV-DIFF, DiffFit).
        self.mean = mean.contiguous()
        self.std = None if std is None else std.contiguous()
        self.scaling_factor = scaling_factor

    @classmethod
    @torch.no_grad()
    def encode(
        cls, vae, batches: Iterable[torch.Tensor], total: int | None = None, progress: bool = True
    ) -> LatentCache:
        means, stds = [], []
        for images in tqdm(batches, total=total, desc="encode images", disable=not progress, leave=False):
            posterior = vae.encode(images.to(vae.device, vae.dtype)).latent_dist
            means.append(posterior.mean.float().cpu())
            stds.append(posterior.std.float().cpu())
        return cls(torch.cat(means), torch.cat(stds), float(vae.config.scaling_factor))

    def __len__(self) -> int:
        return len(self.mean)

    def sample(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Scaled latents of the images at ``index`` (on the CPU; the caller moves them)."""
        mean = self.mean[index]
        if self.std is None:
            return mean * self.scaling_factor
        noise = torch.randn(mean.shape, generator=generator)
        return (mean + self.std[index] * noise) * self.scaling_factor

    def posterior_means(self) -> LatentCache:
        """The same images with deterministic latents (the posterior means)."""
        return LatentCache(self.mean, None, self.scaling_factor)


class CaptionEmbeddings:
    """Text-encoder outputs of a fixed list of captions, cached when they fit in memory.

    ``extra`` captions are embedded besides the examples' own, for a mitigation that swaps them in.
    """

    def __init__(
        self,
        tokenizer,
        text_encoder,
        captions: Sequence[str],
        progress: bool = True,
        extra: Iterable[str] = (),
    ):
        self.tokenizer, self.text_encoder, self.progress = tokenizer, text_encoder, progress
        self.texts = sorted(set(captions) | set(extra) | {""})
        self.ids = {text: i for i, text in enumerate(self.texts)}
        self.caption_ids = torch.tensor([self.ids[c] for c in captions])
        self.empty_id = self.ids[""]
        hidden = text_encoder.config.hidden_size
        size = len(self.texts) * tokenizer.model_max_length * hidden * text_encoder.dtype.itemsize
        self.cache = self._encode_all(progress) if size <= EMBEDDING_CACHE_BYTES else None

    def derive(self, captions: Sequence[str], extra: Iterable[str] = ()) -> CaptionEmbeddings:
        """Embeddings of other captions (one per example, as in the constructor) with the same text encoder."""
        return CaptionEmbeddings(self.tokenizer, self.text_encoder, captions, self.progress, extra)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings of any texts, computed now."""
        tokens = self.tokenizer(
            list(texts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        return self.text_encoder(tokens.input_ids.to(self.text_encoder.device), return_dict=False)[0]

    def _encode_all(self, progress: bool, batch_size: int = 256) -> torch.Tensor:
        chunks = range(0, len(self.texts), batch_size)
        return torch.cat(
            [
                self.embed_texts(self.texts[i : i + batch_size])
                for i in tqdm(chunks, desc="encode captions", disable=not progress, leave=False)
            ]
        )

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Embeddings of caption ids (indices into ``self.texts``), on the text encoder's device."""
        if self.cache is not None:
            return self.cache[ids.to(self.cache.device)]
        return self.embed_texts([self.texts[i] for i in ids.tolist()])
