"""Measure the built-in scenario: does the shipped base follow captions, and does full fine-tuning memorise?

    python benchmarks/builtin_scenario.py [--output_dir outputs/scenario] [--samples 8]

Prints caption following of the base model, then extraction of D_mem and class accuracy for the
frozen base and for `memcontrol train` with its defaults (full fine-tuning), with wall times.
"""

from __future__ import annotations

import argparse
import json
import time

from memcontrol.config import DataConfig, ModelConfig, SampleConfig, TrainConfig
from memcontrol.data.prepare import prepare_data
from memcontrol.models.pipeline import load_pipeline, recommendations
from memcontrol.peft.trained import load_trained
from memcontrol.pretrain.check import position_accuracy, shape_accuracy
from memcontrol.scenario import digit_accuracy, extraction_check
from memcontrol.train.run import run_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="outputs/scenario")
    parser.add_argument("--samples", type=int, default=8, help="samples per D_mem prompt")
    args = parser.parse_args()
    settings = {k: recommendations(None)[k] for k in ("guidance_scale", "num_inference_steps")}
    base = load_pipeline()
    for guidance in (1.0, 1.5, 3.0):
        shape = shape_accuracy(base, samples_per_shape=16, guidance_scale=guidance, num_inference_steps=25)
        position = position_accuracy(base, samples_per_quarter=16, guidance_scale=guidance, num_inference_steps=25)
        print(
            f"base caption following at guidance {guidance}: shape {shape:.2f}, position {position:.2f} (chance 0.25)"
        )
    data = prepare_data(DataConfig())
    start = time.perf_counter()
    run_train(ModelConfig(), DataConfig(), TrainConfig(), SampleConfig(), args.output_dir, progress=False)
    train_seconds = time.perf_counter() - start
    tuned = load_trained(args.output_dir)[0]
    rows = {}
    for name, pipe in (("frozen base", base), ("full, defaults", tuned)):
        extraction = extraction_check(pipe, data.training, data.dmem, 16, samples=args.samples, **settings)
        rows[name] = {
            "extracted": f"{extraction['extracted']}/{len(data.dmem)}",
            "mean_best_distance": round(sum(extraction["best_distance"]) / len(data.dmem), 3),
            "threshold": round(extraction["threshold"], 3),
            "digit_accuracy": round(digit_accuracy(pipe, 16, **settings), 3),
        }
    rows["full, defaults"]["train_seconds"] = round(train_seconds, 1)
    print(json.dumps(rows, indent=2))
    print(f"builtin_full_extracted: {rows['full, defaults']['extracted']}")


if __name__ == "__main__":
    main()
