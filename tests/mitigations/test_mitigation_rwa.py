"""Random Word Addition: real vocabulary words, inserted per access (redrawn) or once per example (fixed), seeded."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import CLIPTokenizer

from memcontrol.mitigations import get_mitigation
from memcontrol.mitigations.rwa import RWAConfig, add_random_words, vocabulary_words


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_vocabulary_words_of_clip_bpe_are_whole_words_without_marker(tmp_path):
    vocab = ["<|startoftext|>", "<|endoftext|>", "a", "c", "t", "ca", "a</w>", "cat</w>", "at</w>", "!</w>", "12</w>"]
    (tmp_path / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\nc a\n")
    tokenizer = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    # Sub-word pieces (no </w>), specials, punctuation and numbers are skipped; the order is the token ids'.
    assert vocabulary_words(tokenizer) == ["a", "cat", "at"]


def test_vocabulary_words_of_a_word_level_tokenizer_skip_specials(tiny_text):
    words = vocabulary_words(tiny_text[0])
    assert "circle" in words and not any(w.startswith("<") for w in words)


def test_add_random_words_inserts_exactly_the_drawn_words_and_is_seeded():
    caption, vocabulary = "small left pleural effusion", ["alpha", "beta", "gamma"]
    augmented = add_random_words(caption, vocabulary, 2, _gen())
    words = augmented.split()
    assert [w for w in words if w not in vocabulary] == caption.split()  # the caption's words, in their order
    assert len([w for w in words if w in vocabulary]) == 2
    assert add_random_words(caption, vocabulary, 2, _gen()) == augmented
    assert {add_random_words(caption, vocabulary, 2, _gen(seed)) for seed in range(5)} != {augmented}


def _recording(captions, monkeypatch):
    """Record the texts encoded per batch (the augmented captions)."""
    seen, original = [], captions.embed_texts
    monkeypatch.setattr(captions, "embed_texts", lambda texts: seen.append(list(texts)) or original(texts))
    return seen


def test_per_access_rwa_changes_captions_anew_at_every_access(caption_embeddings, monkeypatch):
    captions = caption_embeddings()
    rwa = get_mitigation("rwa", RWAConfig(rwa_probability=1.0, rwa_words=2))
    generator = _gen()
    assert rwa.setup(captions, generator) is captions  # nothing fixed, nothing re-encoded up front
    seen = _recording(captions, monkeypatch)
    ids = captions.caption_ids.clone()
    first, second = rwa.embed(captions, ids, generator), rwa.embed(captions, ids, generator)
    plain = captions.lookup(ids)
    assert all(len(t.split()) == len(captions.texts[i].split()) + 2 for t, i in zip(seen[0], ids.tolist()))
    assert seen[0] != seen[1] and seen[0][0] != seen[0][2]  # redrawn per access, also for the same caption
    assert not torch.equal(first, plain) and not torch.equal(first, second)
    assert torch.equal(first, captions.embed_texts(seen[0]))
    # Seeded: the same generator state gives the same captions.
    again = get_mitigation("rwa", RWAConfig(rwa_probability=1.0, rwa_words=2))
    generator = _gen()
    again.setup(captions, generator)
    assert torch.equal(again.embed(captions, ids, generator), first)


def test_rwa_leaves_the_dropped_caption_and_unchosen_ones_cached(caption_embeddings, monkeypatch):
    captions = caption_embeddings()
    ids = torch.full((4,), captions.empty_id)
    rwa = get_mitigation("rwa", RWAConfig(rwa_probability=1.0))
    rwa.setup(captions, _gen())
    seen = _recording(captions, monkeypatch)
    assert torch.equal(rwa.embed(captions, ids, _gen()), captions.lookup(ids)) and seen == []
    never = get_mitigation("rwa", RWAConfig(rwa_probability=0.0))
    never.setup(captions, _gen())
    assert (
        torch.equal(never.embed(captions, captions.caption_ids, _gen()), captions.lookup(captions.caption_ids))
        and seen == []
    )


def test_fixed_rwa_draws_once_per_example_and_then_stays(caption_embeddings):
    captions = caption_embeddings()
    own = list(captions.texts)
    rwa = get_mitigation("rwa", RWAConfig(rwa_probability=1.0, rwa_words=4, rwa_fixed=True))
    fixed = rwa.setup(captions, _gen())
    texts = [fixed.texts[i] for i in fixed.caption_ids.tolist()]
    assert captions.texts == own  # the captions passed in are left as they were
    assert all(len(t.split()) == len(c.split()) + 4 for t, c in zip(texts, ["a large bright circle top left"] * 3))
    assert texts[0] != texts[2]  # per example, as the authors' code: duplicated pairs get different words
    ids = fixed.caption_ids
    assert torch.equal(rwa.embed(fixed, ids, _gen(1)), rwa.embed(fixed, ids, _gen(2)))  # the same at every access
    assert fixed.cache is not None  # fixed texts stay cached
    again = get_mitigation("rwa", RWAConfig(rwa_probability=1.0, rwa_words=4, rwa_fixed=True)).setup(captions, _gen())
    assert [again.texts[i] for i in again.caption_ids.tolist()] == texts


@pytest.mark.parametrize("options", [dict(rwa_probability=1.5), dict(rwa_words=0)])
def test_bad_rwa_options_are_user_errors(options):
    from memcontrol.errors import UserError

    with pytest.raises(UserError, match="--rwa_"):
        RWAConfig(**options)
