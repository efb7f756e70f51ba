"""`memcontrol search` in-process on the tiny model: the results, a resumed search, failing trials, several methods."""

import csv
import json

import optuna
import pytest
import torch

from memcontrol.cli import main
from memcontrol.search import inner_loop
from memcontrol.search.outer_loop import RandomSearchWarning
from memcontrol.train.engine import NonFiniteLoss


def _search(config, out, *extra):
    return main(["search", "--config", str(config), "--output_dir", str(out), *extra])


def _rows(out):
    with (out / "trials.csv").open() as f:
        return list(csv.DictReader(f))


def test_three_trial_search_writes_the_front_and_the_chosen_mask(tiny_search_config, tmp_path, capsys):
    out = tmp_path / "search"
    with pytest.warns(RandomSearchWarning) as caught:  # 3 trials, population 2: the second generation is cut short
        assert _search(tiny_search_config, out, "--baselines", "full@1e-3") == 0
    assert sum(w.category is RandomSearchWarning for w in caught) == 1  # once per search, not per trial
    rows = _rows(out)
    assert [r["state"] for r in rows] == ["complete"] * 3
    best = json.loads((out / "best_mask.json").read_text())
    (chosen,) = [r for r in rows if r["chosen"] == "True"]
    assert chosen["pareto"] == "True" and chosen["mask"] == best["mask"] and best["method"] == "svdiff"
    assert len(best["mask"]) == len(best["sites"]) == 7 and best["sites"][0]["site"] == "down_blocks.1.attentions.0"
    pareto = json.loads((out / "pareto.json").read_text())
    assert (
        best["trial"] in [r["number"] for r in pareto["front"]]
        and pareto["baselines"]["full@1e-3"]["learning_rate"] == 1e-3
    )
    assert (out / "pareto.png").is_file() and (out / "convergence.png").is_file()

    trial_dir = out / "trials" / "memcontrol-svdiff" / "0000"
    trial = json.loads((trial_dir / "trial.json").read_text())
    assert trial["state"] == "complete" and {"dmem_mean", "fid"} <= set(trial["metrics"])
    assert (
        0 < trial["trainable_fraction"] < 1 and trial["seconds"] > 0 and (trial_dir / "samples" / "grid.png").is_file()
    )
    data = json.loads((out / "search_data.json").read_text())
    assert len(data["dmem"]) == 2 and data["dmem_repeats"] == 3
    study = optuna.load_study(study_name="memcontrol-svdiff", storage=f"sqlite:///{out / 'study.db'}")
    assert study.user_attrs["setup"]["data"]["dmem"] == data["dmem"]  # D_mem is recorded with the study

    # Again: the study holds its trials, so nothing is trained again; another pick rule only picks again.
    record = (trial_dir / "trial.json").read_text()
    assert _search(tiny_search_config, out, "--baselines", "full@1e-3", "--pick_rule", "mean") == 0
    assert len(_rows(out)) == 3 and (trial_dir / "trial.json").read_text() == record
    assert json.loads((out / "pareto.json").read_text())["pick_rule"] == "mean"

    # A proposal tried already is skipped, uncounted, rather than trained again: the inner loop is seeded.
    study.enqueue_trial(study.trials[0].params)
    assert _search(tiny_search_config, out, "--baselines", "full@1e-3", "--n_trials", "4") == 0
    rows = _rows(out)
    assert [r["state"] for r in rows] == ["complete"] * 3 + ["duplicate", "complete"] and rows[3]["duplicate_of"] == "0"
    assert rows[4]["replaced_duplicate_of"] == "3"  # an untried mask, run in its stead
    assert rows[4]["mask"] not in {r["mask"] for r in rows[:3]}

    # A study recorded before an option existed goes on while that option is at its default, not at another value.
    setup = study.user_attrs["setup"]
    study.set_user_attr("setup", {k: v for k, v in setup.items() if k != "train.rwa_words"})
    assert _search(tiny_search_config, out, "--baselines", "full@1e-3", "--n_trials", "4") == 0
    capsys.readouterr()
    assert _search(tiny_search_config, out, "--baselines", "full@1e-3", "--n_trials", "4", "--rwa_words", "3") == 2
    assert "train.rwa_words" in capsys.readouterr().err

    # Other training options would make the study's trials incomparable: refused.
    capsys.readouterr()
    assert _search(tiny_search_config, out, "--trial_train_steps", "3") == 2
    assert "train.max_train_steps" in capsys.readouterr().err


def test_failing_trials_are_recorded_and_the_search_goes_on(tiny_search_config, tmp_path, monkeypatch):
    failures = [NonFiniteLoss("loss became nan at step 2"), torch.OutOfMemoryError("CUDA out of memory")]
    real = inner_loop.fine_tune

    def flaky(*args, **kwargs):
        if failures:
            raise failures.pop(0)
        return real(*args, **kwargs)

    monkeypatch.setattr(inner_loop, "fine_tune", flaky)
    out = tmp_path / "search"
    assert _search(tiny_search_config, out) == 0
    rows = _rows(out)
    assert [(r["state"], r["fail_reason"]) for r in rows] == [
        ("failed", "diverged: loss became nan at step 2"),
        ("failed", "out of memory"),
        ("complete", ""),
    ]
    assert json.loads((out / "trials" / "memcontrol-svdiff" / "0000" / "trial.json").read_text())["state"] == "failed"
    assert json.loads((out / "best_mask.json").read_text())["trial"] == 2


def test_method_all_joins_the_methods_fronts(tiny_search_config, tmp_path):
    out = tmp_path / "search"
    assert (
        _search(
            tiny_search_config,
            out,
            "--method",
            "all",
            "--global_methods",
            "svdiff,difffit",
            "--n_trials",
            "1",
            "--objectives",
            "dmem_mean,fid,amd",
        )
        == 0
    )
    rows = _rows(out)
    assert sorted((r["study"], r["state"]) for r in rows) == [
        ("memcontrol-difffit", "complete"),
        ("memcontrol-svdiff", "complete"),
    ]
    assert all(r["amd"] for r in rows)
    best = json.loads((out / "best_mask.json").read_text())
    assert best["method"] in ("svdiff", "difffit")
    assert [o["direction"] for o in json.loads((out / "pareto.json").read_text())["objectives"]] == [
        "minimize",
        "minimize",
        "maximize",
    ]


def test_a_trials_sample_grid_is_made_of_the_images_its_metrics_generated(tiny_search_config, tmp_path, monkeypatch):
    """d_mem's trajectories end in the D_mem images and FID samples the validation captions: the grid shows those,
    generating nothing more; with d_mem measured on training noise, the D_mem row is generated for the grid alone."""
    from memcontrol.sampling import samples as sampling_samples

    generated, real = [], sampling_samples.generate
    monkeypatch.setattr(
        sampling_samples,
        "generate",
        lambda pipe, prompts, **kw: generated.append(list(prompts)) or real(pipe, prompts, **kw),
    )
    out = tmp_path / "search"
    assert _search(tiny_search_config, out, "--n_trials", "1") == 0
    samples = out / "trials" / "memcontrol-svdiff" / "0000" / "samples"
    shown = json.loads((samples / "prompts.json").read_text())
    dmem = [e["text"] for e in json.loads((out / "search_data.json").read_text())["dmem"]]
    assert generated == [] and shown["prompts"][: len(dmem)] == dmem and (samples / "grid.png").is_file()
    assert shown["seeds"][: len(dmem)] == list(range(len(dmem)))  # image i of each row from seed + i

    assert _search(tiny_search_config, tmp_path / "noise", "--n_trials", "1", "--dmem_mode", "training-noise") == 0
    assert generated == [dmem]
