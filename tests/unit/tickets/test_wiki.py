"""The ticket text in Jira wiki markup: escaping, links, description, summary (core/tickets/wiki.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ecs_scan_operator.core.model import ImageResult
from ecs_scan_operator.core.policy import PolicySpec
from ecs_scan_operator.core.tickets import (
    esc,
    evaluate_group,
    group_images,
    link,
)
from ecs_scan_operator.core.tickets.wiki import TEXT_BUDGET, render_description, render_summary
from tests.jira_server import fleet
from tests.unit.tickets.support import CRIT, HIGH, NOW, spec_with


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("plain", "plain"),
        ("a|b", r"a\|b"),
        ("[x]{y}", r"\[x\]\{y\}"),
        ("*bold* _it_", r"\*bold\* \_it\_"),
        ("two\nlines", "two lines"),
    ],
)
def test_wiki_escape(text: str, escaped: str) -> None:
    assert esc(text) == escaped


def test_links() -> None:
    assert link("x", "https://a.example/p?q=1|2") == "[x|https://a.example/p?q=1%7C2]"
    assert link("x", "javascript:alert(1)") == "x"
    assert link("x", "") == "x"


def _group(images: list[ImageResult], spec: PolicySpec) -> Any:
    assert spec.jira is not None
    (group,) = group_images(images, spec.jira)
    return group


def test_description_has_what_a_team_needs() -> None:
    spec = spec_with()
    img = fleet.image("app/api", "1.0", [CRIT], families=[("web", "app"), ("worker", "jobs")])
    group = _group([img], spec)
    req = fleet.request(spec, [img], NOW, "run-42")
    text = render_description(req, group, evaluate_group(group, None))
    for needle in (
        "app/api",
        "1.0",
        img.digest or "",
        "|web|app|",
        "|worker|jobs|",
        "CVE-2024-2",
        "https://nvd.nist.gov/vuln/detail/CVE-2024-2",
        "3.0.1 → 3.0.15",
        "run-42",
        "run.log.jsonl",
        "h3. What to do",
        "at or above MEDIUM",
    ):
        assert needle in text, needle
    assert len(text) < TEXT_BUDGET


def test_description_is_summarized_past_the_limit() -> None:
    spec = spec_with()
    findings = [(f"CVE-2024-{i:05d}", f"pkg-{i}-" + "x" * 60, "HIGH") for i in range(2000)]
    img = fleet.image("app/api", "1.0", findings, families=[(f"family-{i}", "c") for i in range(300)])
    group = _group([img], spec)
    text = render_description(fleet.request(spec, [img], NOW), group, evaluate_group(group, None))
    assert len(text) <= TEXT_BUDGET
    assert re.search(r"Showing the \d+ most severe of 2000 findings", text)
    assert "index.html" in text


def test_summary_is_bounded() -> None:
    spec = spec_with(groupBy="image")
    img = fleet.image("a" * 200 + "/b" * 20, "t" * 100, [HIGH, CRIT])
    group = _group([img], spec)
    summary = render_summary(group, evaluate_group(group, None))
    assert len(summary) <= 255
    assert summary.endswith(": 1 CRITICAL, 1 HIGH")
