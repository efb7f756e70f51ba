"""`memcontrol benchmark` on the tiny model: a 2 x 2 x 1 grid with the searched row, its tables and figures, resume."""

import argparse
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from memcontrol.benchmark import BenchmarkRunConfig
from memcontrol.benchmark.grid import make_row
from memcontrol.cli import main
from memcontrol.data.imagefolder import load_image
from memcontrol.metrics import tile_distances


def _benchmark(config, out, *extra):
    return main(
        [
            "benchmark",
            "--config",
            str(config),
            "--output_dir",
            str(out),
            "--methods",
            "full,memcontrol",
            "--mitigations",
            "none,rwa",
            "--seeds",
            "0",
            "--n_trials",
            "1",
            *extra,
        ]
    )


def _csv(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_grid_writes_a_line_per_cell_the_figures_and_resumes(tiny_search_config, tmp_path, capsys):
    out = tmp_path / "benchmark"
    assert _benchmark(tiny_search_config, out) == 0
    best = json.loads((out / "search" / "best_mask.json").read_text())
    lines = _csv(out / "table.csv")
    assert [(r["row"], r["mitigation"]) for r in lines] == [
        ("full", "none"),
        ("full", "rwa"),
        ("memcontrol", "none"),
        ("memcontrol", "rwa"),
    ]
    for line in lines:  # the memcontrol row trains the searched method and mask at the searched learning rate
        trains = (
            (best["method"], best["mask"], best["learning_rate"])
            if line["row"] == "memcontrol"
            else ("full", "1" * 7, 5e-4)
        )
        assert (line["method"], line["mask"], float(line["learning_rate"])) == trains
        assert line["seeds"] == "0" and float(line["fid_mean"]) > 0 and line["fid_sd"] == ""  # one seed: no spread
        assert 0 < float(line["trainable_percent_mean"]) <= 100 and float(line["wall_seconds_mean"]) > 0
    assert len(_csv(out / "cells.csv")) == 4
    table = (out / "table.md").read_text()
    assert table.count("| full | ") == 2 and table.count("| memcontrol | ") == 2 and "extracted ↓" in table
    assert "extracted_train_mean" not in lines[0] and "extracted train" not in table  # only D_mem was attacked

    cell = out / "cells" / "memcontrol-rwa-seed0"
    manifest = json.loads((cell / "model" / "manifest.json").read_text())
    assert (manifest["config"]["mitigation"], manifest["config"]["seed"], manifest["mask"]) == ("rwa", 0, best["mask"])
    metrics = json.loads((cell / "evaluation" / "metrics.json").read_text())
    assert len(metrics["closest"]) == 2  # one per D_mem image
    for closest in metrics["closest"]:  # the figures show the generation saved, beside the distance recorded
        with Image.open(cell / "evaluation" / closest["file"]) as png:
            generated = torch.from_numpy(np.asarray(png.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
        training = (load_image(closest["training_image"], manifest["resolution"]) + 1) / 2
        recomputed = float(tile_distances(generated[None], training[None], metrics["settings"]["extraction_grid"]))
        assert closest["distance"] == pytest.approx(recomputed, abs=1 / 255)  # the saved PNG is 8-bit
    threshold = metrics["settings"]["extraction_threshold"]
    (record,) = [r for r in _csv(out / "cells.csv") if r["cell"] == cell.name]
    assert int(record["regenerated"]) == sum(c["distance"] < threshold for c in metrics["closest"])
    for mitigation in ("none", "rwa"):
        with Image.open(out / f"closest-{mitigation}.png") as figure:
            assert figure.format == "PNG" and figure.width > figure.height  # 2 rows: the image and two methods
        assert f"closest-{mitigation}.png" in table

    # Again: every cell is done, nothing trains or evaluates again.
    weights = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/model/trained.safetensors")}
    capsys.readouterr()
    assert _benchmark(tiny_search_config, out) == 0
    assert capsys.readouterr().out.count("done before, skipped") == 8
    assert {p: p.stat().st_mtime_ns for p in out.glob("cells/*/model/trained.safetensors")} == weights

    # A cell made with other training options is refused rather than mixed into the table.
    assert _benchmark(tiny_search_config, out, "--methods", "full", "--max_train_steps", "3") == 2
    assert "full-none-seed0" in capsys.readouterr().err


def test_attack_prompts_both_puts_the_train_attack_count_beside_dmem_in_the_table(tiny_search_config, tmp_path):
    out = tmp_path / "benchmark"
    assert (
        main(
            [
                "benchmark",
                "--config",
                str(tiny_search_config),
                "--output_dir",
                str(out),
                "--methods",
                "full",
                "--mitigations",
                "none",
                "--seeds",
                "0",
                "--attack_prompts",
                "both",
                "--attack_train_prompts",
                "2",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "cells" / "full-none-seed0" / "evaluation" / "metrics.json").read_text())
    assert metrics["settings"]["attack_prompts"] == "both" and 1 <= metrics["attacked_train"] <= 2
    (line,) = _csv(out / "table.csv")
    assert (
        float(line["extracted_mean"]) == metrics["extracted"]
        and float(line["extracted_train_mean"]) == metrics["extracted_train"]
    )
    (cell,) = _csv(out / "cells.csv")
    assert int(cell["attacked_train"]) == metrics["attacked_train"]
    table = (out / "table.md").read_text()
    assert (
        "| extracted ↓ | extracted train ↓ |" in table
        and f"the attack on {metrics['attacked_train']} ordinary" in table
    )


def test_bad_grids_are_one_line_errors_before_any_training(tiny_search_config, tmp_path, capsys):
    for extra, must_name in (
        (["--methods", "full,lorax"], "lorax"),
        (["--methods", "full@fast"], "full@fast"),
        (["--mitigations", "threshold"], "--threshold_quantile"),  # the tiny config sets no threshold
        (["--seeds", "0,one"], "--seeds"),
        (["--mask", "1111111"], "--mask_file"),
    ):
        assert _benchmark(tiny_search_config, tmp_path / "out", *extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("memcontrol benchmark: error: ") and must_name in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_the_cpu_preset_is_the_default_on_builtin_data_and_its_grid_parses():
    job = BenchmarkRunConfig.from_args(argparse.Namespace(seeds="0,1"))
    assert job.benchmark.seeds == [0, 1]  # a flag still wins
    assert [m.method for m in job.benchmark.methods] == [
        "freeze",
        "full",
        "svdiff",
        "difffit",
        "attention",
        "memcontrol",
    ]
    rows = [make_row(m, job.job.train.learning_rate, None) for m in job.benchmark.methods[:-1]]
    assert [(r.label, r.learning_rate) for r in rows[:2]] == [("freeze", 1e-4), ("full@2.5e-4", 2.5e-4)]
    assert job.benchmark.mitigations == ["none", "rwa", "threshold"]
    yours = BenchmarkRunConfig.from_args(argparse.Namespace(train_data_dir="/data/mimic"))
    assert yours.job.train.max_train_steps == 1000 and yours.benchmark.seeds == [0, 1, 2]  # the fields' defaults
