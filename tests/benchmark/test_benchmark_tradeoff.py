"""tradeoff.png and tradeoff.csv: the table's lines as FID against regenerated and AMD, with their Pareto fronts."""

import csv

from PIL import Image

from memcontrol.benchmark.table import summarise, write_tables


def _record(row, mitigation, seed, fid, regenerated, amd):
    """A cell's record as table.cell_record reads it (only what the table and the trade-off use)."""
    return {
        "row": row,
        "method": row,
        "mask": "1111111",
        "learning_rate": 1e-3,
        "mitigation": mitigation,
        "seed": seed,
        "fid": fid,
        "amd": amd,
        "alignment": 0.1,
        "extracted": 0,
        "regenerated": regenerated,
        "dmem_mean": 1.0,
        "trainable_percent": 1.0,
        "train_seconds": 1.0,
        "wall_seconds": 2.0,
        "test_prompts": 4,
        "dmem_prompts": 10,
        "cell": f"{row}-{mitigation}-seed{seed}",
    }


# Two seeds per line. Means (FID, regenerated, AMD):
#   full none   (60, 10, 0.10)  best FID                      -> on both fronts
#   full rwa    (80,  6, 0.12)  fewer copies, more distance    -> on both fronts
#   svdiff none (90,  0, 0.15)  no copies, most distance       -> on both fronts
#   svdiff rwa  (95,  0, 0.14)  svdiff none is better on all   -> on neither
#   freeze none (400, 0, 0.30)  svdiff none regenerates as few at a lower FID; the farthest from D_mem
#                                -> regenerated: dominated; AMD: on the front
LINES = [
    ("full", "none", 60, 10, 0.10),
    ("full", "rwa", 80, 6, 0.12),
    ("svdiff", "none", 90, 0, 0.15),
    ("svdiff", "rwa", 95, 0, 0.14),
    ("freeze", "none", 400, 0, 0.30),
]


def _records(seeds=(0, 1)):
    """Each line's cells: seed 0 a little below its means, seed 1 as much above (none below 0 copies)."""
    return [
        _record(row, mitigation, seed, fid + d, regenerated + d if regenerated else 0, amd + d / 100)
        for row, mitigation, fid, regenerated, amd in LINES
        for seed, d in ((0, -1), (1, 1))
        if seed in seeds
    ]


def test_the_tradeoff_files_hold_each_line_with_its_spread_and_front(tmp_path):
    write_tables(_records(), tmp_path, [])
    with (tmp_path / "tradeoff.csv").open() as f:
        lines = {(line["row"], line["mitigation"]): line for line in csv.DictReader(f)}
    fronts = {key: (line["on_front_regenerated"], line["on_front_amd"]) for key, line in lines.items()}
    assert fronts == {
        ("full", "none"): ("1", "1"),
        ("full", "rwa"): ("1", "1"),
        ("svdiff", "none"): ("1", "1"),
        ("svdiff", "rwa"): ("0", "0"),
        ("freeze", "none"): ("0", "1"),
    }
    full = lines[("full", "none")]
    assert (float(full["fid_mean"]), float(full["regenerated_mean"])) == (60, 10)
    assert abs(float(full["fid_sd"]) - 2**0.5) < 1e-9 and abs(float(full["amd_sd"]) - 2**0.5 / 100) < 1e-9
    with Image.open(tmp_path / "tradeoff.png") as figure:
        assert figure.format == "PNG" and figure.width > figure.height  # two panels side by side
    assert "](tradeoff.png)" in (tmp_path / "table.md").read_text()


def test_one_seed_has_no_error_bars_and_a_line_without_d_mem_is_left_out(tmp_path):
    records = _records(seeds=(0,))
    for record in records:
        if record["row"] == "full":
            record["regenerated"] = None  # no D_mem: nothing to regenerate, no point in that panel
    write_tables(records, tmp_path, [])
    with (tmp_path / "tradeoff.csv").open() as f:
        lines = {(line["row"], line["mitigation"]): line for line in csv.DictReader(f)}
    assert all(line["fid_sd"] == "" and line["regenerated_sd"] == "" for line in lines.values())
    assert lines[("full", "none")]["on_front_regenerated"] == "" and lines[("full", "none")]["on_front_amd"] == "1"
    assert lines[("svdiff", "none")]["on_front_regenerated"] == "1"  # the best FID among the lines drawn
    assert len(summarise(records)) == len(lines) == 5
