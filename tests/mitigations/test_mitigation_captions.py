"""Gaussian noise on caption embeddings, and multiple captions per image."""

from __future__ import annotations

import json

import pytest
import torch

from memcontrol.errors import UserError
from memcontrol.mitigations import get_mitigation, mitigation_names
from memcontrol.mitigations.embedding_noise import EmbeddingNoiseConfig
from memcontrol.mitigations.multi_caption import MultiCaptionConfig


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_every_mitigation_is_registered_and_none_is_the_plain_lookup(caption_embeddings):
    assert mitigation_names() == ["embedding_noise", "multi_caption", "none", "rwa", "threshold"]
    captions = caption_embeddings()
    none = get_mitigation("none")
    assert none.setup(captions, _gen()) is captions
    assert torch.equal(none.embed(captions, captions.caption_ids, _gen()), captions.lookup(captions.caption_ids))
    with pytest.raises(UserError, match="unknown mitigation 'dedup'"):
        get_mitigation("dedup")


def test_embedding_noise_has_the_given_sigma_is_fresh_each_step_and_spares_the_empty_caption(caption_embeddings):
    captions = caption_embeddings()
    ids = torch.cat([captions.caption_ids.repeat(50), torch.tensor([captions.empty_id])])
    noise = get_mitigation("embedding_noise", EmbeddingNoiseConfig(embedding_noise_sigma=0.3))
    generator = _gen()
    first, second = noise.embed(captions, ids, generator), noise.embed(captions, ids, generator)
    added = first - captions.lookup(ids)
    assert abs(float(added[:-1].std()) - 0.3) < 0.01 and abs(float(added[:-1].mean())) < 0.01
    assert torch.equal(added[-1], torch.zeros_like(added[-1]))
    assert not torch.equal(first, second)
    assert torch.equal(noise.embed(captions, ids, _gen()), first)  # seeded


def _variants(tmp_path, data) -> str:
    path = tmp_path / "variants.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_multi_caption_picks_among_a_caption_and_its_variants(caption_embeddings, tmp_path):
    captions = caption_embeddings()
    circle, square = "a large bright circle top left", "a large bright square top left"
    path = _variants(tmp_path, {circle: ["a big bright circle top left", "a large bright round top left"]})
    multi = get_mitigation("multi_caption", MultiCaptionConfig(caption_variants=path))
    run = multi.setup(captions, _gen())
    ids = torch.tensor([run.ids[circle]] * 300 + [run.ids[square], run.empty_id])
    generator = _gen()
    picked = multi.embed(run, ids, generator)
    table = {text: run.lookup(torch.tensor([i]))[0] for text, i in run.ids.items()}
    chosen = [next(t for t, e in table.items() if torch.equal(e, row)) for row in picked]
    assert set(chosen[:300]) == {circle, "a big bright circle top left", "a large bright round top left"}
    assert chosen[300:] == [square, ""]  # no variants: its own caption; dropped: stays empty
    assert not torch.equal(multi.embed(run, ids, generator), picked)  # drawn anew at each access
    assert [run.texts[i] for i in run.caption_ids.tolist()] == [
        captions.texts[i] for i in captions.caption_ids.tolist()
    ]


BAD_VARIANTS = {
    "no file given": (lambda tmp: None, "--mitigation multi_caption needs --caption_variants"),
    "missing file": (lambda tmp: str(tmp / "missing.json"), "no such file"),
    "not JSON": (lambda tmp: _variants(tmp, "{not json"), "not valid JSON"),
    "not a list": (
        lambda tmp: _variants(tmp, {"a large bright circle top left": "one"}),
        "a list of non-empty strings",
    ),
    "no training caption": (
        lambda tmp: _variants(tmp, {"an unknown caption": ["x"]}),
        "none of its captions is a training caption",
    ),
}


@pytest.mark.parametrize("case", BAD_VARIANTS)
def test_bad_caption_variants_are_user_errors(caption_embeddings, tmp_path, case):
    path, message = BAD_VARIANTS[case]
    with pytest.raises(UserError, match=message):
        get_mitigation("multi_caption", MultiCaptionConfig(caption_variants=path(tmp_path))).setup(
            caption_embeddings(), _gen()
        )
