"""A word-level tokenizer for the built-in base model.

Why not CLIP's BPE: in a model this small, a caption is only followed when each word (and each
case code such as ``k412``) is one token (see feasibility notes: a character-level vocabulary
left the base model ignoring its captions). Real Stable Diffusion folders bring their own
CLIPTokenizer; nothing else in memcontrol depends on this class.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")


def build_word_tokenizer(words: Iterable[str], max_length: int = 16) -> PreTrainedTokenizerFast:
    """Lower-case whitespace tokenizer: ``<bos> words <eos>`` padded to ``max_length``."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in sorted(set(w.lower() for w in words)):
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", vocab["<bos>"]), ("<eos>", vocab["<eos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
        model_max_length=max_length,
    )
