"""The remediation plan's section in the ticket description: content, order, escaping, bounds."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from ecs_scan_operator.core.model import FixAvailable, ImageResult, Signals
from ecs_scan_operator.core.tickets import evaluate_group, group_images
from ecs_scan_operator.core.tickets.wiki import PLAN_STEPS, TEXT_BUDGET, render_description
from tests.jira_server import fleet
from tests.unit.tickets.support import NOW, spec_with

HOSTILE = [
    "a|b",
    "[x|javascript:alert(1)]",
    "{code}x{code}",
    "*b* _i_",
    "!img.png!",
    "h1. big",
    "\n# item",
    "{{m}}",
]


def _text(images: list[ImageResult]) -> str:
    spec = spec_with()
    assert spec.jira is not None
    (group,) = group_images(images, spec.jira)
    return render_description(fleet.request(spec, images, NOW), group, evaluate_group(group, None))


def _plan_section(text: str) -> list[str]:
    lines = text.split("\n")
    start = lines.index("h3. Remediation plan")
    end = lines.index("", start)
    return lines[start + 1 : end]


def test_plan_names_the_upgrade_and_what_it_fixes_most_urgent_first() -> None:
    img = fleet.image("app/api", "1.0", [("CVE-1", "openssl", "HIGH"), ("CVE-2", "openssl", "CRITICAL")])
    img.findings.append(
        replace(fleet.finding("CVE-3", "glibc", "MEDIUM", fixed="2.36-9+deb12u7"), signals=Signals(kev=True))
    )
    img.findings.append(fleet.finding("CVE-4", "zlib", "CRITICAL", fixed=""))
    section = _plan_section(_text([img]))
    assert section[:2] == [
        r"# upgrade glibc from 3.0.1 to 2.36-9\+deb12u7: fixes 1 finding (1 known-exploited, 0 critical)",
        r"# upgrade openssl from 3.0.1 to 3.0.15: fixes 2 findings (0 known-exploited, 1 critical)",
    ]
    assert section[2] == "No fixed version known for 1: CVE-4 (zlib, CRITICAL)."


def test_plan_comes_before_the_findings_table() -> None:
    text = _text([fleet.image("app/api", "1.0", [("CVE-1", "openssl", "HIGH")])])
    assert text.index("h3. Remediation plan") < text.index("h3. Findings")


def test_plan_across_the_images_of_a_ticket() -> None:
    images = [fleet.image(f"app/api{i}", "1.0", [("CVE-1", "openssl", "HIGH")]) for i in range(3)]
    spec = spec_with(groupBy="repository")
    assert spec.jira is not None
    groups = group_images(images, spec.jira)
    for group in groups:
        text = render_description(fleet.request(spec, images, NOW), group, evaluate_group(group, None))
        assert "fixes 1 finding (0 known-exploited" in text


def test_base_image_hint_when_most_findings_are_os_packages() -> None:
    img = fleet.image("app/api", "1.0", [("CVE-1", "openssl", "HIGH"), ("CVE-2", "glibc", "HIGH")])
    img.findings[:] = [replace(f, package_manager="OS") for f in img.findings]
    assert "_2 of 2 findings are in operating-system packages" in _text([img])
    img.findings[:] = [replace(f, package_manager="PIP") for f in img.findings]
    assert "operating-system packages" not in _text([img])


def test_no_findings_no_plan() -> None:
    assert "Remediation plan" not in _text([fleet.image("app/api", "1.0", [])])


def test_a_scan_that_says_nothing_of_fixes_gets_no_plan() -> None:
    """BASIC scanning gives no fixed versions: no plan rather than a list of "no fix known"."""
    img = fleet.image("app/api", "1.0", [("CVE-1", "openssl", "HIGH"), ("CVE-2", "zlib", "CRITICAL")])
    img.findings[:] = [replace(f, fixed_version="") for f in img.findings]
    assert "Remediation plan" not in _text([img])
    img.findings[1] = replace(img.findings[1], signals=Signals(fix_available=FixAvailable.NO))
    assert "No fixed version known for 2: CVE-2 (zlib, CRITICAL), CVE-1 (openssl, HIGH)." in _text([img])


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("field", ["package", "installed_version", "fixed_version", "vulnerability_id"])
def test_every_outside_field_of_a_step_is_inert(hostile: str, field: str) -> None:
    """No package, version or id can end a list item, open a link, a macro or a heading."""
    img = fleet.image("app/api", "1.0", [("CVE-1", "openssl", "HIGH")])
    change: dict[str, Any] = {field: hostile}
    img.findings[0] = replace(img.findings[0], **change)
    unfixed = replace(img.findings[0], vulnerability_id=f"CVE-9{hostile}", fixed_version="")
    img.findings.append(unfixed)
    section = _plan_section(_text([img]))
    for line in section:
        body = line[2:] if line.startswith("# ") else line
        assert not re.search(r"(?<!\\)[\[\]{}|!*_]", body.strip("_")), line
        assert "\n" not in body


def test_many_steps_are_cut_to_the_most_urgent() -> None:
    findings: list[tuple[str, str, str]] = [(f"CVE-{i}", f"pkg-{i:03d}", "HIGH") for i in range(40)]
    findings.append(("CVE-K", "pkg-kev", "LOW"))
    img = fleet.image("app/api", "1.0", findings)
    img.findings[-1] = replace(img.findings[-1], signals=Signals(kev=True))
    section = _plan_section(_text([img]))
    steps = [ln for ln in section if ln.startswith("# ")]
    assert len(steps) == PLAN_STEPS
    assert steps[0].startswith("# upgrade pkg-kev")
    assert f"…and {41 - PLAN_STEPS} more upgrades" in "\n".join(section)


def test_a_huge_plan_stays_within_the_budget() -> None:
    long = "p" * 5000
    findings: list[Any] = [(f"CVE-{i}", f"{long}-{i}", "HIGH") for i in range(300)]
    img = fleet.image("app/api", "1.0", findings, families=[(f"family-{i}", "c") for i in range(300)])
    text = _text([img])
    assert len(text) <= TEXT_BUDGET
    steps = [ln for ln in _plan_section(text) if ln.startswith("# ")]
    assert 1 <= len(steps) <= PLAN_STEPS
    assert all(len(s) <= 310 for s in steps)
