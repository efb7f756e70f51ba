"""Random Word Addition (Somepalli et al., NeurIPS 2023, github.com/somepago/DCR).

With probability p a caption gets k random vocabulary words at random word positions, drawn anew at
every access (their defaults p = 0.1, k = 2), so that no caption keeps pointing at one image.
``rwa_fixed`` draws them once per training example instead, as the MemControl authors' code does
(there with p = 1, k = 4). Drawn captions change at each step and cannot be cached, so they are
encoded per batch (the text encoder is frozen: no gradients); the others keep their cached embeddings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from memcontrol.config import opt
from memcontrol.data.cache import CaptionEmbeddings
from memcontrol.errors import UserError
from memcontrol.mitigations.base import Mitigation, MitigationConfig, register

END_OF_WORD = "</w>"  # CLIP's BPE marks word-final pieces; the other pieces begin longer words


def vocabulary_words(tokenizer) -> list[str]:
    """The whole words of ``tokenizer``'s vocabulary, in token-id order, for reproducible draws.

    Special tokens are skipped; with CLIP's BPE only word-final pieces count, without their marker;
    a word is alphabetic ASCII (no punctuation, numbers or byte-level fragments).
    """
    special = set(tokenizer.all_special_tokens)
    tokens = [
        token for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]) if token not in special
    ]
    if any(token.endswith(END_OF_WORD) for token in tokens):
        tokens = [token.removesuffix(END_OF_WORD) for token in tokens if token.endswith(END_OF_WORD)]
    return list(dict.fromkeys(token for token in tokens if token.isascii() and token.isalpha()))


def add_random_words(caption: str, vocabulary: Sequence[str], count: int, generator: torch.Generator) -> str:
    """``caption`` with ``count`` words of ``vocabulary`` inserted one by one, each at a random word boundary."""
    words = caption.split()
    for _ in range(count):
        word = vocabulary[int(torch.randint(len(vocabulary), (), generator=generator))]
        words.insert(int(torch.randint(len(words) + 1, (), generator=generator)), word)
    return " ".join(words)


@dataclasses.dataclass(frozen=True)
class RWAConfig(MitigationConfig):
    rwa_probability: float = opt(
        0.1, "rwa: chance that a caption gets random words at an access (Somepalli et al.: 0.1)", min=0, max=1
    )
    rwa_words: int = opt(2, "rwa: random vocabulary words inserted into such a caption (Somepalli et al.: 2)", min=1)
    rwa_fixed: bool = opt(
        False,
        "rwa: draw the words once per training example, not at each access (the authors' code: with "
        "--rwa_probability 1 --rwa_words 4)",
    )


@register
class RandomWordAddition(Mitigation):
    name = "rwa"
    config_class = RWAConfig

    def setup(self, captions: CaptionEmbeddings, generator: torch.Generator) -> CaptionEmbeddings:
        self.vocabulary = vocabulary_words(captions.tokenizer)
        if not self.vocabulary:
            raise UserError("--mitigation rwa: the tokenizer's vocabulary has no whole words to add")
        if not self.options.rwa_fixed:
            return captions
        texts = [captions.texts[i] for i in captions.caption_ids.tolist()]
        return captions.derive([self._draw(text, generator) for text in texts])

    def embed(self, captions: CaptionEmbeddings, ids: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.options.rwa_fixed:
            return captions.lookup(ids)
        chosen = (torch.rand(len(ids), generator=generator) < self.options.rwa_probability) & (ids != captions.empty_id)
        rows = chosen.nonzero().flatten().tolist()
        embeddings = captions.lookup(ids)
        if rows:
            texts = [
                add_random_words(captions.texts[int(ids[r])], self.vocabulary, self.options.rwa_words, generator)
                for r in rows
            ]
            embeddings[rows] = captions.embed_texts(texts).to(embeddings.dtype)
        return embeddings

    def _draw(self, text: str, generator: torch.Generator) -> str:
        """``text`` with random words with probability p, once (the fixed variant)."""
        if text and float(torch.rand((), generator=generator)) < self.options.rwa_probability:
            return add_random_words(text, self.vocabulary, self.options.rwa_words, generator)
        return text
