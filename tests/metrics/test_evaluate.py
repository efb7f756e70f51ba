import dataclasses
import math

import pytest
import torch
from PIL import Image

from memcontrol.data.imagefolder import load_imagefolder, load_images
from memcontrol.errors import UserError
from memcontrol.metrics import DomainFeatures, EvalConfig, audit_model, evaluate_model, make_extractor, train_domain_encoder
from memcontrol.models.pipeline import load_pipeline

CLASSES = ("circle", "square", "triangle")
FAST = EvalConfig(num_inference_steps=2, guidance_scale=1.5, batch_size=8, extraction_samples=3, extraction_min_group=2, audit_prompts=3)


def class_of(caption: str) -> str | None:
    return next((c for c in CLASSES if c in caption.split()), None)


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return load_pipeline(str(tiny_model_dir))


def test_evaluate_model_reports_every_metric_and_writes_the_extraction_figure(pipe, tiny_data_dir, tmp_path):
    examples = load_imagefolder(tiny_data_dir)
    train, test = examples[:8], examples[8:]
    images = (load_images(train, 16, progress=False) + 1) / 2
    labels = torch.tensor([CLASSES.index(class_of(e.text)) for e in train])
    classifier = DomainFeatures(train_domain_encoder(images, labels, CLASSES, steps=2, input_size=16, width=8, progress=False))
    metrics = evaluate_model(
        pipe, train_examples=train + train[:2] * 3, test_examples=test, dmem_examples=train[:2] * 3, resolution=16,
        extractor=make_extractor("pixels"), output_dir=tmp_path, settings=FAST, class_of=class_of, classifier=classifier,
        progress=False,
    )
    assert all(math.isfinite(metrics[k]) for k in ("fid", "amd", "alignment", "dmem_mean", "dmem_max"))
    assert 0 <= metrics["alignment"] <= 1 and metrics["clip_score"] is None
    assert metrics["extracted"] == len(metrics["extractions"]) and len(metrics["dmem"]) == 2  # D_mem copies count once
    assert metrics["num_test"] == 4 and metrics["num_training_images"] == 8 and metrics["settings"]["extraction_samples"] == 3
    with Image.open(metrics["figures"]["extraction"]) as figure:
        assert figure.format == "PNG"


def test_audit_without_dmem_attacks_a_seeded_sample_of_training_pairs(pipe, tiny_data_dir, tmp_path):
    examples = load_imagefolder(tiny_data_dir)
    # A known answer: tile distances of [0, 1] images are at most 1, so under a threshold of 2 with groups of one,
    # every attacked image is extracted, by the generation nearest it (the one `closest` reports).
    everything_matches = dataclasses.replace(FAST, extraction_threshold=2.0, extraction_min_group=1)
    metrics = audit_model(
        pipe, examples, resolution=16, extractor=make_extractor("pixels"), output_dir=tmp_path, settings=everything_matches,
        progress=False,
    )
    assert len(metrics["attacked_prompts"]) == 3 and len(metrics["dmem"]) == 3
    assert math.isfinite(metrics["amd"]) and metrics["extracted"] == 3 and "fid" not in metrics
    extracted = [(e["prompt"], e["training_image"], e["generated_index"], e["distance"]) for e in metrics["extractions"]]
    nearest = [(c["prompt"], c["training_image"], c["generated_index"], c["distance"]) for c in metrics["closest"]]
    assert extracted == nearest and [e["prompt"] for e in metrics["extractions"]] == metrics["attacked_prompts"]
    assert (tmp_path / "extraction.png").is_file()


def test_bad_settings_fail_before_any_generation():
    with pytest.raises(UserError, match="dmem_mode 'exact'"):
        EvalConfig(dmem_mode="exact")
    with pytest.raises(UserError, match="min_group 20"):
        EvalConfig(extraction_samples=16, extraction_min_group=20)
