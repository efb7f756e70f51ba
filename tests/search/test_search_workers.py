"""A search killed with SIGKILL resumes without losing or repeating a finished trial; two workers share one study.

The first worker runs in a subprocess (`python -m memcontrol.cli search`); the second, or the restart, runs
in this process. Trials take a few seconds here, so that the kill lands inside one and the workers overlap.
"""

import csv
import json
import subprocess
import sys

from memcontrol.cli import main

SLOW_TRIALS = ("--trial_train_steps", "10")


def _argv(config, out, *extra):
    return ["search", "--config", str(config), "--output_dir", str(out), *SLOW_TRIALS, *extra]


def _start(config, out, log, *extra):
    """A worker in its own process; its output goes to ``log``, read back when a test fails."""
    return subprocess.Popen(
        [sys.executable, "-m", "memcontrol.cli", *_argv(config, out, *extra)], stdout=log, stderr=log
    )


def _states(out) -> dict[int, str]:
    return {int(p.parent.name): json.loads(p.read_text())["state"] for p in (out / "trials").glob("*/*/trial.json")}


def _rows(out):
    with (out / "trials.csv").open() as f:
        return list(csv.DictReader(f))


def test_a_search_killed_mid_trial_resumes_without_losing_a_trial(tiny_search_config, tmp_path, wait_for):
    out, log_path = tmp_path / "search", tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = _start(tiny_search_config, out, log)
        try:
            wait_for(lambda: sorted(_states(out).values()) == ["complete", "running"], worker, log_path)
        finally:
            worker.kill()  # SIGKILL: no clean-up, the heartbeat simply stops
            worker.wait()
    states = _states(out)
    (done,) = [n for n, s in states.items() if s == "complete"]
    (killed,) = [n for n, s in states.items() if s == "running"]
    record = (out / "trials" / "memcontrol-svdiff" / f"{done:04d}" / "trial.json").read_text()

    assert main(_argv(tiny_search_config, out)) == 0  # the same command, started again
    rows = {int(r["number"]): r for r in _rows(out)}
    complete = [r for r in rows.values() if r["state"] == "complete"]
    assert len(complete) == 3 and rows[done]["state"] == "complete"
    assert (out / "trials" / "memcontrol-svdiff" / f"{done:04d}" / "trial.json").read_text() == record  # not run again
    assert rows[killed]["state"] == "interrupted"  # failed by its lapsed heartbeat, not counted
    (retry,) = [r for r in complete if r["retry_of"] == str(killed)]  # its proposal, run to the end
    assert retry["mask"] == rows[killed]["mask"]


def test_two_workers_on_one_study_run_n_trials_in_all(tiny_search_config, tmp_path, wait_for):
    out, log_path = tmp_path / "search", tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = _start(tiny_search_config, out, log, "--n_trials", "4")
        try:
            wait_for(lambda: len(_states(out)) >= 1, worker, log_path)  # the first worker has a trial under way
            assert main(_argv(tiny_search_config, out, "--n_trials", "4")) == 0
            assert worker.wait(timeout=180) == 0, log_path.read_text()[-3000:]
        finally:
            worker.kill()
    rows = _rows(out)
    complete = [r for r in rows if r["state"] == "complete"]
    assert len(complete) == 4
    assert len({r["number"] for r in rows}) == len(rows)  # one trial, one record
    # Two workers asking at once for the last slot leave a surplus trial, recorded and never run: every other trial ran
    # once, in its own folder.
    ran = [r for r in rows if r["state"] not in ("surplus", "duplicate")]
    assert {int(r["number"]) for r in ran} == set(_states(out))
    assert len({r["worker"] for r in complete}) == 2  # both took part


def test_a_database_without_its_driver_is_a_user_error(tmp_path):
    import pytest

    from memcontrol.config import SearchConfig
    from memcontrol.errors import UserError
    from memcontrol.search.outer_loop import open_storage

    with pytest.raises(UserError, match="driver is not installed") as error:  # MySQLdb: in no extra of ours
        open_storage(SearchConfig(storage="mysql://memcontrol:secret@localhost/studies"), tmp_path)
    assert "secret" not in str(error.value)  # the password stays out of messages
    with pytest.raises(UserError, match="expected a URL"):
        open_storage(SearchConfig(storage="study.db"), tmp_path)
