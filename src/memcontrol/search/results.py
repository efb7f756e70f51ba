"""What a search leaves: trials.csv, pareto.json, best_mask.json, pareto.png and convergence.png.

Written from the studies themselves (and the baselines' records), so any worker, or a later
``memcontrol search`` on a finished study, writes the same files.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from memcontrol.errors import UserError
from memcontrol.io import write_json, write_text
from memcontrol.search.objectives import OBJECTIVES, Objective
from memcontrol.search.outer_loop import DUPLICATE_OF, FAIL_REASON, REPLACED_DUPLICATE_OF
from memcontrol.search.pick import hypervolume_history, pareto_mask, pick
from memcontrol.search.plots import plot_convergence, plot_pareto

TRIALS_CSV = "trials.csv"
PARETO_JSON = "pareto.json"
BEST_MASK = "best_mask.json"
PARETO_PNG = "pareto.png"
CONVERGENCE_PNG = "convergence.png"


def trial_row(study: optuna.Study, trial: FrozenTrial) -> dict:
    """One trial as the results show it, whatever its state."""
    attrs = trial.user_attrs
    return {
        "study": study.study_name,
        "number": trial.number,
        "state": _state(trial),
        "method": attrs.get("method"),
        "mask": attrs.get("mask"),
        "learning_rate": attrs.get("learning_rate"),
        "metrics": attrs.get("metrics", {}),
        "trainable_fraction": attrs.get("trainable_fraction"),
        "seconds": attrs.get("seconds"),
        "retry_of": trial.system_attrs.get("failed_trial"),
        DUPLICATE_OF: attrs.get(DUPLICATE_OF),
        REPLACED_DUPLICATE_OF: attrs.get(REPLACED_DUPLICATE_OF),
        FAIL_REASON: attrs.get(FAIL_REASON),
        "worker": attrs.get("worker"),
        "completed": trial.datetime_complete.isoformat() if trial.datetime_complete else None,
    }


def _state(trial: FrozenTrial) -> str:
    """complete, failed, interrupted (its worker died: retried), duplicate (an earlier trial's proposal),
    surplus (asked for after the study was full), running ..."""
    if trial.state == TrialState.FAIL:
        return "failed" if FAIL_REASON in trial.user_attrs else "interrupted"
    if trial.state == TrialState.PRUNED:
        return "duplicate" if DUPLICATE_OF in trial.user_attrs else "surplus"
    return trial.state.name.lower()


def values(row: dict, objectives: Sequence[Objective]) -> np.ndarray:
    """The row's objectives, oriented so that lower is better."""
    return np.array([o.sign * row["metrics"][o.name] for o in objectives], dtype=float)


def write_results(
    studies: Sequence[optuna.Study],
    *,
    objectives: Sequence[Objective],
    pick_rule: str,
    sites: dict[str, Sequence[str]],
    baselines: dict[str, dict],
    output_dir: Path,
    summary: dict | None = None,
) -> dict:
    """Write every result file; return the chosen mask (best_mask.json). ``summary``: the one-shot strategy's
    (memcontrol.search.oneshot), recorded in pareto.json.

    With several studies (``--method all``, union) the front is that of all their trials: the union
    of the per-method fronts, less the points another method dominates.
    """
    rows = [trial_row(study, t) for study in studies for t in study.get_trials(deepcopy=False)]
    complete = sorted((r for r in rows if r["state"] == "complete"), key=lambda r: r["completed"])
    if not complete:
        _write_csv(rows, objectives, output_dir)
        raise UserError(f"no trial of the search completed; see the reasons in {output_dir / TRIALS_CSV}")
    points = np.stack([values(r, objectives) for r in complete])
    front, chosen = pareto_mask(points), pick(points, pick_rule)
    for i, row in enumerate(complete):
        row.update(pareto=bool(front[i]), chosen=i == chosen)
    _write_csv(rows, objectives, output_dir)
    best = _best_mask(complete[chosen], pick_rule, sites)
    done = {m: r for m, r in baselines.items() if r["state"] == "complete"}
    write_json(
        output_dir / PARETO_JSON,
        {
            "objectives": [{"name": o.name, "direction": o.direction} for o in objectives],
            "pick_rule": pick_rule,
            "completed_trials": len(complete),
            "front": [r for r in complete if r["pareto"]],
            "chosen": complete[chosen],
            "baselines": baselines,
            **({"oneshot": summary} if summary else {}),
        },
    )
    write_json(output_dir / BEST_MASK, best)
    signs = np.array([o.sign for o in objectives])
    plot_pareto(
        points * signs,
        methods=[r["method"] for r in complete],
        objectives=objectives,
        front=front,
        chosen=chosen,
        baselines=[(name, r["method"], values(r, objectives) * signs) for name, r in done.items()],
        path=output_dir / PARETO_PNG,
    )
    plot_convergence(hypervolume_history(points), output_dir / CONVERGENCE_PNG)
    return best


def _best_mask(row: dict, pick_rule: str, sites: dict[str, Sequence[str]]) -> dict:
    return {
        "method": row["method"],
        "mask": row["mask"],
        "learning_rate": row["learning_rate"],
        "study": row["study"],
        "trial": row["number"],
        "metrics": row["metrics"],
        "trainable_fraction": row["trainable_fraction"],
        "pick_rule": pick_rule,
        "sites": [{"site": site, "bit": int(bit)} for site, bit in zip(sites[row["method"]], row["mask"])],
    }


def _write_csv(rows: list[dict], objectives: Sequence[Objective], output_dir: Path) -> None:
    """One line per trial: objectives first, then the other metrics measured."""
    measured = {name for r in rows for name in r["metrics"]}
    metrics = [o.name for o in objectives] + [o.name for o in OBJECTIVES if o.name in measured and o not in objectives]
    columns = [
        "study",
        "number",
        "state",
        "method",
        "mask",
        "learning_rate",
        *metrics,
        "trainable_fraction",
        "seconds",
        "pareto",
        "chosen",
        "retry_of",
        DUPLICATE_OF,
        REPLACED_DUPLICATE_OF,
        FAIL_REASON,
        "worker",
    ]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: (r["study"], r["number"])):
        writer.writerow({**row, **row["metrics"]})
    write_text(output_dir / TRIALS_CSV, text.getvalue())
