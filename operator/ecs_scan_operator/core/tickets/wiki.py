"""The ticket text in Jira wiki markup (REST v2, accepted by Cloud and Data Center). Pure.

Everything from outside (image names, package names, finding text) is escaped; only http and
https URLs become links (`core.links.safe_url`), any other URL is dropped, because a `file:` or
`javascript:` link in a ticket is something a person might click. Text stays within Jira's
32,767-character field limit by summarizing and pointing to the full report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from urllib.parse import quote

from ecs_scan_operator.core.links import safe_url
from ecs_scan_operator.core.model import Finding, Severity
from ecs_scan_operator.core.priority import signal_cells
from ecs_scan_operator.core.remediation import RemediationPlan, plan
from ecs_scan_operator.core.tickets.findings import GroupFindings
from ecs_scan_operator.core.tickets.grouping import Group
from ecs_scan_operator.core.tickets.identity import image_slot
from ecs_scan_operator.core.tickets.model import TicketRequest
from ecs_scan_operator.core.tickets.property import FindingRow, TicketProperty

#: Jira's limit for a text area (description, comment body).
TEXT_LIMIT = 32_767
#: What we aim for: some room below the limit for Jira's own counting (line endings, entities).
TEXT_BUDGET = 32_000
SUMMARY_LIMIT = 255
LIST_IN_COMMENT = 50
#: Upgrade steps and unfixed findings the ticket's remediation plan lists before "see the report".
PLAN_STEPS = 10
PLAN_UNFIXED = 10

# The same report and advisory URLs recur in every ticket of a run; checking each once is enough.
_safe_url = lru_cache(maxsize=1024)(safe_url)

_WIKI_SPECIAL = re.compile(r"([\\|\[\]{}*_^~+!#])")
#: Characters left as they are in a link's URL; everything else (`|`, `[`, `]`, `{`...) is encoded.
_URL_SAFE = ":/?&=%#@+,;~*'()$!._-"


def esc(text: str) -> str:
    """Text safe inside Jira wiki markup: special characters escaped, one line."""
    return _WIKI_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def cell(text: str, limit: int = 200) -> str:
    """A table cell: escaped, bounded, never empty."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return esc(text) or " "


def link(text: str, url: str | None) -> str:
    """`[text|url]` for an http/https URL; the bare text otherwise (the URL is dropped)."""
    usable = _safe_url(url)
    if usable is None:
        return esc(text)
    # Percent-encoding takes `|`, `[`, `]` and `{}` out of the URL, so it cannot end the link early.
    return f"[{esc(text)}|{quote(usable, safe=_URL_SAFE)}]"


def advisory_url(f: Finding | FindingRow) -> str:
    """Where to read about a vulnerability: the finding's own link, else NVD or GitHub advisories."""
    own = _safe_url(f.url) if isinstance(f, Finding) else None
    vid = f.vulnerability_id
    if own:
        return own
    if vid.upper().startswith("CVE-"):
        return f"https://nvd.nist.gov/vuln/detail/{vid}"
    if vid.upper().startswith("GHSA-"):
        return f"https://github.com/advisories/{vid}"
    return ""


def counts_text(counts: Mapping[Severity, int]) -> str:
    """`2 CRITICAL, 3 HIGH`, or "no open findings"."""
    return ", ".join(f"{n} {s.value}" for s, n in counts.items()) or "no open findings"


def render_summary(group: Group, gf: GroupFindings) -> str:
    """`[ecs-scan] repository: 2 CRITICAL, 3 HIGH`, within Jira's 255 characters."""
    tail = f": {counts_text(gf.counts())}"
    head = "[ecs-scan] "
    room = SUMMARY_LIMIT - len(head) - len(tail)
    title = group.title if len(group.title) <= room else group.title[: room - 1] + "…"
    return f"{head}{title}{tail}"


@dataclass(frozen=True)
class _Caps:
    rows: int
    images: int
    uses: int
    steps: int = PLAN_STEPS


def render_description(
    request: TicketRequest,
    group: Group,
    gf: GroupFindings,
    *,
    note: str | None = None,
    budget: int = TEXT_BUDGET,
) -> str:
    """The ticket description in wiki markup, summarized past `budget` characters."""
    n_uses = sum(len(i.uses) for i in group.images)
    caps = _Caps(rows=len(gf.rows), images=len(group.images), uses=n_uses)
    remedy = group_plan(group)
    text = _description(request, group, gf, caps, note, remedy)
    # Too long: halve the findings table first (most severe rows stay), then images and uses,
    # then the plan (its most urgent steps stay).
    while len(text) > budget and (caps.rows > 10 or caps.images > 5 or caps.uses > 20 or caps.steps > 3):
        if caps.rows > 10:
            caps = replace(caps, rows=max(10, caps.rows // 2))
        elif caps.images > 5 or caps.uses > 20:
            caps = replace(caps, images=max(5, caps.images // 2), uses=max(20, caps.uses // 2))
        else:
            caps = replace(caps, steps=3)
        text = _description(request, group, gf, caps, note, remedy)
    if len(text) > budget:
        # Only pathological inputs get here (huge names); keep the head and say where the rest is.
        pointer = (
            f"\n\n_Description cut at {budget} characters. Full report: {link('index', request.index_link)}_"
        )
        text = text[: budget - len(pointer)] + pointer
    return text


def _description(
    request: TicketRequest,
    group: Group,
    gf: GroupFindings,
    caps: _Caps,
    note: str | None,
    remedy: RemediationPlan,
) -> str:
    lines = [
        *_redeploy_banner(group, caps),
        *_intro(request, group, gf, note),
        *_remediation(remedy, caps),
        *_images(group, gf, caps),
        *_runtime(group, caps),
        *_uses(group, caps),
        *_findings(request, gf, caps),
        *_reports(request, group, caps),
        "_Filed by ecs-scan-operator. The labels starting with ecsscan- keep this ticket unique: "
        "please keep them._",
    ]
    return "\n".join(lines)


def _priority_line(gf: GroupFindings) -> str:
    """`*Priority: P1* (2 known-exploited, 1 with a public exploit, 3 overdue; due 2026-12-01)`."""
    found = list(gf.details.values())
    prio = gf.priority
    parts = []
    kev = sum(1 for f in found if f.signals.kev is True)
    exploit = sum(1 for f in found if f.signals.exploit_available is True)
    overdue = sum(1 for f in found if f.assessment.overdue)
    if kev:
        parts.append(f"{kev} known-exploited (CISA KEV)")
    if exploit:
        parts.append(f"{exploit} with a public exploit")
    if overdue:
        parts.append(f"{overdue} overdue")
    due = gf.earliest_due
    tail = f"; due {due.isoformat()}" if due else ""
    detail = f" ({', '.join(parts)}{tail})" if parts else (f" (due {due.isoformat()})" if due else "")
    return f"*Priority: {prio.value if prio else 'unknown'}*{detail}. See docs/prioritisation.md."


def _intro(request: TicketRequest, group: Group, gf: GroupFindings, note: str | None) -> list[str]:
    threshold = request.spec.severity_threshold
    where = "image" if len(group.images) == 1 else "images"
    scope = "matching the policy's actOn rules" if request.spec.act_on else f"at or above *{threshold}*"
    lines = [
        f"Amazon Inspector / ECR found vulnerabilities {scope} in the container "
        f"{where} of repository {{{{{esc(group.title)}}}}} used by Amazon ECS task definitions.",
        f"Policy {{{{{esc(request.policy.key)}}}}}, route {{{{{esc(group.route.name)}}}}}, "
        f"run {{{{{esc(request.run_id)}}}}} at {request.now.strftime('%Y-%m-%d %H:%M UTC')}.",
    ]
    if note:
        lines.append(note)
    lines.append(_priority_line(gf))
    fams = sorted({u.family for img in group.images for u in img.uses})
    users = (
        ", ".join(esc(f) for f in fams[:10]) + (" and more" if len(fams) > 10 else "")
        if fams
        else "its users"
    )
    lines += [
        "",
        "h3. What to do",
        f"# Rebuild {{{{{esc(group.title)}}}}} on a patched base image, or upgrade the packages below "
        "to their fixed versions.",
        f"# Push the image and roll out a new task-definition revision for {users}.",
        f"# The next scan updates this ticket, and closes it when nothing {scope.replace('*', '')} "
        "is left in images Inspector still covers"
        + (", and no running task uses an affected digest." if _has_runtime(group) else "."),
        "",
    ]
    return lines


def _has_runtime(group: Group) -> bool:
    """Some image has a running view (not only Inspector's in-use figures)."""
    return any(i.runtime is not None and i.runtime.running_digests for i in group.images)


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at is not None else "-"


def _names(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _redeploy_lines(group: Group, limit: int) -> list[str]:
    """One bullet per image whose affected digest still runs under a tag that moved on."""
    todo = [i for i in group.images if i.redeploy_needed]
    lines = []
    for img in todo[:limit]:
        rt = img.runtime
        running = img.digest or img.ref.digest or "?"
        where = ""
        if rt is not None and (rt.services or rt.clusters):
            where = f" in {rt.running_tasks} running tasks" if rt.running_tasks else ""
            where += f" of services {esc(_names(rt.services))}" if rt.services else ""
            where += f" (clusters {esc(_names(rt.clusters))})" if rt.clusters else ""
        tag_digest = rt.tag_digest if rt is not None else None
        tag_now = f" now points at {{{{{esc(tag_digest)}}}}}" if tag_digest else " moved"
        lines.append(
            f"* {{{{{esc(img.ref.display)}}}}}: {{{{{esc(running)}}}}} still runs{where}; the tag{tag_now}."
        )
    if len(todo) > limit:
        lines.append(f"_…and {len(todo) - limit} more images; see the report._")
    return lines


def _redeploy_banner(group: Group, caps: _Caps) -> list[str]:
    if not any(i.redeploy_needed for i in group.images):
        return []
    return [
        "*Redeploy needed:* the tag already points at a digest without these findings, but running "
        "tasks still use the affected digest. Force a new deployment of the services (or replace the "
        "tasks) so they run the current digest; this ticket stays open until no running task uses "
        "an affected digest.",
        *_redeploy_lines(group, caps.images),
        "",
    ]


def _runtime(group: Group, caps: _Caps) -> list[str]:
    """Where each image runs (the running view): clusters, services, tasks, since when."""
    running = [i for i in group.images if i.runtime is not None]
    if not running:
        return []
    lines = [
        "h3. Where it runs",
        "||Image||Digest running||Clusters||Services||Running tasks||First seen running"
        "||Last seen running||Inspector inUseCount||Inspector lastInUseAt||",
    ]
    at_risk: list[str] = []
    for img in running[: caps.images]:
        rt = img.runtime
        assert rt is not None  # filtered above
        digests = ", ".join(rt.running_digests) or img.digest or img.ref.digest or "-"
        in_use = "-" if rt.in_use_count is None else str(rt.in_use_count)
        lines.append(
            f"|{cell(img.ref.display)}|{cell(digests)}|{cell(_names(rt.clusters) or '-')}"
            f"|{cell(_names(rt.services) or '-')}|{rt.running_tasks}|{cell(_when(rt.first_seen_running))}"
            f"|{cell(_when(rt.last_seen_running))}|{cell(in_use)}|{cell(_when(rt.last_in_use_at))}|"
        )
        if rt.coverage_at_risk:
            at_risk.append(img.ref.display)
    if len(running) > caps.images:
        lines.append(f"_…and {len(running) - caps.images} more images; see the report._")
    if at_risk:
        lines.append(
            f"_Coverage at risk: {esc(_names(at_risk))} ran longer than Amazon Inspector's rescan window "
            "(ecrConfiguration rescan duration); Inspector no longer re-scans it, so its findings may "
            "be stale._"
        )
    lines.append("")
    return lines


def group_plan(group: Group) -> RemediationPlan:
    """The remediation plan over the findings read this run (carried-over findings have no versions)."""
    return plan((img.ref.display, f) for img in group.images if img in group.known for f in img.findings)


def _remediation(remedy: RemediationPlan, caps: _Caps) -> list[str]:
    """The plan's section: the most urgent upgrades first, the findings no upgrade fixes, the hint."""
    if remedy.empty or (not remedy.steps and not any(f.signals.fix_available for f in remedy.unfixed)):
        return []  # nothing to say: no upgrade known, and the scan says nothing of fixes (BASIC)
    lines = ["h3. Remediation plan"]
    if remedy.hint:
        lines.append(f"_{esc(remedy.hint)}_")
    # A numbered list: each step's package and versions are scanner data, escaped and bounded.
    lines += [f"# {cell(step.text, 300)}" for step in remedy.steps[: caps.steps]]
    if len(remedy.steps) > caps.steps:
        lines.append(f"_…and {len(remedy.steps) - caps.steps} more upgrades; see the image reports._")
    if remedy.unfixed:
        shown = ", ".join(
            cell(f"{f.vulnerability_id} ({f.package or '?'}, {f.severity.value})", 120)
            for f in remedy.unfixed[:PLAN_UNFIXED]
        )
        more = f" and {len(remedy.unfixed) - PLAN_UNFIXED} more" if len(remedy.unfixed) > PLAN_UNFIXED else ""
        lines.append(f"No fixed version known for {len(remedy.unfixed)}: {shown}{more}.")
    lines.append("")
    return lines


def _images(group: Group, gf: GroupFindings, caps: _Caps) -> list[str]:
    lines = ["h3. Images", "||Image||Tag||Digest||Scan||Findings||"]
    for img in group.images[: caps.images]:
        n = len(gf.slots.get(image_slot(img.ref.raw), ()))
        status = img.status.value if img in group.known else f"{img.status.value} (last known findings kept)"
        digest = img.digest or img.ref.digest or ""
        lines.append(
            f"|{cell(img.ref.repository)}|{cell(img.ref.tag or '')}|{cell(digest)}|{cell(status)}|{n}|"
        )
    if len(group.images) > caps.images:
        lines.append(f"_…and {len(group.images) - caps.images} more images; see the report._")
    lines.append("")
    return lines


def _uses(group: Group, caps: _Caps) -> list[str]:
    lines = ["h3. Used by", "||Family||Container||Image||"]
    uses = sorted({(u.family, u.container, img.ref.display) for img in group.images for u in img.uses})
    lines += [f"|{cell(fam)}|{cell(container)}|{cell(disp)}|" for fam, container, disp in uses[: caps.uses]]
    if len(uses) > caps.uses:
        lines.append(f"_…and {len(uses) - caps.uses} more; see the report._")
    lines.append("")
    return lines


def _findings(request: TicketRequest, gf: GroupFindings, caps: _Caps) -> list[str]:
    scope = "to act on" if request.spec.act_on else f"at or above {request.spec.severity_threshold}"
    lines = [f"h3. Findings {scope} ({len(gf.rows)})"]
    if not gf.rows:
        return [*lines, "None.", ""]
    lines.append("||ID||Severity||Priority||Package||Installed → Fixed||EPSS||Exploit||KEV||Due||Images||")
    for row in gf.rows[: caps.rows]:
        f = gf.details.get(row.ident)
        fixed = (f.fixed_version if f else "") or ("not yet" if f else "?")
        installed = (f.installed_version if f else "") or "?"
        sev = row.severity.value + (" (last known)" if row.ident in gf.carried else "")
        images = cell(", ".join(gf.where.get(row.ident, ())), 300)
        vid = link(row.vulnerability_id, advisory_url(f or row))
        sig = signal_cells(f) if f else dict.fromkeys(("priority", "epss", "exploitAvailable", "kev"), "?")
        kev = sig["kev"] + (f" (CISA due {sig['kevDateDue']})" if f and sig.get("kevDateDue") else "")
        due = cell(sig.get("due", "") or "-") + (" *overdue*" if f and f.assessment.overdue else "")
        lines.append(
            f"|{vid}|{cell(sev)}|{cell(sig['priority'])}|{cell(row.package or '-')}|"
            f"{cell(installed)} → {cell(fixed)}|{cell(sig['epss'])}|{cell(sig['exploitAvailable'])}|"
            f"{cell(kev)}|{due}|{images}|"
        )
    if len(gf.rows) > caps.rows:
        lines.append(
            f"_Showing the {caps.rows} most severe of {len(gf.rows)} findings; the full list is in the "
            f"report ({link('run index', request.index_link)})._"
        )
    lines.append("")
    return lines


def _reports(request: TicketRequest, group: Group, caps: _Caps) -> list[str]:
    lines = ["h3. Reports"]
    for img in group.images[: caps.images]:
        url = request.report_links.get(img.ref.display, "")
        if url:
            lines.append(f"* Image report {esc(img.ref.display)}: {link('open', url)}")
    if request.index_link:
        lines.append(f"* Run index: {link('index.html', request.index_link)}")
    if request.run_log_link:
        lines.append(f"* Run log: {link('run.log.jsonl', request.run_log_link)}")
    if request.links_expire is not None:
        lines.append(f"_Report links are presigned and expire at {request.links_expire.isoformat()}._")
    lines.append("")
    return lines


def _bounded(lines: Sequence[str]) -> str:
    text = "\n".join(lines)
    if len(text) <= TEXT_BUDGET:
        return text
    return text[: TEXT_BUDGET - 40] + "\n_…cut; see the report._"


def row_list(rows: Sequence[FindingRow]) -> str:
    """`CVE-1 (HIGH, openssl), …` for a comment: at most LIST_IN_COMMENT, then "and N more"."""
    shown = [esc(r.label()) for r in rows[:LIST_IN_COMMENT]]
    more = f" and {len(rows) - LIST_IN_COMMENT} more" if len(rows) > LIST_IN_COMMENT else ""
    return ", ".join(shown) + more


def render_change_comment(
    request: TicketRequest, gf: GroupFindings, prev: TicketProperty | None, *, headline: str = ""
) -> str:
    """One comment: new, fixed and re-rated findings since the ticket was last written."""
    before = {r.ident: r for r in prev.findings} if prev else {}
    now = {r.ident: r for r in gf.rows}
    new = [r for k, r in now.items() if k not in before]
    fixed = [r for k, r in before.items() if k not in now]
    rerated = [r for k, r in now.items() if k in before and before[k].severity is not r.severity]
    lines = [headline or f"Scan {esc(request.run_id)} found changes."]
    if new:
        lines.append(f"*New ({len(new)}):* {row_list(new)}")
    if fixed:
        lines.append(f"*Fixed ({len(fixed)}):* {row_list(fixed)}")
    if rerated:
        lines.append(f"*Severity changed ({len(rerated)}):* {row_list(rerated)}")
    if prev is not None and prev.truncated:
        lines.append("_The previous list was too long to keep in full; this comparison is approximate._")
    if not (new or fixed or rerated):
        lines.append("The images or their uses changed; the description is up to date.")
    lines.append(f"Now: {counts_text(gf.counts())}. Report: {link('run index', request.index_link)}")
    return _bounded(lines)


def render_redeploy_comment(
    request: TicketRequest, group: Group, gf: GroupFindings, prev: TicketProperty | None
) -> str:
    """The one comment the first run that sees "redeploy needed" adds (with any finding changes)."""
    headline = (
        f"Scan {esc(request.run_id)}: redeploy needed. The tag already points at a digest without "
        "these findings, but running tasks still use the affected digest; the ticket stays open "
        "until they are replaced."
    )
    if prev is not None and prev.fp != gf.fp:
        headline = render_change_comment(request, gf, prev, headline=headline)
    return _bounded([headline, *_redeploy_lines(group, 5)])
