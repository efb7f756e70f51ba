"""table.md, table.csv and cells.csv of a benchmark, built only from what its cells wrote.

One line of table.md and table.csv per (method, mitigation): each measure's mean over the seeds and
its spread (the sample standard deviation; none with one seed). cells.csv holds every seed's values.
The train attack's count (``--attack_prompts train`` or ``both``) has its columns only when a cell measured it.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Sequence
from pathlib import Path

from memcontrol.benchmark.tradeoff import TRADEOFF_COLUMNS, TRADEOFF_CSV, TRADEOFF_PNG, plot_tradeoff, tradeoff_points
from memcontrol.io import write_text
from memcontrol.pipeline.report import format_number, markdown_table

TABLE_MD, TABLE_CSV, CELLS_CSV = "table.md", "table.csv", "cells.csv"
# Measure, header in table.md: the paper's Table 1, then what a method costs.
MEASURES = (
    ("fid", "FID ↓"),
    ("amd", "AMD ↑"),
    ("alignment", "alignment ↑"),
    ("extracted", "extracted ↓"),
    ("extracted_train", "extracted train ↓"),
    ("regenerated", "regenerated ↓"),
    ("dmem_mean", "d_mem ↓"),
    ("trainable_percent", "trainable %"),
    ("train_seconds", "train s"),
    ("wall_seconds", "wall s"),
)
DESCRIPTION = ("row", "method", "mask", "learning_rate", "mitigation")
OPTIONAL_MEASURES = ("extracted_train",)  # columns only where some cell has a value


def cell_record(directory: Path) -> dict:
    """One finished cell as a flat record: what it trained, its metrics, its cost."""
    cell = json.loads((directory / "cell.json").read_text())
    manifest = json.loads((directory / "model" / "manifest.json").read_text())
    metrics = json.loads((directory / "evaluation" / "metrics.json").read_text())
    result, options = manifest["result"], cell["options"]
    return {
        "row": options["row"],
        "method": manifest["method"],
        "mask": manifest["mask"],
        "learning_rate": options["train.learning_rate"],
        "mitigation": options["train.mitigation"],
        "seed": options["train.seed"],
        **{key: metrics.get(key) for key in ("fid", "amd", "alignment", "extracted", "extracted_train", "dmem_mean")},
        "regenerated": regenerated(metrics),
        "trainable_percent": 100 * result["trainable_fraction"],
        "train_seconds": result["seconds"],
        "wall_seconds": round(sum(stage["seconds"] for stage in cell["stages"]), 1),
        "dmem_prompts": len(metrics.get("dmem") or []),
        "test_prompts": metrics.get("num_test"),
        "attacked_train": metrics.get("attacked_train"),
        "cell": directory.name,
    }


def regenerated(metrics: dict) -> int | None:
    """D_mem images whose nearest generation is under the attack's threshold: a copy without the attack's group of
    them."""
    if not metrics.get("closest"):
        return None
    threshold = metrics["settings"]["extraction_threshold"]
    return sum(c["distance"] < threshold for c in metrics["closest"])


def summarise(records: list[dict]) -> list[dict]:
    """Per (row, mitigation), in the order met: each measure's mean and spread over the seeds."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        groups.setdefault((record["row"], record["mitigation"]), []).append(record)
    return [_summary(group) for group in groups.values()]


def _summary(group: list[dict]) -> dict:
    out = {key: group[0][key] for key in DESCRIPTION}
    out["seeds"] = " ".join(str(r["seed"]) for r in group)
    for key, _ in MEASURES:
        values = [r[key] for r in group if r.get(key) is not None]
        out[f"{key}_mean"] = statistics.fmean(values) if values else None
        out[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else None
    return out


def write_tables(records: list[dict], output_dir: Path, figures: list[str], failed: Sequence[str] = ()) -> Path:
    """Write table.md (with the trade-off and the ``figures`` below it, and the ``failed`` cells named), table.csv,
    cells.csv and the trade-off's tradeoff.png and tradeoff.csv; return table.md's path."""
    summaries = summarise(records)
    measured = {key for key, _ in MEASURES if any(r.get(key) is not None for r in records)}
    measures = [(key, header) for key, header in MEASURES if key not in OPTIONAL_MEASURES or key in measured]
    attacked = ["attacked_train"] if "extracted_train" in measured else []
    _write_csv(output_dir / CELLS_CSV, records, [*DESCRIPTION, "seed", *(k for k, _ in measures), *attacked, "cell"])
    summary_columns = [f"{key}_{s}" for key, _ in measures for s in ("mean", "sd")]
    _write_csv(output_dir / TABLE_CSV, summaries, [*DESCRIPTION, "seeds", *summary_columns])
    points = tradeoff_points(summaries)
    _write_csv(output_dir / TRADEOFF_CSV, points, list(TRADEOFF_COLUMNS))
    plot_tradeoff(points, output_dir / TRADEOFF_PNG)
    first = records[0]
    rows = [
        [
            s["row"],
            s["mitigation"],
            f"{s['method']} `{s['mask']}`",
            s["learning_rate"],
            *(_spread(s, k) for k, _ in measures),
        ]
        for s in summaries
    ]
    lines = [
        "# Benchmark: methods x mitigations",
        "",
        f"Mean ± standard deviation over the seeds of each line ({summaries[0]['seeds']}). FID, AMD and alignment on "
        f"{first['test_prompts']} test prompts; extracted and regenerated (of {first['dmem_prompts']}: by the attack, "
        "and by a nearest generation under its threshold) and d_mem on the D_mem prompts; "
        + _train_attack_note(records)
        + "trainable % of the U-Net's parameters; train s: the fine-tuning loop; wall s: training (with caching and "
        "samples) and evaluation of a cell. Every seed's values are in cells.csv.",
        "",
        *markdown_table(["method", "mitigation", "trains (mask)", "learning rate", *(h for _, h in measures)], rows),
        "",
        *(
            [
                "Failed, not in the table (each cell's failure.txt says why; run again to retry): "
                f"{', '.join(failed)}.",
                "",
            ]
            if failed
            else []
        ),
        f"![FID against regenerated and AMD, with the Pareto front]({TRADEOFF_PNG})",
        "",
        *(line for name in figures for line in (f"![closest generations]({name})", "")),
    ]
    write_text(output_dir / TABLE_MD, "\n".join(lines))
    return output_dir / TABLE_MD


def _train_attack_note(records: list[dict]) -> str:
    """What extracted train counts (the training captions attacked, or their range if the cells differ); "" without."""
    counts = sorted({r["attacked_train"] for r in records if r.get("attacked_train") is not None})
    if not counts:
        return ""
    attacked = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    return f"extracted train: the attack on {attacked} ordinary training captions (D_mem's left out); "


def _spread(summary: dict, key: str) -> str:
    mean, sd = summary[f"{key}_mean"], summary[f"{key}_sd"]
    return format_number(mean) if sd is None else f"{format_number(mean)} ± {sd:.2g}"


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, text.getvalue())
