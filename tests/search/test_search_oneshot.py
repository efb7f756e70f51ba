"""`memcontrol search --strategy oneshot` on the tiny model: the supernet, its scores, the confirmed trials."""

import copy
import csv
import dataclasses
import json
import warnings

import numpy as np
import optuna
import pytest
import torch

from memcontrol.cli import main
from memcontrol.data.prepare import prepare_data
from memcontrol.peft import get_method
from memcontrol.runtime import load_for_training, make_accelerator
from memcontrol.search.oneshot import Supernet, governed_parameters, masks_to_confirm
from memcontrol.search.outer_loop import RandomSearchWarning
from memcontrol.train.engine import fine_tune
from memcontrol.train.run import build_training_set


def _search(config, out, *extra):
    return main(["search", "--config", str(config), "--output_dir", str(out), *extra])


def _csv(path):
    with path.open() as f:
        return list(csv.DictReader(f))


ONESHOT = (
    "--strategy",
    "oneshot",
    "--supernet_train_steps",
    "4",
    "--oneshot_masks",
    "6",
    "--oneshot_confirm",
    "2",
    "--oneshot_fid_samples",
    "2",
    "--oneshot_inference_steps",
    "0",
)


def test_oneshot_search_scores_masks_confirms_its_front_as_bilevel_trials_and_picks_among_them(
    tiny_search_config, tmp_path, capsys
):
    out = tmp_path / "oneshot"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomSearchWarning)  # NSGA-II's trial count is the bi-level search's concern
        assert _search(tiny_search_config, out, *ONESHOT) == 0
    scored = _csv(out / "oneshot.csv")
    assert len(scored) == 6 and len({r["mask"] for r in scored}) == 6  # 128 masks: 6 proposed by the sampler
    confirmed = [r for r in scored if r["confirmed"] == "True"]
    assert 1 <= len(confirmed) <= 2 and all(
        r["oneshot_pareto"] == "True" and r["dmem_mean"] and r["fid"] for r in confirmed
    )
    trials = _csv(out / "trials.csv")
    assert sorted(r["mask"] for r in trials) == sorted(r["mask"] for r in confirmed)
    assert all(r["state"] == "complete" and r["study"] == "memcontrol-svdiff-oneshot" for r in trials)
    best = json.loads((out / "best_mask.json").read_text())
    assert (
        best["mask"] in {r["mask"] for r in confirmed}
        and (out / "pareto.png").is_file()
        and (out / "convergence.png").is_file()
    )
    summary = json.loads((out / "pareto.json").read_text())["oneshot"]
    assert (
        summary["supernet"]["steps"] == 4
        and summary["scoring"]["masks"] == 6
        and summary["scoring"]["inference_steps"] == 2
    )
    assert summary["scoring"]["images_sampled"] == 6 * (2 + 2)  # 2 FID samples and 2 D_mem prompts per mask
    assert summary["confirmation"]["trials"] == len(confirmed) and summary["confirmation"]["steps"] == 2 * len(
        confirmed
    )
    assert summary["total"]["steps"] == 4 + 2 * len(confirmed) and set(summary["kendall_tau"]) == {"dmem_mean", "fid"}

    # Again: the supernet, its scores and the confirmed trials are read back, nothing is trained again.
    record = (out / "oneshot" / "scores.json").read_text()
    assert _search(tiny_search_config, out, *ONESHOT) == 0
    assert (out / "oneshot" / "scores.json").read_text() == record and len(_csv(out / "trials.csv")) == len(confirmed)
    # Scores the sampler proposed with another population are not these: a resume with it is refused, naming it.
    assert _search(tiny_search_config, out, *ONESHOT, "--population_size", "3") == 2
    assert "search.population_size" in capsys.readouterr().err

    # A confirmed trial is a stand-alone trial: a bi-level search given its mask measures the same values.
    (first, *_) = confirmed
    bilevel = tmp_path / "bilevel"
    bilevel.mkdir()
    study = optuna.create_study(
        storage=f"sqlite:///{bilevel / 'study.db'}", study_name="memcontrol-svdiff", directions=["minimize", "minimize"]
    )
    sites = [s["site"] for s in best["sites"]]
    study.enqueue_trial({site: int(bit) for site, bit in zip(sites, first["mask"])})
    assert _search(tiny_search_config, bilevel, "--n_trials", "1", "--sampler", "random") == 0
    (row,) = _csv(bilevel / "trials.csv")
    assert row["mask"] == first["mask"] and (row["dmem_mean"], row["fid"]) == (first["dmem_mean"], first["fid"])


def test_oneshot_refuses_several_methods(tiny_search_config, tmp_path, capsys):
    assert _search(tiny_search_config, tmp_path / "out", "--strategy", "oneshot", "--method", "all") == 2
    assert "--strategy oneshot" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["svdiff", "difffit", "attention", "lora"])
def test_a_site_off_in_the_supernet_acts_as_the_base_model(tiny_configs, method):
    """Trained with site 0 off at every step, the supernet leaves site 0 at its initial values (no AdamW step, no
    decay). Under any mask it computes what the stand-alone model of that mask with its values does, and with every
    site off exactly what the base U-Net does."""
    model_cfg, data_cfg, train_cfg, _ = tiny_configs
    accelerator = make_accelerator(model_cfg)
    pipe = load_for_training(model_cfg, accelerator)
    base = copy.deepcopy(pipe.unet)
    data = build_training_set(pipe, prepare_data(data_cfg).training, 16, progress=False)
    trained = get_method(method, cache={})  # SV-DIFF: each weight's SVD once
    governed = governed_parameters(trained, model_cfg.pretrained_model_name_or_path)
    n_sites = len(trained.sites(pipe.unet))
    made = []

    def step_context(step):
        if not made:
            made.append(Supernet(pipe.unet, trained, governed, n_sites, base))
            made[0].step_mask = lambda step, seed: (0,) + (1,) * (n_sites - 1)
        return made[0].step_context(step, 0)

    cfg = dataclasses.replace(train_cfg, learning_rate=1e-2, adam_weight_decay=0.5, max_train_steps=3)
    fine_tune(pipe, trained, (1,) * n_sites, data, cfg, accelerator, progress=False, step_context=step_context)
    supernet = made[0]
    values = dict(supernet.unet.named_parameters())
    site0 = [n for n, site in supernet.site_of.items() if site == 0]
    others = [n for n, site in supernet.site_of.items() if site > 0]
    assert site0 and others
    assert all(torch.equal(values[n], supernet.initial[n]) for n in site0)
    assert any(not torch.equal(values[n], supernet.initial[n]) for n in others)

    torch.manual_seed(0)
    sample = torch.randn(2, base.config.in_channels, 8, 8)
    timesteps, text = torch.tensor([10, 500]), torch.randn(2, 3, base.config.cross_attention_dim)
    with torch.no_grad():
        expected = base(sample, timesteps, text).sample
        outputs = {}
        for mask in [(0,) * n_sites, (1, 0) * (n_sites // 2) + (1,) * (n_sites % 2), (1,) * n_sites]:
            supernet.step_mask = lambda step, seed, mask=mask: mask
            with supernet.step_context(0, 0):
                outputs[mask] = supernet.unet(sample, timesteps, text).sample
            assert torch.allclose(outputs[mask], supernet.masked_copy(mask)(sample, timesteps, text).sample, atol=1e-6)
    assert torch.equal(outputs[(0,) * n_sites], expected) and not torch.allclose(outputs[(1,) * n_sites], expected)
    assert all(torch.equal(values[n], p) for n, p in supernet.unet.named_parameters())  # the trained values are back


def test_the_confirmed_masks_are_the_pick_then_those_adding_most_hypervolume():
    """Not the extremes of the front by default: the second mask is the one covering the most that the first does
    not."""
    points = np.array([[0.0, 1.0], [0.4, 0.4], [1.0, 0.0], [0.6, 0.6], [0.9, 0.1]])
    assert masks_to_confirm(points, 3, "normalized_mean") == [1, 4, 0]
    assert sorted(masks_to_confirm(points, 5, "normalized_mean")) == [0, 1, 2, 4]  # the front only: 3 is dominated


def test_scores_recorded_before_an_option_was_recorded_stay_valid_at_its_default(tmp_path):
    from memcontrol.errors import UserError
    from memcontrol.search.oneshot import _recorded

    path = tmp_path / "scores.json"
    path.write_text(json.dumps({"setup": {"search.sampler": "nsga2"}, "scores": {}}))
    defaults = {"search.population_size": 50}
    assert _recorded(path, {"search.sampler": "nsga2", "search.population_size": 50}, defaults) is not None
    with pytest.raises(UserError, match="search.population_size"):
        _recorded(path, {"search.sampler": "nsga2", "search.population_size": 3}, defaults)
