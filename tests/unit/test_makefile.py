"""`make help` lists every target of the Makefile and mk/*.mk, each with its description."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKEFILES = [ROOT / "Makefile", *sorted((ROOT / "mk").glob("*.mk"))]
# a rule's target names: at the start of a line, before ':' or '::' (not ':=' assignments)
TARGET = re.compile(r"^([a-zA-Z0-9_.-]+(?:\s+[a-zA-Z0-9_.-]+)*)\s*(?:::|:)(?![:=])", re.M)


def _targets() -> set[str]:
    names: set[str] = set()
    for path in MAKEFILES:
        for match in TARGET.finditer(path.read_text(encoding="utf-8")):
            names.update(n for n in match[1].split() if not n.startswith("."))
    return names


def test_the_pattern_finds_targets_with_digits_dots_and_double_colons() -> None:
    text = "e2e-operator: venv\nx.y:: a\nVAR := 1\nOTHER ::= 2\n.PHONY: e2e-operator\n"
    assert {n for m in TARGET.finditer(text) for n in m[1].split()} == {"e2e-operator", "x.y", ".PHONY"}


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_lists_every_target() -> None:
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    listed = {}
    for line in out.splitlines():
        name, _, text = line.strip().partition(" ")
        listed[name] = text.strip()
    targets = _targets()
    assert targets - set(listed) == set(), "targets without a `## description` on their rule line"
    assert set(listed) - targets == set(), "listed names that are not targets"
    assert all(listed.values()), [name for name, text in listed.items() if not text]
