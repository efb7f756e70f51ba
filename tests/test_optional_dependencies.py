"""Optional metrics name the pyproject extra that installs what they miss, and every extra named exists."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from memcontrol.errors import UserError
from memcontrol.metrics import make_extractor
from memcontrol.metrics.alignment import clip_score

ROOT = Path(__file__).resolve().parents[1]


def _hide(monkeypatch, package: str) -> None:
    """Make ``import package`` (and its submodules) fail as if it were not installed."""
    for name in [name for name in sys.modules if name == package or name.startswith(f"{package}.")] + [package]:
        monkeypatch.setitem(sys.modules, name, None)


def test_every_extra_that_a_message_names_is_declared():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = {m for path in (ROOT / "src").rglob("*.py") for m in re.findall(r"memcontrol\[(\w+)\]", path.read_text())}
    assert named and named <= set(extras), f"named but not declared: {sorted(named - set(extras))}"


def test_clip_score_without_torchmetrics_names_the_clip_extra(monkeypatch):
    _hide(monkeypatch, "torchmetrics")
    with pytest.raises(UserError, match=r"pip install 'memcontrol\[clip\]'"):
        clip_score(torch.zeros(1, 3, 8, 8), ["a caption"], clip=None)


def test_inception_without_its_packages_names_the_inception_extra(monkeypatch, tmp_path):
    _hide(monkeypatch, "torchmetrics")
    _hide(monkeypatch, "torch_fidelity")
    with pytest.raises(UserError, match=r"pip install 'memcontrol\[inception\]'"):
        make_extractor("inception", weights=tmp_path / "pt_inception.pth")
