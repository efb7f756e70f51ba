"""report.md of a `memcontrol run`: what was searched, the front and the chosen mask, stage 2, the test metrics.

Built only from the files the stages wrote, so it can be rewritten at any time without the models.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from memcontrol.io import write_text
from memcontrol.search.objectives import OBJECTIVES
from memcontrol.search.pick import PICK_RULES
from memcontrol.search.results import CONVERGENCE_PNG, PARETO_JSON, PARETO_PNG, TRIALS_CSV

REPORT = "report.md"
# The evaluation's metrics (Table 1 of the paper), with whether higher is better (None: a count).
TEST_METRICS = (
    ("fid", "FID (test prompts vs test images)", False),
    ("amd", "AMD to the training images", True),
    ("alignment", "caption alignment", True),
    ("clip_score", "CLIP score", True),
    ("extracted", "extracted D_mem images (extraction attack)", False),
    ("extracted_train", "extracted training images (the attack on training captions)", False),
    ("attacked_train", "training captions attacked", None),
    ("dmem_mean", "d_mem, mean over D_mem prompts", False),
    ("dmem_max", "d_mem, max over D_mem prompts", False),
)


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def format_number(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _percent(record: dict) -> str:
    return f"{100 * record['trainable_fraction']:.4g}%"


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(map(format_number, r)) + " |" for r in rows),
    ]


def write_report(output_dir: Path) -> Path:
    """Write ``output_dir/report.md`` from ``run.json`` and the stages' folders (search, model, evaluation)."""
    run, search = _read(output_dir / "run.json"), output_dir / "search"
    pareto, data = _read(search / PARETO_JSON), _read(search / "search_data.json")
    manifest, metrics = _read(output_dir / "model" / "manifest.json"), _read(output_dir / "evaluation" / "metrics.json")
    options = run["options"]
    objectives = [OBJECTIVES.get(o["name"]) for o in pareto["objectives"]]
    lines = [
        "# MemControl run",
        "",
        f"Base model `{manifest['base_model']}`, data `{options['data.train_data_dir'] or 'builtin:digits'}` "
        f"(fingerprint `{data['fingerprint']}`). Objectives of the search: "
        + ", ".join(f"{o.label} ({o.direction})" for o in objectives)
        + ".",
        "",
        *_test_section(manifest, metrics, len(data["dmem"])),
        *_search_section(search, pareto, data, options, objectives),
        *_train_section(manifest),
        "## Times",
        "",
        *markdown_table(["stage", "seconds"], [[done["stage"], done["seconds"]] for done in run["stages"]]),
        "",
    ]
    write_text(output_dir / REPORT, "\n".join(lines))
    return output_dir / REPORT


def _test_section(manifest: dict, metrics: dict, dmem_size: int) -> list[str]:
    arrows = {True: " ↑", False: " ↓", None: ""}  # None: a count, neither better nor worse
    rows = [
        [f"{label}{arrows[higher]}", metrics[key]]
        for key, label, higher in TEST_METRICS
        if metrics.get(key) is not None
    ]
    extraction = Path("evaluation") / "extraction.png"
    return [
        "## Result on the test split",
        "",
        f"The chosen mask `{manifest['mask']}` of `{manifest['method']}`, fine-tuned on the full training split "
        f"(stage 2), evaluated on {metrics.get('num_test')} test prompts with the `{metrics.get('feature_extractor')}` "
        f"features; the extraction attack and d_mem on the {dmem_size} D_mem prompts.",
        "",
        *markdown_table(["metric", "value"], rows),
        "",
        f"![extracted images]({extraction.as_posix()})",
        "",
    ]


def _search_section(search: Path, pareto: dict, data: dict, options: dict, objectives: list) -> list[str]:
    with (search / TRIALS_CSV).open() as f:
        states = Counter(row["state"] for row in csv.DictReader(f))
    names = [o.name for o in objectives]
    front = [
        [
            r["number"],
            r["method"],
            f"`{r['mask']}`",
            r["learning_rate"],
            *(r["metrics"][n] for n in names),
            _percent(r),
            "**chosen**" if r["chosen"] else "",
        ]
        for r in sorted(pareto["front"], key=lambda r: r["metrics"][names[0]])
    ]
    baselines = [
        [r["method"], r["learning_rate"], *(r["metrics"][n] for n in names), _percent(r)]
        for r in pareto["baselines"].values()
        if r["state"] == "complete"
    ]
    sampler, steps = options["search.sampler"], options["search.trial_train_steps"] or options["train.max_train_steps"]
    counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    population = f", population {options['search.population_size']}" if sampler == "nsga2" else ""
    lines = [
        "## Stage 1: mask search",
        "",
        f"{sum(states.values())} trials ({counts}), sampler {sampler}{population}. Training set of each trial: "
        f"{data['proxy_images']} training images and D_mem, {len(data['dmem'])} pairs repeated {data['dmem_repeats']} "
        f"times ({data['proxy_items']} items), {steps} steps. d_mem on D_mem's prompts, sample quality on validation "
        "prompts.",
        "",
        f"![Pareto front](search/{PARETO_PNG})",
        "",
        f"![Hypervolume of the front after each trial](search/{CONVERGENCE_PNG})",
        "",
        f"Pareto front ({len(front)} of {pareto['completed_trials']} completed trials); the chosen mask has the lowest "
        f"{PICK_RULES.get(pareto['pick_rule']).description}:",
        "",
        *markdown_table(["trial", "method", "mask", "learning rate", *names, "trainable", ""], front),
        "",
    ]
    if baselines:
        lines += [
            "Baselines, every site on, trained and measured as the trials were:",
            "",
            *markdown_table(["method", "learning rate", *names, "trainable"], baselines),
            "",
        ]
    return lines


def _train_section(manifest: dict) -> list[str]:
    result, config = manifest["result"], manifest["config"]
    return [
        "## Stage 2: fine-tuning with the chosen mask",
        "",
        *markdown_table(
            ["", ""],
            [
                ["method, mask", f"{manifest['method']}, `{manifest['mask']}`"],
                ["learning rate", config["learning_rate"]],
                ["steps x batch", f"{result['steps']} x {config['train_batch_size']}"],
                [
                    "trained parameters",
                    f"{result['trainable_parameters']:,} of {result['total_parameters']:,} ({_percent(result)})",
                ],
                ["final loss", result["final_loss"]],
                ["training time (s)", result["seconds"]],
            ],
        ),
        "",
        "Samples (top row: D_mem prompts, where memorization shows; bottom row: validation prompts):",
        "",
        "![samples](model/samples/grid.png)",
        "",
    ]
