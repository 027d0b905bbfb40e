"""The remediation plan: which upgrades remove which findings, most urgent step first. Pure.

Rules:

- A step is one (package, fixed version): "upgrade openssl from 3.0.11 to 3.0.13: fixes 14
  findings (2 known-exploited, 1 critical)". The findings it fixes are counted once per
  vulnerability id, whatever number of images has it (`images` says where).
- A finding without a fixed version (empty, or Inspector's `NotAvailable`) is in no step: it is
  listed apart, in `unfixed`, because no upgrade removes it today.
- Steps are ordered by what they remove, most urgent first, comparing in turn (more first):
  known-exploited findings (CISA KEV), findings per priority P1, P2, P3, P4, findings with an
  exploit available, findings per severity CRITICAL to INFORMATIONAL, all findings, the highest
  EPSS score; then by package and fixed version (ascending), so equal steps keep one order.
  Unknown signals count as "not known to be" (an unknown KEV status adds nothing), which is why a
  BASIC scan's plan is ordered by severity and size alone.
- Base-image hint: when more than half of the findings whose package manager is known come from
  the operating system's packages (Inspector's `packageManager: OS`), rebuilding on a current base
  image is likely the one step that removes most of them. Findings with an unknown package
  manager (BASIC scanning does not say) are left out of that count; none known, no hint.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ecs_scan_operator.core.model import SEVERITY_ORDER, Finding, Severity

#: Inspector's `packageManager` for operating-system packages (dpkg, rpm, apk).
OS_PACKAGE_MANAGER = "OS"
#: Priorities as the policy names them, most urgent first (docs/prioritisation.md).
PRIORITIES = ("P1", "P2", "P3", "P4")
#: `fixedInVersion` values that mean "no fix".
NO_FIX_VERSIONS = frozenset({"", "notavailable", "none", "n/a"})


def has_fix(f: Finding) -> bool:
    """The finding names a version that fixes it."""
    return f.fixed_version.strip().lower() not in NO_FIX_VERSIONS


@dataclass(frozen=True)
class Step:
    """One upgrade and the findings it removes."""

    package: str
    installed: tuple[str, ...]  # the versions installed now, sorted
    fixed: str
    findings: tuple[Finding, ...]  # one per vulnerability id, most severe first
    images: tuple[str, ...]  # where it applies, sorted

    @property
    def known_exploited(self) -> int:
        """Findings on CISA's KEV list."""
        return sum(1 for f in self.findings if f.signals.kev is True)

    @property
    def exploitable(self) -> int:
        """Findings with a public exploit."""
        return sum(1 for f in self.findings if f.signals.exploit_available is True)

    def count(self, severity: Severity) -> int:
        """Findings of one severity."""
        return sum(1 for f in self.findings if f.severity is severity)

    @property
    def text(self) -> str:
        """`upgrade openssl from 3.0.11 to 3.0.13: fixes 14 findings (2 known-exploited, 1 critical)`."""
        n = len(self.findings)
        frm = f" from {', '.join(self.installed)}" if self.installed else ""
        where = f" in {len(self.images)} images" if len(self.images) > 1 else ""
        return (
            f"upgrade {self.package or 'the package'}{frm} to {self.fixed}: fixes {n} "
            f"finding{'s' if n != 1 else ''}{where} ({self.known_exploited} known-exploited, "
            f"{self.count(Severity.CRITICAL)} critical)"
        )

    def urgency(self) -> tuple[float, ...]:
        """What the step removes, as the ordering compares it (larger is more urgent)."""
        priorities = [sum(1 for f in self.findings if f.assessment.priority == p) for p in PRIORITIES]
        epss = max((f.signals.epss for f in self.findings if f.signals.epss is not None), default=-1.0)
        return (
            self.known_exploited,
            *priorities,
            self.exploitable,
            *[self.count(s) for s in SEVERITY_ORDER],
            len(self.findings),
            epss,
        )


@dataclass(frozen=True)
class RemediationPlan:
    """The steps in order, the findings no upgrade fixes, and whether a base-image rebuild is the lever."""

    steps: tuple[Step, ...]
    unfixed: tuple[Finding, ...]  # one per (vulnerability id, package), most severe first
    os_findings: int  # findings from OS packages (package manager known)
    known_manager: int  # findings whose package manager is known
    total: int  # distinct (vulnerability id, package) across fixed and unfixed

    @property
    def base_image_hint(self) -> bool:
        """Most findings (of those whose package manager is known) are in OS packages."""
        return self.known_manager > 0 and 2 * self.os_findings > self.known_manager

    @property
    def hint(self) -> str:
        """The base-image hint for people, or ""."""
        if not self.base_image_hint:
            return ""
        return (
            f"{self.os_findings} of {self.known_manager} findings are in operating-system packages: "
            "rebuilding on a current base image (a newer tag of the FROM image) likely removes most "
            "of them at once."
        )

    @property
    def empty(self) -> bool:
        """Nothing to plan."""
        return not self.steps and not self.unfixed


def _finding_order(f: Finding) -> tuple[int, str, str]:
    return (f.severity.position, f.vulnerability_id, f.package)


def plan(findings: Iterable[tuple[str, Finding]]) -> RemediationPlan:
    """The plan for `(image, finding)` pairs: one image's findings, or a ticket's across its images."""
    steps: dict[tuple[str, str], dict[str, Finding]] = {}
    installed: dict[tuple[str, str], set[str]] = {}
    images: dict[tuple[str, str], set[str]] = {}
    unfixed: dict[tuple[str, str], Finding] = {}
    managers: dict[tuple[str, str], str] = {}
    for image, f in findings:
        ident = (f.vulnerability_id, f.package)
        if f.package_manager:
            managers[ident] = f.package_manager
        else:
            managers.setdefault(ident, "")
        if not has_fix(f):
            unfixed[ident] = _worse(unfixed.get(ident), f)
            continue
        key = (f.package, f.fixed_version.strip())
        found = steps.setdefault(key, {})
        found[f.vulnerability_id] = _worse(found.get(f.vulnerability_id), f)
        if f.installed_version:
            installed.setdefault(key, set()).add(f.installed_version)
        images.setdefault(key, set()).add(image)
    built = [
        Step(
            package=pkg,
            installed=tuple(sorted(installed.get((pkg, fixed), ()))),
            fixed=fixed,
            findings=tuple(sorted(found.values(), key=_finding_order)),
            images=tuple(sorted(images[(pkg, fixed)])),
        )
        for (pkg, fixed), found in steps.items()
    ]
    built.sort(key=lambda s: (tuple(-x for x in s.urgency()), s.package, s.fixed))
    # A finding fixed in one image but not another (different base) counts as fixable.
    idents = set(managers)
    fixable = {(f.vulnerability_id, f.package) for s in built for f in s.findings}
    known = [m for m in managers.values() if m]
    return RemediationPlan(
        steps=tuple(built),
        unfixed=tuple(sorted((f for k, f in unfixed.items() if k not in fixable), key=_finding_order)),
        os_findings=sum(1 for m in known if m.upper() == OS_PACKAGE_MANAGER),
        known_manager=len(known),
        total=len(idents),
    )


def _worse(old: Finding | None, new: Finding) -> Finding:
    """Of two records of one vulnerability, the one to show: the more severe (then the first seen)."""
    if old is None or new.severity.position < old.severity.position:
        return new
    return old
