"""`memcontrol --help`: what the tool does, and every plug-in family with its members as registered."""

from __future__ import annotations

import itertools

import pytest

from memcontrol.cli import main
from memcontrol.mitigations import Mitigation
from memcontrol.mitigations.base import MITIGATIONS
from memcontrol.peft import PeftMethod
from memcontrol.peft.base import METHODS


def _help(capsys) -> str:
    assert main(["--help"]) == 0
    return capsys.readouterr().out


def test_help_says_what_the_tool_does_and_names_its_commands(capsys):
    text = _help(capsys)
    assert "without memorizing them" in text and "parse flags and YAML" not in text
    for command in ("train", "search", "run", "evaluate", "audit", "benchmark"):
        assert f"\n    {command} " in text


@pytest.mark.parametrize(
    "family, registry, base",
    [
        ("mitigations (--mitigation)", MITIGATIONS, Mitigation),
        ("PEFT methods (--method)", METHODS, PeftMethod),
    ],
)
def test_a_newly_registered_plugin_is_listed_in_help(capsys, monkeypatch, family, registry, base):
    monkeypatch.setattr(registry, "_classes", dict(registry._classes))  # the registration ends with the test
    before = _help(capsys)
    registry.register(type("ThrowAway", (base,), {"name": "throw_away_plugin"}))
    after = _help(capsys)
    assert "throw_away_plugin" in _members(after, family) and "throw_away_plugin" not in before


def _members(text: str, family: str) -> str:
    """The entry of ``family`` in the help's plug-in list, its wrapped lines (indented deeper) joined."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(family))
    return " ".join([lines[start], *itertools.takewhile(lambda line: line.startswith("    "), lines[start + 1 :])])
