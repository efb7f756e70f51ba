"""The search space (bits per site, learning rate, several methods), the objectives and the proxy training set."""

import argparse

import optuna
import pytest

from memcontrol.config import DataConfig, SearchConfig, TrainConfig, build
from memcontrol.data.prepare import prepare_data
from memcontrol.errors import UserError
from memcontrol.models.architectures import build_unet
from memcontrol.search import get_objectives, search_spaces
from memcontrol.search.data import proxy_training_set


@pytest.fixture(scope="module")
def sd15():
    return build_unet("sd15")  # on the meta device: module paths only


def test_one_bit_per_site_named_after_it(sd15):
    (space,) = search_spaces(TrainConfig(method="svdiff"), SearchConfig(), sd15)
    sites = space.sites["svdiff"]
    assert len(sites) == 16 and sites[0] == "down_blocks.0.attentions.0"
    bits = {site: i % 2 for i, site in enumerate(sites)}
    proposal = space.suggest(optuna.trial.FixedTrial(bits))
    assert proposal.mask_text == "01" * 8 and proposal.learning_rate == TrainConfig.learning_rate


def test_paper_layout_has_the_authors_bit_counts(sd15):
    train = TrainConfig(method="all", plugin_options={"layout": "paper"})
    spaces = search_spaces(train, SearchConfig(), sd15)
    assert [(s.name, len(s.sites[s.name])) for s in spaces] == [("svdiff", 13), ("difffit", 13), ("attention", 16)]


def test_learning_rate_is_searched_on_a_log_scale(sd15):
    search = SearchConfig(search_learning_rate=True, learning_rate_min=1e-5, learning_rate_max=1e-3)
    (space,) = search_spaces(TrainConfig(method="difffit"), search, sd15)
    study = optuna.create_study()
    trial = study.ask()
    proposal = space.suggest(trial)
    assert 1e-5 <= proposal.learning_rate <= 1e-3
    assert trial.distributions["learning_rate"].log


def test_categorical_global_search_chooses_the_method(sd15):
    search = SearchConfig(global_search="categorical", global_methods=["svdiff", "attention"])
    (space,) = search_spaces(TrainConfig(method="all"), search, sd15)
    assert space.name == "all"
    proposal = space.suggest(
        optuna.trial.FixedTrial({"method": "attention", **dict.fromkeys(space.sites["attention"], 1)})
    )
    assert proposal.method == "attention" and proposal.mask == (1,) * 16


@pytest.mark.parametrize(
    "train, search, message",
    [
        (TrainConfig(method="all"), SearchConfig(global_methods=["svdiff", "magic"]), "magic"),
        (
            TrainConfig(method="svdiff"),
            SearchConfig(search_learning_rate=True, learning_rate_min=1e-3, learning_rate_max=1e-5),
            "learning_rate_min",
        ),
        (TrainConfig(method="full", plugin_options={"layout": "paper"}), SearchConfig(), "no mask sites"),
    ],
)
def test_bad_spaces_are_user_errors(sd15, train, search, message):
    with pytest.raises(UserError, match=message):
        search_spaces(train, search, sd15)


def test_objectives_parse_with_their_directions():
    (search,) = build((SearchConfig,), argparse.Namespace(objectives="amd, extracted"))
    assert [(o.name, o.direction) for o in get_objectives(search.objectives)] == [
        ("amd", "maximize"),
        ("extracted", "minimize"),
    ]
    for bad in ("fid", "fid,fid", "fid,sharpness"):
        with pytest.raises(UserError, match="--objectives"):
            build((SearchConfig,), argparse.Namespace(objectives=bad))


def test_proxy_keeps_every_dmem_copy_and_a_share_of_the_rest(tiny_data_dir):
    data = prepare_data(
        DataConfig(
            train_data_dir=str(tiny_data_dir), dmem_size=2, dmem_repeats=5, validation_fraction=0.2, test_fraction=0.2
        )
    )
    proxy = proxy_training_set(data, 0.5, seed=0)
    others = set(data.training) - set(data.dmem)
    assert sum(e in data.dmem for e in proxy) == 10
    assert len(set(proxy) - set(data.dmem)) == round(0.5 * len(others))
    assert proxy_training_set(data, 0.5, seed=0) == proxy
    assert len(set(proxy_training_set(data, 0.01, seed=0)) - set(data.dmem)) == 1  # at least one
    with pytest.raises(UserError, match="proxy_fraction"):
        proxy_training_set(data, 1.5, seed=0)
