"""benchmarks/mask_effects.py: each site's effect on each metric, read off a mask table (any part of it)."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SITES = ["down_blocks.1.attentions.0", "mid_block.attentions.0", "up_blocks.1.attentions.0"]
EFFECTS = {"dmem_mean": [0.1, 0.0, 0.5], "fid": [-2.0, -1.0, -9.0]}  # the last site: most copying, best quality


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


mask_effects = _load("mask_effects")


def row(mask: str, seed: int, shift: float = 0.0) -> dict:
    bits = np.array([int(b) for b in mask])
    values = {name: base + bits @ effect + shift for (name, effect), base in zip(EFFECTS.items(), (1.0, 60.0))}
    others = {"alignment": 0.2 + 0.1 * bits.sum(), "amd": 0.1 - 0.01 * bits[0], "regenerated": 2 * bits[2]}
    others[mask_effects.FRACTION] = 0.05 * bits.sum()
    return {"mask": mask, "seed": seed, "steps": 10, **values, **others}


def test_an_additive_table_gives_back_each_sites_effect_and_the_seed_noise(tmp_path):
    path = tmp_path / "table.csv"
    masks = [format(i, "03b") for i in range(8)]
    rows = [row(m, 0) for m in masks[:7]] + [row(m, 1, shift=0.3) for m in masks[:4]]
    rows.append({"mask": masks[7], "seed": 0, "trial_dmem_mean": 1.0, "trial_fid": 70.0})  # tried, not yet trained
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(
            f, ["mask", "seed", "steps", *mask_effects.METRICS, mask_effects.FRACTION, "trial_dmem_mean", "trial_fid"]
        )
        writer.writeheader()
        writer.writerows(rows)
    path.with_suffix(".json").write_text(json.dumps({"setup": {"sites": SITES}}))

    sites, by_seed = mask_effects.load_rows(path)
    lines, masks_read, _ = mask_effects.report(sites, by_seed)
    assert masks_read == masks[:7]  # the row without stand-alone values is left out
    coefficients, r2 = mask_effects.additive_effects(masks_read, mask_effects.values(by_seed[0], masks_read, ("fid",)))
    assert np.allclose(coefficients[:, 0], [60.0, *EFFECTS["fid"]]) and np.isclose(r2[0], 1.0)
    noise, pairs = mask_effects.seed_noise(by_seed, 0)
    assert pairs == 4 and np.allclose(noise[:2], 0.0)  # a constant shift between seeds: no spread
    assert any("sd of one run (seed vs seed, 4 masks)" in line for line in lines)

    assert mask_effects.main(["--table", str(path), "--plot", str(tmp_path / "front.png")]) == 0
    assert (tmp_path / "front.png").read_bytes()[:4] == b"\x89PNG"
