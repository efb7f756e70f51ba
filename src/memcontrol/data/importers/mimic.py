"""MIMIC-CXR-JPG (images) plus MIMIC-CXR (free-text reports) -> imagefolder.

The caption is the report's IMPRESSION, the radiologist's summary, as in the MemControl paper.
`subject_id` is kept, so that splits never put one patient in two splits.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from memcontrol.data.imagefolder import check_new_output_dir, resize_shorter_side, write_metadata
from memcontrol.errors import UserError
from memcontrol.io import atomic_dir

logger = logging.getLogger(__name__)

METADATA_NAMES = ("mimic-cxr-2.0.0-metadata.csv.gz", "mimic-cxr-2.0.0-metadata.csv")
METADATA_COLUMNS = ("dicom_id", "subject_id", "study_id", "ViewPosition")
# An ALL-CAPS section header such as "FINDINGS:" or "RECOMMENDATION(S):" (one or more words).
_HEADER = re.compile(r"\b[A-Z][A-Z()/&-]+(?: [A-Z][A-Z()/&-]+)*:")
_IMPRESSION = re.compile(r"\bIMPRESSION:")


@dataclass(frozen=True)
class _Image:
    dicom_id: str
    subject_id: str
    study_id: str
    view: str

    def relative_dir(self) -> Path:
        return Path("files", f"p{self.subject_id[:2]}", f"p{self.subject_id}")


def import_mimic_cxr(
    mimic_root: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    reports_root: str | os.PathLike | None = None,
    views: Sequence[str] = ("PA", "AP"),
    resolution: int | None = None,
    limit: int | None = None,
) -> Path:
    """Write an imagefolder of the `views` images captioned by their study's impression.

    Studies whose report has no IMPRESSION section (or no report file) are skipped and counted
    in a log warning. `resolution` resizes the shorter side (saved as PNG, lossless); otherwise
    the JPEGs are copied unchanged. `limit` caps the number of images written.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UserError(f"limit {limit!r}: expected a positive integer or None")
    mimic_root, output_dir = Path(mimic_root), check_new_output_dir(output_dir)
    reports = _reports_root(mimic_root, reports_root)
    images = _read_metadata(_metadata_csv(mimic_root), set(views))
    with atomic_dir(output_dir) as tmp:
        rows, skipped = _write_images(images, mimic_root, reports, tmp, resolution, limit)
        if not rows:
            raise UserError(
                f"MIMIC-CXR at {mimic_root}: no {'/'.join(views)} image has a report with an "
                f"IMPRESSION section under {reports}; check reports_root"
            )
        write_metadata(tmp, rows)
    logger.warning(
        "imported %d MIMIC-CXR images into %s; skipped %d studies without an IMPRESSION (or report)",
        len(rows),
        output_dir,
        skipped,
    )
    return output_dir


def _write_images(
    images: Iterator[_Image],
    mimic_root: Path,
    reports: Path,
    out: Path,
    resolution: int | None,
    limit: int | None,
) -> tuple[list[dict], int]:
    """Write the images of studies that have an impression; return their rows and the skip count."""
    (out / "images").mkdir()
    rows: list[dict] = []
    captions: dict[str, str | None] = {}  # study_id -> impression, read once per study
    for image in images:
        if limit is not None and len(rows) >= limit:
            break
        if image.study_id not in captions:
            captions[image.study_id] = _impression(reports, image)
        if captions[image.study_id] is not None:
            rows.append(_write_image(mimic_root, out, image, captions[image.study_id], resolution))
    return rows, sum(caption is None for caption in captions.values())


def extract_impression(report: str) -> str | None:
    """Text after ``IMPRESSION:`` up to the next ALL-CAPS header, whitespace-normalised."""
    start = _IMPRESSION.search(report)
    if start is None:
        return None
    rest = report[start.end() :]
    end = _HEADER.search(rest)
    return " ".join(rest[: end.start() if end else None].split()) or None


def _reports_root(mimic_root: Path, reports_root: str | os.PathLike | None) -> Path:
    if reports_root is None:
        default = mimic_root / "mimic-cxr-reports"
        return default if default.is_dir() else mimic_root
    if not Path(reports_root).is_dir():
        raise UserError(f"reports_root {reports_root}: does not exist or is not a directory")
    return Path(reports_root)


def _metadata_csv(mimic_root: Path) -> Path:
    for name in METADATA_NAMES:
        if (mimic_root / name).is_file():
            return mimic_root / name
    raise UserError(f"MIMIC-CXR-JPG at {mimic_root}: missing {' or '.join(METADATA_NAMES)}")


def _read_metadata(metadata: Path, views: set[str]) -> Iterator[_Image]:
    opener = gzip.open if metadata.suffix == ".gz" else open
    try:
        with opener(metadata, "rt", encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in METADATA_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(f"{metadata}: missing column(s) {', '.join(missing)}")
            for row in reader:
                if row["ViewPosition"] in views:
                    yield _Image(row["dicom_id"], row["subject_id"], row["study_id"], row["ViewPosition"])
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise UserError(f"{metadata}: cannot be read as CSV ({e})") from None


def _impression(reports: Path, image: _Image) -> str | None:
    path = reports / image.relative_dir() / f"s{image.study_id}.txt"
    if not path.is_file():
        return None
    return extract_impression(path.read_text(encoding="utf-8", errors="replace"))


def _write_image(mimic_root: Path, out: Path, image: _Image, caption: str, resolution: int | None) -> dict:
    source = mimic_root / image.relative_dir() / f"s{image.study_id}" / f"{image.dicom_id}.jpg"
    if not source.is_file():
        raise UserError(f"MIMIC-CXR-JPG image {source}: listed in the metadata but missing")
    if resolution is None:
        file_name = f"images/{image.dicom_id}.jpg"
        shutil.copyfile(source, out / file_name)
    else:
        file_name = f"images/{image.dicom_id}.png"
        try:
            with Image.open(source) as im:
                resize_shorter_side(im, resolution).save(out / file_name)
        except OSError as e:
            raise UserError(f"MIMIC-CXR-JPG image {source}: cannot be read ({e})") from None
    return {
        "file_name": file_name,
        "text": caption,
        "subject_id": image.subject_id,
        "study_id": image.study_id,
        "view_position": image.view,
    }
