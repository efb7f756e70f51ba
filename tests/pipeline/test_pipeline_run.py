"""`memcontrol run`: search -> pick -> stage 2 -> evaluation -> report.md, and a second run that skips every stage."""

import json

from memcontrol.cli import main


def _run(config, out, *extra):
    return main(["run", "--config", str(config), "--output_dir", str(out), "--n_trials", "2", *extra])


def test_run_leaves_the_mask_the_model_the_metrics_and_a_report(tiny_search_config, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(tiny_search_config, out) == 0
    best = json.loads((out / "search" / "best_mask.json").read_text())
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    assert (manifest["method"], manifest["mask"], manifest["config"]["learning_rate"]) == (
        best["method"],
        best["mask"],
        best["learning_rate"],
    )
    assert manifest["result"]["steps"] == 2  # stage 2 trains --max_train_steps on the full training split
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert (
        metrics["mask"] == best["mask"] and isinstance(metrics["fid"], float) and isinstance(metrics["extracted"], int)
    )
    report = (out / "report.md").read_text()
    for expected in (
        f"`{best['mask']}`",
        "search/pareto.png",
        "search/convergence.png",
        f"{metrics['fid']:.4g}",
        "model/samples/grid.png",
    ):
        assert expected in report, expected
    assert [done["stage"] for done in json.loads((out / "run.json").read_text())["stages"]] == [
        "search",
        "train",
        "evaluate",
        "report",
    ]

    # Again: every stage is done, none runs.
    weights = (out / "model" / "trained.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    assert _run(tiny_search_config, out) == 0
    assert capsys.readouterr().out.count("done before, skipped") == 4
    assert (out / "model" / "trained.safetensors").stat().st_mtime_ns == weights

    # Other options in the same folder would mix two runs: refused.
    assert _run(tiny_search_config, out, "--max_train_steps", "3") == 2
    assert "train.max_train_steps" in capsys.readouterr().err
