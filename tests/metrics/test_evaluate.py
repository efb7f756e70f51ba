import dataclasses
import math

import pytest
import torch
from PIL import Image

from memcontrol.data.imagefolder import load_imagefolder, load_images, write_metadata
from memcontrol.errors import UserError
from memcontrol.metrics import (
    DomainFeatures,
    EvalConfig,
    audit_model,
    evaluate_model,
    make_extractor,
    train_domain_encoder,
)
from memcontrol.metrics import extraction as extraction_module
from memcontrol.models.pipeline import load_pipeline
from memcontrol.sampling import generate
from memcontrol.sampling.generate import to_pil

CLASSES = ("circle", "square", "triangle")
FAST = EvalConfig(
    num_inference_steps=2,
    guidance_scale=1.5,
    batch_size=8,
    extraction_samples=3,
    extraction_min_group=2,
    audit_prompts=3,
)


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
    classifier = DomainFeatures(
        train_domain_encoder(images, labels, CLASSES, steps=2, input_size=16, width=8, progress=False)
    )
    metrics = evaluate_model(
        pipe,
        train_examples=train + train[:2] * 3,
        test_examples=test,
        dmem_examples=train[:2] * 3,
        resolution=16,
        extractor=make_extractor("pixels"),
        output_dir=tmp_path,
        settings=FAST,
        class_of=class_of,
        classifier=classifier,
        progress=False,
    )
    assert all(math.isfinite(metrics[k]) for k in ("fid", "amd", "alignment", "dmem_mean", "dmem_max"))
    assert 0 <= metrics["alignment"] <= 1 and metrics["clip_score"] is None
    assert metrics["extracted"] == len(metrics["extractions"]) and len(metrics["dmem"]) == 2  # D_mem copies count once
    assert (
        metrics["num_test"] == 4
        and metrics["num_training_images"] == 8
        and metrics["settings"]["extraction_samples"] == 3
    )
    with Image.open(metrics["figures"]["extraction"]) as figure:
        assert figure.format == "PNG"


def test_audit_without_dmem_attacks_a_seeded_sample_of_training_pairs(pipe, tiny_data_dir, tmp_path):
    examples = load_imagefolder(tiny_data_dir)
    # A known answer: tile distances of [0, 1] images are at most 1, so under a threshold of 2 with groups of one,
    # every attacked image is extracted, by the generation nearest it (the one `closest` reports).
    everything_matches = dataclasses.replace(FAST, extraction_threshold=2.0, extraction_min_group=1)
    metrics = audit_model(
        pipe,
        examples,
        resolution=16,
        extractor=make_extractor("pixels"),
        output_dir=tmp_path,
        settings=everything_matches,
        progress=False,
    )
    assert len(metrics["attacked_prompts"]) == 3 and len(metrics["dmem"]) == 3
    assert math.isfinite(metrics["amd"]) and metrics["extracted"] == 3 and "fid" not in metrics
    extracted = [
        (e["prompt"], e["training_image"], e["generated_index"], e["distance"]) for e in metrics["extractions"]
    ]
    nearest = [(c["prompt"], c["training_image"], c["generated_index"], c["distance"]) for c in metrics["closest"]]
    assert extracted == nearest and [e["prompt"] for e in metrics["extractions"]] == metrics["attacked_prompts"]
    assert (tmp_path / "extraction.png").is_file()


# One generation per prompt, each a group of its own: prompt p of an attack is drawn from seed p, so a training
# image written from that generation is one the model reproduces.
ONE_SAMPLE = dataclasses.replace(FAST, extraction_samples=1, extraction_min_group=1, attack_train_prompts=2)
SHARED, OTHER, IN_DMEM, BEYOND = (
    "a large bright circle",
    "a small dark square",
    "a case k412 triangle",
    "a far triangle",
)


def _training_folder(root, pipe, reproduced: bool) -> list:
    """In file order: a noise image for SHARED, D_mem's image (before the ordinary captions: the train attack leaves
    it out), the model's images for SHARED and OTHER, and a caption past the first two; with ``reproduced`` False
    every image is noise."""
    sampling = dict(resolution=16, num_inference_steps=2, guidance_scale=1.5, progress=False)
    train_attack = generate(pipe, [SHARED, OTHER], seed=0, **sampling)  # the train attack's prompts 0 and 1
    dmem_attack = generate(pipe, [IN_DMEM], seed=0, **sampling)  # the D_mem attack's prompt 0
    noise = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    images = [noise[0], dmem_attack[0], train_attack[0], train_attack[1], noise[4]] if reproduced else list(noise)
    captions = [SHARED, IN_DMEM, SHARED, OTHER, BEYOND]
    (root / "images").mkdir(parents=True)
    for i, image in enumerate(images):
        to_pil(image[None])[0].save(root / "images" / f"{i}.png")
    write_metadata(
        root, [{"file_name": f"images/{i}.png", "text": c, "subject_id": f"p{i}"} for i, c in enumerate(captions)]
    )
    return load_imagefolder(root)


def _evaluate_attack(pipe, train, test, tmp_path, attack_prompts: str) -> dict:
    return evaluate_model(
        pipe,
        train_examples=train + train[1:2] * 3,
        test_examples=test,
        dmem_examples=train[1:2] * 3,
        resolution=16,
        extractor=make_extractor("pixels"),
        output_dir=tmp_path / "evaluation",
        settings=dataclasses.replace(ONE_SAMPLE, attack_prompts=attack_prompts),
        progress=False,
    )


def test_the_train_attack_extracts_the_training_images_the_model_reproduces(pipe, tiny_data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(
        extraction_module, "REFERENCE_BLOCK", 1
    )  # SHARED's copy, its second image, is in the second block read
    train = _training_folder(tmp_path / "train", pipe, reproduced=True)
    metrics = _evaluate_attack(pipe, train, load_imagefolder(tiny_data_dir)[:4], tmp_path, "both")
    # Both counts, apart: D_mem's image, and the first two training captions outside D_mem (each against every
    # training image with it: SHARED's copy is its second image).
    assert metrics["extracted"] == 1 and metrics["extractions"][0]["training_image"] == str(train[1].image_path)
    assert metrics["extracted_train"] == 2 and metrics["attacked_train"] == 2
    assert [(e["prompt"], e["training_image"]) for e in metrics["extractions_train"]] == [
        (SHARED, str(train[2].image_path)),
        (OTHER, str(train[3].image_path)),
    ]
    assert all(e["distance"] < 0.01 for e in metrics["extractions_train"])
    assert [c["file"] for c in metrics["closest_train"]] == ["closest_train/0000.png", "closest_train/0001.png"]
    assert len(metrics["closest"]) == 1 and len(metrics["dmem"]) == 1
    assert set(metrics["figures"]) == {"extraction", "extraction_train"}
    assert all((tmp_path / "evaluation" / name).is_file() for name in ("extraction.png", "extraction_train.png"))


def test_the_train_attack_extracts_nothing_from_a_model_that_reproduces_no_training_image(
    pipe, tiny_data_dir, tmp_path
):
    train = _training_folder(tmp_path / "train", pipe, reproduced=False)
    metrics = _evaluate_attack(pipe, train, load_imagefolder(tiny_data_dir)[:4], tmp_path, "train")
    assert metrics["extracted_train"] == 0 and metrics["attacked_train"] == 2
    assert [c["prompt"] for c in metrics["closest_train"]] == [SHARED, OTHER]
    assert all(c["distance"] > 0.15 for c in metrics["closest_train"])
    # train alone: no attack on D_mem, whose d_mem is still measured
    assert metrics["extracted"] is None and metrics["closest"] == [] and len(metrics["dmem"]) == 1
    assert not (tmp_path / "evaluation" / "extraction.png").exists()


def test_bad_settings_fail_before_any_generation():
    with pytest.raises(UserError, match="dmem_mode 'exact'"):
        EvalConfig(dmem_mode="exact")
    with pytest.raises(UserError, match="min_group 20"):
        EvalConfig(extraction_samples=16, extraction_min_group=20)
    with pytest.raises(UserError, match="attack_prompts 'all'"):
        EvalConfig(attack_prompts="all")
