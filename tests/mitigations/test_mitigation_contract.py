"""The contract every registered mitigation keeps, as tests/peft/test_peft_methods.py checks every method's."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest
import torch
import yaml

from memcontrol.cli import _parser
from memcontrol.config import TrainConfig, as_dict, build
from memcontrol.mitigations import get_mitigation, mitigation_names
from memcontrol.mitigations.base import MITIGATIONS

MITIGATIONS_NAMES = mitigation_names()
# The options a mitigation cannot be built without, and some that change what it does; the others take defaults.
OPTIONS = {
    "threshold": {"threshold_quantile": 0.5},
    "rwa": {"rwa_probability": 0.5, "rwa_words": 3},
    "embedding_noise": {"embedding_noise_sigma": 0.2},
}


@pytest.fixture
def options(tmp_path):
    """A factory: the option values mitigation ``name`` is built with here."""

    def values(name: str) -> dict:
        if name == "multi_caption":
            path = tmp_path / "variants.json"
            path.write_text(json.dumps({"a large bright circle top left": ["a big bright circle, top left"]}))
            return {"caption_variants": str(path)}
        return OPTIONS.get(name, {})

    return values


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _batch(captions) -> torch.Tensor:
    """Every caption id twice and the dropped (empty) caption once."""
    return torch.cat([captions.caption_ids.repeat(2), torch.tensor([captions.empty_id])])


def _stand_in_unet(noisy, timesteps, embeddings, return_dict=False):
    """Output = input + the conditioning's mean: a prediction that depends on the caption, at no cost."""
    return (noisy + embeddings.mean(dim=(1, 2)).view(-1, 1, 1, 1),)


def _run(name, values, captions, seed=0):
    """setup, embed and keep of mitigation ``name`` on ``captions`` from one seeded generator."""
    mitigation, generator = get_mitigation(name, values), _gen(seed)
    run = mitigation.setup(captions, generator)
    ids = _batch(run)
    embeddings = mitigation.embed(run, ids, generator)
    noisy = torch.randn(len(ids), 4, 2, 2, generator=generator)
    keep = mitigation.keep(_stand_in_unet, noisy, None, _stand_in_unet(noisy, None, embeddings)[0], run)
    return run, ids, embeddings, keep


@pytest.mark.parametrize("name", MITIGATIONS_NAMES)
def test_one_conditioning_per_sample_in_the_plain_shape_and_the_empty_caption_untouched(
    name, options, caption_embeddings
):
    captions = caption_embeddings()
    run, ids, embeddings, keep = _run(name, options(name), captions)
    assert len(run.caption_ids) == len(captions.caption_ids)  # one caption per training example
    plain = run.lookup(ids)
    assert embeddings.shape == plain.shape and embeddings.dtype == plain.dtype
    assert torch.equal(embeddings[-1], plain[-1])  # guidance's unconditional input stays as sampling uses it
    assert keep is None or (keep.dtype == torch.bool and keep.shape == (len(ids),))


@pytest.mark.parametrize("name", MITIGATIONS_NAMES)
def test_the_same_seed_gives_the_same_step(name, options, caption_embeddings):
    captions = caption_embeddings()
    first, second = _run(name, options(name), captions), _run(name, options(name), captions)
    assert first[0].texts == second[0].texts and torch.equal(first[1], second[1]) and torch.equal(first[2], second[2])
    assert (first[3] is None and second[3] is None) or torch.equal(first[3], second[3])


@pytest.mark.parametrize("name", MITIGATIONS_NAMES)
def test_options_round_trip_through_yaml_and_flags(name, options, tmp_path):
    """Each option is a YAML key and a flag of its own name; what they set is what the mitigation is built with,
    and what a run records (the manifest's flat ``config``) rebuilds it."""
    values = options(name)
    expected = MITIGATIONS.options(name, values)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"mitigation": name, **values}))
    from_yaml = build((TrainConfig,), argparse.Namespace(config=str(path)))[0]
    flags = [f"--{key}={value}" for key, value in values.items()]
    from_flags = build((TrainConfig,), _parser().parse_args(["train", "--mitigation", name, *flags]))[0]
    for train in (from_yaml, from_flags):
        assert train.mitigation == name
        assert get_mitigation(name, train.plugin_options).options == expected
        assert get_mitigation(name, as_dict(train)).options == expected  # as a manifest records it
    assert dataclasses.asdict(expected).items() <= as_dict(from_flags).items()
