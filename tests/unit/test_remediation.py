"""The remediation plan (core/remediation.py): grouping, order, unfixed findings, the base-image hint."""

from __future__ import annotations

import itertools
import random

import pytest

from ecs_scan_operator.core.model import Assessment, Finding, Severity, Signals
from ecs_scan_operator.core.remediation import has_fix, plan

C, H, M, L = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW


def f(
    vid: str,
    pkg: str = "openssl",
    fixed: str = "3.0.13",
    sev: Severity = H,
    *,
    installed: str = "3.0.11",
    kev: bool | None = None,
    exploit: bool | None = None,
    epss: float | None = None,
    prio: str = "",
    manager: str = "",
) -> Finding:
    return Finding(
        vid,
        sev,
        package=pkg,
        installed_version=installed,
        fixed_version=fixed,
        signals=Signals(kev=kev, exploit_available=exploit, epss=epss),
        assessment=Assessment(priority=prio),
        package_manager=manager,
    )


def one(*findings: Finding, image: str = "repo:tag") -> list[tuple[str, Finding]]:
    return [(image, x) for x in findings]


# --- grouping: (package, fixed version) -> one step -----------------------------------------------

GROUPING = [
    # (findings, expected [(package, fixed, [vids])])
    pytest.param(
        [f("CVE-1"), f("CVE-2")], [("openssl", "3.0.13", ["CVE-1", "CVE-2"])], id="same-fix-one-step"
    ),
    pytest.param(
        [f("CVE-1", fixed="3.0.13"), f("CVE-2", fixed="3.0.14")],
        [("openssl", "3.0.13", ["CVE-1"]), ("openssl", "3.0.14", ["CVE-2"])],
        id="two-fixed-versions-two-steps",
    ),
    pytest.param(
        [f("CVE-1", pkg="curl", fixed="8.0"), f("CVE-1", pkg="libcurl", fixed="8.0")],
        [("curl", "8.0", ["CVE-1"]), ("libcurl", "8.0", ["CVE-1"])],
        id="one-cve-two-packages-two-steps",
    ),
    pytest.param([f("CVE-1"), f("CVE-1")], [("openssl", "3.0.13", ["CVE-1"])], id="duplicate-counted-once"),
    pytest.param(
        [f("CVE-1", fixed=" 3.0.13 ")], [("openssl", "3.0.13", ["CVE-1"])], id="fixed-version-stripped"
    ),
    pytest.param([f("CVE-1", fixed="")], [], id="no-fix-no-step"),
    pytest.param([f("CVE-1", fixed="NotAvailable")], [], id="inspector-not-available-no-step"),
]


@pytest.mark.parametrize(("findings", "expected"), GROUPING)
def test_grouping(findings: list[Finding], expected: list[tuple[str, str, list[str]]]) -> None:
    got = plan(one(*findings))
    assert (
        sorted((s.package, s.fixed, [x.vulnerability_id for x in s.findings]) for s in got.steps) == expected
    )


@pytest.mark.parametrize(
    ("fixed", "fix"),
    [
        ("", False),
        ("  ", False),
        ("NotAvailable", False),
        ("notavailable", False),
        ("None", False),
        ("N/A", False),
        ("1.2.3", True),
        ("0", True),
        ("2.36-9+deb12u7", True),
    ],
)
def test_has_fix(fixed: str, fix: bool) -> None:
    assert has_fix(f("CVE-1", fixed=fixed)) is fix


# --- the step text ---------------------------------------------------------------------------------

TEXTS = [
    pytest.param(
        one(f("CVE-1", sev=C, kev=True), f("CVE-2", kev=True), f("CVE-3")),
        "upgrade openssl from 3.0.11 to 3.0.13: fixes 3 findings (2 known-exploited, 1 critical)",
        id="counts",
    ),
    pytest.param(
        one(f("CVE-1", kev=None)),
        "upgrade openssl from 3.0.11 to 3.0.13: fixes 1 finding (0 known-exploited, 0 critical)",
        id="singular-unknown-kev-not-counted",
    ),
    pytest.param(
        [("a:1", f("CVE-1")), ("b:1", f("CVE-1", installed="3.0.12"))],
        "upgrade openssl from 3.0.11, 3.0.12 to 3.0.13: fixes 1 finding in 2 images "
        "(0 known-exploited, 0 critical)",
        id="two-images-two-installed",
    ),
    pytest.param(
        one(f("CVE-1", installed="")),
        "upgrade openssl to 3.0.13: fixes 1 finding (0 known-exploited, 0 critical)",
        id="installed-unknown",
    ),
]


@pytest.mark.parametrize(("pairs", "text"), TEXTS)
def test_step_text(pairs: list[tuple[str, Finding]], text: str) -> None:
    (step,) = plan(pairs).steps
    assert step.text == text


# --- order: what each step removes -----------------------------------------------------------------

ORDER = [
    # (findings, expected order of packages)
    pytest.param([f("A", "a", sev=C), f("B", "b", sev=H)], ["a", "b"], id="critical-before-high"),
    pytest.param([f("A", "a", sev=C), f("B", "b", sev=H, kev=True)], ["b", "a"], id="kev-before-critical"),
    pytest.param(
        [f("A", "a", sev=C, prio="P2"), f("B", "b", sev=M, prio="P1")],
        ["b", "a"],
        id="priority-before-severity",
    ),
    pytest.param(
        [f("A", "a", sev=H, kev=True, prio="P2"), f("B", "b", sev=C, prio="P1")],
        ["a", "b"],
        id="kev-before-priority",
    ),
    pytest.param(
        [f("A", "a", sev=H, exploit=True), f("B", "b", sev=C)], ["a", "b"], id="exploit-before-severity"
    ),
    pytest.param(
        [f("A1", "a", sev=H), f("A2", "a", sev=H), f("B", "b", sev=H)], ["a", "b"], id="more-findings-first"
    ),
    pytest.param(
        [f("A1", "a", sev=H), f("A2", "a", sev=H), f("B", "b", sev=C)],
        ["b", "a"],
        id="one-critical-beats-more-high",
    ),
    pytest.param([f("A", "a", epss=0.2), f("B", "b", epss=0.9)], ["b", "a"], id="higher-epss-first"),
    pytest.param(
        [f("A", "a", epss=None), f("B", "b", epss=0.0)], ["b", "a"], id="known-epss-zero-before-unknown"
    ),
    pytest.param([f("A", "zlib"), f("B", "curl")], ["curl", "zlib"], id="tie-by-package"),
    pytest.param(
        [f("A", "x", fixed="2.0"), f("B", "x", fixed="10.0")],
        ["x@10.0", "x@2.0"],
        id="tie-by-fixed-version-text",
    ),
    pytest.param(
        [f("A", "a", exploit=False), f("B", "b", exploit=None)], ["a", "b"], id="no-and-unknown-exploit-equal"
    ),
]


@pytest.mark.parametrize(("findings", "order"), ORDER)
def test_order(findings: list[Finding], order: list[str]) -> None:
    steps = plan(one(*findings)).steps
    labels = [f"{s.package}@{s.fixed}" if "@" in order[0] else s.package for s in steps]
    assert labels == order


def test_order_does_not_depend_on_input_order() -> None:
    findings = [
        f("A", "a", sev=C),
        f("B", "b", kev=True),
        f("C", "c", prio="P1"),
        f("D", "d", exploit=True),
        f("E", "e", epss=0.5),
        f("F", "f"),
        f("G", "g"),
        f("H", "h", fixed=""),
        f("I", "a", fixed="2"),
    ]
    first = plan(one(*findings))
    rng = random.Random(7)
    for _ in range(50):
        shuffled = findings[:]
        rng.shuffle(shuffled)
        again = plan(one(*shuffled))
        assert [(s.package, s.fixed) for s in again.steps] == [(s.package, s.fixed) for s in first.steps]
        assert again.unfixed == first.unfixed


# --- findings without a fix --------------------------------------------------------------------------


def test_unfixed_listed_apart_most_severe_first() -> None:
    p = plan(one(f("CVE-L", "tar", fixed="", sev=L), f("CVE-C", "zlib", fixed="", sev=C), f("CVE-H")))
    assert [x.vulnerability_id for x in p.unfixed] == ["CVE-C", "CVE-L"]
    assert [s.package for s in p.steps] == ["openssl"]
    assert p.total == 3


def test_fixed_in_one_image_is_not_unfixed() -> None:
    p = plan([("a:1", f("CVE-1", fixed="")), ("b:1", f("CVE-1", fixed="3.0.13"))])
    assert p.unfixed == ()
    assert [s.images for s in p.steps] == [("b:1",)]


def test_worse_record_of_a_vulnerability_is_kept() -> None:
    p = plan([("a:1", f("CVE-1", sev=M)), ("b:1", f("CVE-1", sev=C))])
    assert p.steps[0].findings[0].severity is C


def test_empty() -> None:
    p = plan([])
    assert p.empty and p.steps == () and p.unfixed == () and not p.base_image_hint and p.hint == ""


# --- base-image hint ----------------------------------------------------------------------------------

HINT = [
    # (package managers of the findings, hint?)
    pytest.param(["OS", "OS", "PIP"], True, id="most-os"),
    pytest.param(["OS", "PIP"], False, id="half-is-not-most"),
    pytest.param(["OS", "PIP", "NPM"], False, id="os-minority"),
    pytest.param(["", "", ""], False, id="unknown-no-hint"),
    pytest.param(["OS", "", "", ""], True, id="unknown-left-out"),
    pytest.param(["os", "os", "JAR"], True, id="case-insensitive"),
    pytest.param([], False, id="nothing"),
]


@pytest.mark.parametrize(("managers", "hint"), HINT)
def test_base_image_hint(managers: list[str], hint: bool) -> None:
    findings = [f(f"CVE-{i}", f"p{i}", manager=m) for i, m in enumerate(managers)]
    p = plan(one(*findings))
    assert p.base_image_hint is hint
    assert bool(p.hint) is hint
    if hint:
        known = sum(1 for m in managers if m)
        assert f"of {known} findings are in operating-system packages" in p.hint


def test_hint_counts_unfixed_findings_too() -> None:
    p = plan(
        one(
            f("A", "a", fixed="", manager="OS"),
            f("B", "b", fixed="", manager="OS"),
            f("C", "c", manager="PIP"),
        )
    )
    assert p.base_image_hint


@pytest.mark.parametrize("n", [1, 2, 5])
def test_every_finding_is_in_exactly_one_place(n: int) -> None:
    """Each (id, package) lands in one step or in `unfixed`, never both, never lost."""
    pkgs, fixes = ["a", "b"], ["1", "2", ""]
    findings = [
        f(f"CVE-{i}-{j}", pkg, fixed)
        for i, (pkg, fixed) in enumerate(itertools.product(pkgs, fixes))
        for j in range(n)
    ]
    p = plan(one(*findings))
    in_steps = [(x.vulnerability_id, x.package) for s in p.steps for x in s.findings]
    in_unfixed = [(x.vulnerability_id, x.package) for x in p.unfixed]
    assert sorted(in_steps + in_unfixed) == sorted((x.vulnerability_id, x.package) for x in findings)
    assert p.total == len(findings)


@pytest.mark.parametrize(
    ("raw", "manager"),
    [
        ({"packageManager": "OS"}, "OS"),
        ({"packageManager": "PIP"}, "PIP"),
        ({}, ""),
        ({"packageManager": None}, ""),
    ],
)
def test_inspector_package_manager_is_parsed(raw: dict[str, object], manager: str) -> None:
    """The plan's OS-or-language split reads Inspector's vulnerablePackages[].packageManager."""
    from ecs_scan_operator.adapters.ecr import parse_enhanced_finding

    pkg = {"name": "openssl", "version": "3.0.11", **raw}
    finding = parse_enhanced_finding(
        {
            "severity": "HIGH",
            "packageVulnerabilityDetails": {"vulnerabilityId": "CVE-1", "vulnerablePackages": [pkg]},
        }
    )
    assert finding.package_manager == manager
