"""`memcontrol benchmark --workers 2`: the same table as one process; a failing cell loses no other cell's work."""

import csv

import pytest

from memcontrol.cli import main

TIMES = {"train_seconds", "wall_seconds"}  # what two processes on shared cores may change; nothing else may


def _benchmark(config, out, workers, methods="full,svdiff"):
    return main(
        [
            "benchmark",
            "--config",
            str(config),
            "--output_dir",
            str(out),
            "--methods",
            methods,
            "--mitigations",
            "none",
            "--seeds",
            "0,1",
            "--workers",
            str(workers),
        ]
    )


def _results(out):
    """table.csv's lines without the times, measures as floats."""
    with (out / "table.csv").open() as f:
        lines = [{k: v for k, v in line.items() if k.rsplit("_", 1)[0] not in TIMES} for line in csv.DictReader(f)]
    return [{k: float(v) if k.endswith(("_mean", "_sd")) and v else v for k, v in line.items()} for line in lines]


def _same_line(line, expected):
    """Equal, the numbers up to the float rounding that a process's thread count may change."""
    numbers = {k for k, v in expected.items() if isinstance(v, float)}
    texts = expected.keys() - numbers
    assert {k: line[k] for k in texts} == {k: expected[k] for k in texts} and line.keys() == expected.keys()
    assert {k: line[k] for k in numbers} == pytest.approx({k: expected[k] for k in numbers}, rel=1e-5)


def test_two_workers_write_the_one_process_table_and_a_failed_cell_loses_nothing(tiny_search_config, tmp_path, capsys):
    assert _benchmark(tiny_search_config, tmp_path / "one", 1) == 0
    expected = _results(tmp_path / "one")
    assert len(expected) == 2 and all(line["seeds"] == "0 1" for line in expected)  # two seeds: a spread to compare too

    # Two workers, one more method, one of whose cells cannot write its model (a file stands where its folder goes).
    out = tmp_path / "two"
    broken = out / "cells" / "difffit-none-seed0"
    broken.mkdir(parents=True)
    (broken / "model").write_text("not a folder")
    capsys.readouterr()
    assert _benchmark(tiny_search_config, out, 2, methods="full,svdiff,difffit") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("memcontrol benchmark: error: 1 of 6 cells failed") and "difffit-none-seed0" in err
    assert (broken / "failure.txt").read_text().startswith("Traceback")
    *lines, difffit = _results(out)
    assert len(lines) == len(expected)
    for line, expected_line in zip(lines, expected):  # the cells of the one-process run: the same table
        _same_line(line, expected_line)
    assert (difffit["row"], difffit["seeds"]) == ("difffit", "1")  # the other cells are kept, the failed one named
    assert "difffit-none-seed0" in (out / "table.md").read_text()

    # Fixed and run again: only that cell trains.
    (broken / "model").unlink()
    weights = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/model/trained.safetensors")}
    assert len(weights) == 5
    assert _benchmark(tiny_search_config, out, 1, methods="full,svdiff,difffit") == 0
    assert {p: p.stat().st_mtime_ns for p in weights} == weights and not (broken / "failure.txt").exists()
    assert _results(out)[-1]["seeds"] == "0 1"


def test_no_workers_is_a_one_line_error_before_anything_runs(tiny_search_config, tmp_path, capsys):
    assert _benchmark(tiny_search_config, tmp_path / "out", 0) == 2
    assert capsys.readouterr().err.strip() == "memcontrol benchmark: error: --workers: expected at least 1, got 0"
    assert not (tmp_path / "out").exists()
