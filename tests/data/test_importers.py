from __future__ import annotations

import csv
import gzip
import io
import json
import logging

import numpy as np
import pytest
from PIL import Image

from memcontrol.data.imagefolder import load_imagefolder
from memcontrol.data.importers import import_medmnist, import_mimic_cxr
from memcontrol.data.importers.mimic import extract_impression
from memcontrol.errors import UserError

REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with cough

 FINDINGS:
 The lungs are clear.  No pleural effusion.

 IMPRESSION:
 No acute cardiopulmonary
 process.

 RECOMMENDATION(S):  None.
"""
NO_IMPRESSION = " FINAL REPORT\n FINDINGS:  Mild cardiomegaly.\n"
# dicom_id, subject_id, study_id, ViewPosition: subject 1 has a report with an impression (PA
# kept, LATERAL dropped), subject 2's report has no impression, subject 3 has no report.
IMAGES = [
    ("d1", "10000032", "50414267", "PA"),
    ("d2", "10000032", "50414267", "LATERAL"),
    ("d3", "10000033", "50000001", "AP"),
    ("d4", "11000001", "50000002", "PA"),
]


def image_path(root, dicom, subject, study):
    return root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg"


def metadata_csv(rows) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["dicom_id", "subject_id", "study_id", "Rows", "ViewPosition"])
    writer.writerows((d, s, st, 30, v) for d, s, st, v in rows)
    return out.getvalue()


@pytest.fixture
def mimic(tmp_path, write_image):
    root = tmp_path / "mimic-cxr-jpg"
    for dicom, subject, study, _ in IMAGES:
        write_image(image_path(root, dicom, subject, study), size=(40, 30))
    with gzip.open(root / "mimic-cxr-2.0.0-metadata.csv.gz", "wt") as f:
        f.write(metadata_csv(IMAGES))
    reports = root / "mimic-cxr-reports" / "files"
    for subject, study, text in [("10000032", "50414267", REPORT), ("10000033", "50000001", NO_IMPRESSION)]:
        (reports / f"p{subject[:2]}" / f"p{subject}").mkdir(parents=True)
        (reports / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt").write_text(text)
    return root


def test_mimic(mimic, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        out = import_mimic_cxr(mimic, tmp_path / "out")
    examples = load_imagefolder(out)
    assert [(e.image_path.name, e.text, e.subject_id) for e in examples] == [
        ("d1.jpg", "No acute cardiopulmonary process.", "10000032")
    ]
    assert examples[0].image_path.read_bytes() == image_path(mimic, *IMAGES[0][:3]).read_bytes()
    assert "skipped 2 studies" in caplog.text


def test_mimic_resized_with_explicit_reports_root_and_plain_csv(mimic, tmp_path):
    reports = mimic / "mimic-cxr-reports"
    (reports / "files" / "p10" / "p10000033" / "s50000001.txt").write_text("IMPRESSION: Cardiomegaly.")
    gz = mimic / "mimic-cxr-2.0.0-metadata.csv.gz"
    (mimic / "mimic-cxr-2.0.0-metadata.csv").write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    out = import_mimic_cxr(mimic, tmp_path / "out", reports_root=reports, views=("AP",), resolution=15)
    (example,) = load_imagefolder(out)
    assert (example.text, example.subject_id) == ("Cardiomegaly.", "10000033")
    with Image.open(example.image_path) as image:
        assert image.size == (20, 15)


def test_mimic_limit(mimic, tmp_path):
    out = import_mimic_cxr(mimic, tmp_path / "out", views=("PA", "LATERAL"), limit=1)
    assert len(load_imagefolder(out)) == 1


@pytest.mark.parametrize(
    "report, impression",
    [
        (REPORT, "No acute cardiopulmonary process."),
        ("IMPRESSION: Small left effusion. RECOMMENDATION(S): CT.", "Small left effusion."),
        ("FINDINGS: x\nIMPRESSION:\n  1. Edema.\n  2. No pneumothorax.\n", "1. Edema. 2. No pneumothorax."),
        ("IMPRESSION: Line in SVC. NOTIFICATION: called Dr. ___ at 10:30.", "Line in SVC."),
        (NO_IMPRESSION, None),
        ("IMPRESSION:\n\nFINDINGS: x", None),
    ],
)
def test_extract_impression(report, impression):
    assert extract_impression(report) == impression


def test_mimic_errors(mimic, tmp_path):
    with pytest.raises(UserError, match=r"empty: missing mimic-cxr-2.0.0-metadata.csv.gz or "):
        import_mimic_cxr(tmp_path / "empty", tmp_path / "out")
    image_path(mimic, *IMAGES[0][:3]).unlink()
    with pytest.raises(UserError, match=r"d1.jpg: listed in the metadata but missing"):
        import_mimic_cxr(mimic, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with gzip.open(mimic / "mimic-cxr-2.0.0-metadata.csv.gz", "wt") as f:
        f.write("dicom_id,subject_id,study_id\nd1,10000032,50414267\n")
    with pytest.raises(UserError, match=r"metadata.csv.gz: missing column\(s\) ViewPosition"):
        import_mimic_cxr(mimic, tmp_path / "out")
    with pytest.raises(UserError, match=r"reports_root .*nowhere: does not exist"):
        import_mimic_cxr(mimic, tmp_path / "out", reports_root=tmp_path / "nowhere")


def test_mimic_without_any_impression(mimic, tmp_path):
    with pytest.raises(UserError, match="no AP image has a report with an IMPRESSION section"):
        import_mimic_cxr(mimic, tmp_path / "out", views=("AP",))


def write_npz(path, labels_shape=(1,), channels=None, **overrides):
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in [("train", 4), ("val", 2), ("test", 2)]:
        shape = (n, 6, 6) + ((channels,) if channels else ())
        arrays[f"{prefix}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{prefix}_labels"] = rng.integers(0, 2, (n, *labels_shape))
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_pneumoniamnist(tmp_path):
    npz = write_npz(tmp_path / "pneumoniamnist_64.npz")
    examples = load_imagefolder(import_medmnist(npz, tmp_path / "out"))
    assert [e.split for e in examples] == ["train"] * 4 + ["validation"] * 2 + ["test"] * 2
    labels = np.concatenate([np.load(npz)[f"{p}_labels"][:, 0] for p in ("train", "val", "test")])
    names = ["normal", "pneumonia"]
    assert [e.text for e in examples] == [f"a chest x-ray showing {names[y]}" for y in labels]
    with Image.open(examples[0].image_path) as image:
        assert image.size == (6, 6) and image.mode == "L"
        assert np.array_equal(np.asarray(image), np.load(npz)["train_images"][0])


def test_chestmnist_multi_label(tmp_path):
    multi_hot = np.zeros((4, 14), dtype=np.uint8)
    multi_hot[0, [2, 4]] = 1
    multi_hot[2, 12] = 1
    npz = write_npz(tmp_path / "data.npz", labels_shape=(14,), channels=3, train_labels=multi_hot)
    out = import_medmnist(npz, tmp_path / "out", flag="chestmnist", template="{label}")
    texts = [json.loads(line)["text"] for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert texts[:4] == ["effusion and mass", "no finding", "pleural thickening", "no finding"]
    with Image.open(out / "train" / "000000.png") as image:
        assert image.mode == "RGB"


def test_medmnist_with_own_labels(tmp_path):
    npz = write_npz(tmp_path / "breastmnist.npz")
    labels = {0: "malignant", 1: "benign"}
    out = import_medmnist(npz, tmp_path / "out", labels=labels, template="an ultrasound, {label}")
    assert {e.text for e in load_imagefolder(out)} <= {"an ultrasound, malignant", "an ultrasound, benign"}


def test_medmnist_errors(tmp_path):
    npz = write_npz(tmp_path / "breastmnist.npz")
    with pytest.raises(UserError, match=r"breastmnist.npz: no built-in label names for 'breastmnist'"):
        import_medmnist(npz, tmp_path / "out")
    with pytest.raises(UserError, match=r"breastmnist.npz: label 1 has no name"):
        import_medmnist(npz, tmp_path / "out", labels={0: "x"})
    with pytest.raises(UserError, match=r"template 'a \{finding\}'"):
        import_medmnist(npz, tmp_path / "out", flag="pneumoniamnist", template="a {finding}")
    missing = write_npz(tmp_path / "pneumoniamnist.npz", val_labels=None)
    with pytest.raises(UserError, match=r"pneumoniamnist.npz: missing key\(s\) val_labels"):
        import_medmnist(missing, tmp_path / "out")
    floats = write_npz(tmp_path / "chestmnist.npz", test_images=np.zeros((2, 6, 6)))
    with pytest.raises(UserError, match=r"chestmnist.npz: test_images has dtype float64"):
        import_medmnist(floats, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "pneumoniamnist_bad.npz").write_text("not a zip")
    with pytest.raises(UserError, match=r"pneumoniamnist_bad.npz: cannot be read"):
        import_medmnist(tmp_path / "pneumoniamnist_bad.npz", tmp_path / "out")


def test_importers_refuse_a_non_empty_output_dir(mimic, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(UserError, match="out: already exists and is not empty"):
        import_mimic_cxr(mimic, tmp_path / "out")
    with pytest.raises(UserError, match="out: already exists and is not empty"):
        import_medmnist(write_npz(tmp_path / "pneumoniamnist.npz"), tmp_path / "out")
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep"
