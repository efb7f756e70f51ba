"""Two workers, as on two machines, share one study on PostgreSQL and run its trials between them.

Needs a server: MEMCONTROL_TEST_POSTGRES_URL names a database on it (`.ci/run` starts a throw-away one),
e.g. postgresql+psycopg://memcontrol@127.0.0.1:5432/memcontrol. Each run makes a study of its own
name and deletes it at the end, so runs never clash.
"""

import csv
import json
import os
import subprocess
import sys
import uuid

import optuna
import pytest

URL = os.environ.get("MEMCONTROL_TEST_POSTGRES_URL")
N_TRIALS = 4

pytestmark = pytest.mark.skipif(
    not URL,
    reason="MEMCONTROL_TEST_POSTGRES_URL is not set (a PostgreSQL database URL; .ci/run starts a server and sets it)",
)


def _trial_numbers(out) -> list[int]:
    return [int(p.parent.name) for p in (out / "trials").glob("*/*/trial.json")]


def _studies(name) -> list[str]:
    return [s for s in optuna.get_all_study_names(URL) if s.startswith(f"{name}-")]


def test_two_workers_on_one_postgres_study_run_n_trials_in_all(tiny_search_config, tmp_path):
    name = f"test-{uuid.uuid4().hex[:12]}"
    outs = [tmp_path / f"machine{k}" for k in range(2)]  # an output folder each, as on two machines
    logs = [tmp_path / f"worker{k}.log" for k in range(2)]
    argv = [
        sys.executable,
        "-m",
        "memcontrol.cli",
        "search",
        "--config",
        str(tiny_search_config),
        "--storage",
        URL,
        "--study_name",
        name,
        "--n_trials",
        str(N_TRIALS),
        "--trial_train_steps",
        "10",
    ]
    workers = []
    try:
        for out, log in zip(outs, logs):  # started together: they also race to create the study
            with log.open("w") as f:
                workers.append(subprocess.Popen([*argv, "--output_dir", str(out)], stdout=f, stderr=subprocess.STDOUT))
        for worker, log in zip(workers, logs):
            assert worker.wait(timeout=300) == 0, log.read_text()[-3000:]

        (study_name,) = _studies(name)  # NAME-METHOD
        trials = optuna.load_study(study_name=study_name, storage=URL).get_trials()
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(complete) == N_TRIALS
        assert (
            len({(t.user_attrs["mask"], t.user_attrs["learning_rate"]) for t in complete}) == N_TRIALS
        )  # no proposal twice
        numbers = [n for out in outs for n in _trial_numbers(out)]
        assert sorted(numbers) == sorted(t.number for t in complete)  # each trial run once, by one worker
        for out in outs:  # either worker writes the whole study's results
            with (out / "trials.csv").open() as f:
                assert sum(row["state"] == "complete" for row in csv.DictReader(f)) == N_TRIALS
            assert json.loads((out / "best_mask.json").read_text())
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
        for study_name in _studies(name):
            optuna.delete_study(study_name=study_name, storage=URL)
