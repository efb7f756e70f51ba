"""benchmarks/search_quality.py and mask_table.py: replays are judged by the table's true values, the table's setup
is kept, and repeats never redo a measured mask."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from memcontrol.errors import UserError

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # where its dataclasses look themselves up
    spec.loader.exec_module(module)
    return module


search_quality, mask_table = _load("search_quality"), _load("mask_table")


def write_table(path: Path, true: dict, trial: dict, oneshot: dict | None = None, fraction: dict | None = None) -> Path:
    """A mask table as mask_table.py writes it: (d_mem, FID) per mask, and its setup beside it."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, mask_table.COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for mask, (dmem, fid) in true.items():
            row = {"mask": mask, "seed": 0, "dmem_mean": dmem, "fid": fid}
            row.update(trial_dmem_mean=trial[mask][0], trial_fid=trial[mask][1])
            if oneshot:
                row.update(oneshot_dmem_mean=oneshot[mask][0], oneshot_fid=oneshot[mask][1])
            if fraction:
                row.update(trainable_fraction=fraction[mask])
            writer.writerow(row)
    sites = ["down_blocks.1.attentions.0", "up_blocks.1.attentions.0"]
    path.with_suffix(".json").write_text(
        json.dumps({"setup": {"method": "svdiff", "learning_rate": 0.01, "sites": sites}})
    )
    return path


def replay(table: Path, *flags: str):
    args = search_quality.parse_args(["--table", str(table), "--seeds", "2", "--budgets", "4", *flags])
    return {(r.strategy, r.budget): r for r in search_quality.run(args)[2]}


def test_a_budget_covering_every_mask_finds_the_whole_true_front(tmp_path):
    values = {"00": (1.0, 40.0), "01": (2.0, 30.0), "10": (3.0, 20.0), "11": (2.5, 35.0)}  # 11 is dominated
    results = replay(write_table(tmp_path / "t.csv", values, values), "--strategies", "random,tpe")
    for strategy in ("random", "tpe"):
        assert results[(strategy, 4)].shares == [pytest.approx(1.0)] * 2
        assert results[(strategy, 4)].on_front == [True, True]


def test_a_mask_the_short_trials_flatter_is_judged_by_its_true_values(tmp_path):
    true = {"00": (1.0, 10.0), "01": (2.0, 20.0), "10": (2.0, 30.0), "11": (3.0, 20.0)}  # 00 alone is the true front
    trial = {**true, "00": (9.0, 90.0)}  # the short trial makes it look the worst: the search picks 01, dominated
    oneshot = {**true, "11": (0.5, 5.0)}  # one-shot scores 11 best: it is confirmed, seen at its trial values
    results = replay(write_table(tmp_path / "t.csv", true, trial, oneshot), "--strategies", "random,oneshot")
    assert results[("random", 4)].on_front == [False, False]
    assert results[("random", 4)].shares[0] < 1
    assert results[("oneshot", 2)].on_front == [False]  # 11, its only confirmed mask, lies off the true front
    assert results[("oneshot", 2)].shares[0] < results[("random", 4)].shares[0]  # 11 is dominated by 01 too


def test_each_supernet_is_one_replay_of_the_oneshot_strategy(tmp_path):
    true = {"00": (1.0, 10.0), "01": (2.0, 20.0), "10": (2.0, 30.0), "11": (3.0, 20.0)}  # 00 alone is the true front
    table = write_table(tmp_path / "t.csv", true, true, oneshot={**true, "11": (0.5, 5.0)})
    mask_table.write_supernets(
        mask_table.supernets_path(table),
        {
            seed: {"scores": {m: dict(zip(("dmem_mean", "fid"), v)) for m, v in scores.items()}}
            for seed, scores in enumerate([true, {**true, "11": (0.5, 5.0)}])
        },
    )  # supernet 0 scores as the table, 1 ranks 11 first
    results = replay(table, "--strategies", "random,oneshot", "--budgets", "1")
    assert results[("oneshot", 1)].on_front == [True, False]  # from the supernets' file, not the table's columns


def test_a_strategy_is_compared_with_random_search_replay_by_replay():
    random = search_quality.Result("random", 16, [0.6, 0.6, 0.2], [])
    assert search_quality.Result("gp", 16, [0.7, 0.5, 0.2], []).versus(random) == "0.33 / 0.33"  # same seed, same start
    assert search_quality.Result("oneshot", 16, [0.5], []).versus(random) == "0.33 / 0.67"  # a supernet against each


def test_observing_capacity_puts_the_trainable_fraction_in_place_of_the_short_trials_dmem(tmp_path):
    true = {"00": (1.0, 10.0), "01": (2.0, 20.0), "10": (2.0, 30.0), "11": (3.0, 20.0)}  # 00 alone is the true front
    trial = {**true, "00": (9.0, 90.0)}  # the short trial's d_mem hides it; its trainable fraction does not
    table = write_table(tmp_path / "t.csv", true, trial, fraction={"00": 0.0, "01": 0.5, "10": 0.5, "11": 1.0})
    by_trial, by_capacity = (replay(table, "--strategies", "random", "--observe", o) for o in ("trial", "capacity"))
    assert by_trial[("random", 4)].shares[0] < 1
    assert by_capacity[("random", 4)].shares == [pytest.approx(1.0)] * 2


def test_an_incomplete_table_is_refused(tmp_path):
    values = {"00": (1.0, 40.0), "01": (2.0, 30.0), "10": (3.0, 20.0)}
    with pytest.raises(UserError, match="1 of 4 masks lack stand-alone values"):
        search_quality.load_table(write_table(tmp_path / "t.csv", values, values))


def test_more_repeats_keep_the_masks_repeated_before():
    few, more = mask_table.jobs(5, [0, 1], 4), mask_table.jobs(5, [0, 1], 8)
    assert sorted(m for m, s in few if s == 0) == mask_table.all_masks(5)  # every mask once at the first seed
    assert {job for job in few if job[1] == 1} <= {job for job in more if job[1] == 1}


def test_table_phases_in_separate_processes_keep_each_others_values(tmp_path):
    path, template = (
        tmp_path / "table.csv",
        {"method": "attention", "layout": "blocks", "learning_rate": 1e-4, "seed": 0},
    )
    standalone, trials = mask_table.Table(path, template), mask_table.Table(path, template)
    trials.join({"01": {"trial_dmem_mean": 0.5, "trial_fid": 30.0}})  # tried before it was trained stand-alone
    assert trials.has("01", "trial_") and not trials.trained("01", 0)
    assert trials.rows[("01", 0)]["method"] == "attention"  # a first-seed row, its stand-alone columns empty
    standalone.add({"mask": "01", "seed": 1, "steps": 10, "dmem_mean": 1.0, "fid": 20.0})
    standalone.add({"mask": "01", "seed": 0, "steps": 10, "dmem_mean": 2.0, "fid": 25.0})
    standalone.add({"mask": "10", "seed": 0, "steps": 10, "dmem_mean": 3.0, "fid": 21.0})
    trials.join({"10": {"trial_dmem_mean": 0.7, "trial_fid": 31.0}})
    rows = {(r["mask"], r["seed"]): r for r in csv.DictReader(path.open())}
    assert set(rows) == {("01", "0"), ("01", "1"), ("10", "0")}
    assert [rows[key]["trial_fid"] for key in sorted(rows)] == ["30.0", "30.0", "31.0"]
    assert rows[("01", "0")]["dmem_mean"] == "2.0"
    assert mask_table.Table(path, template).trained("10", 0)


def test_the_recorded_table_command_leaves_out_how_one_part_was_made():
    argv = ["--workers", "2", "--work_dir", "/tmp/w", "--phases=standalone", "--limit", "3", "--seeds", "0,1"]
    assert mask_table.table_flags(argv) == ["--workers", "2", "--seeds", "0,1"]
