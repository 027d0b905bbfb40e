"""What each notification destination is told after a run, and the message for it. Pure.

Rules:

* A destination hears about the actionable findings (at or above the policy's threshold, not
  suppressed) of the images its filter takes (routes, families, accounts), at or above its
  minPriority when it sets one and the finding has a priority, else at or above its minSeverity.
  Findings without a severity rank below every level.
* Events come from comparing those findings with what the destination was last told (its memory,
  kept in the state object, one entry per image and finding: open or fixed):
  ``new`` a finding it was never told about; ``reopened`` one it was told is fixed;
  ``fixed`` one it was told about that is gone from an image scanned in this run (an image that
  failed to scan says nothing; an image no longer deployed is forgotten, not "fixed");
  ``runFailed`` the run ended PartialFailure (a run that could not start never gets here).
  ``redeployNeeded`` an image whose affected digest still runs while its tag already points at a
  digest without the findings (the running view, issue #12), with a finding at or above
  minSeverity: once per image and digest, remembered as long as the image is in the fleet.
  ``overdue`` a finding past its due date (core/priority.py: spec.dueDays, CISA's dateDue), told
  once: the memory marks it (``d``, open and told overdue) until it is fixed or no longer overdue.
* The first run that sees a destination (or the policy's first run) takes the findings of that
  moment as known: no flood of "new" for what already existed.
* One message per destination per run, only when an event it listens to happened. The memory is
  replaced by the new one only when the message went out (the caller decides), so a failed send is
  retried by the next run, and a sent event is never sent again.
* Messages are bounded: Slack Block Kit (at most 50 blocks, 3,000 characters a text, 150 a header),
  Teams Adaptive Card (at most ~28 KB), webhook JSON (the same top-N list). They carry counts by
  severity, the top N new or reopened findings (severity, CVE, package, image, families), the
  fixed ones counted, Jira keys when the ticket sync reported them, the report link; never a secret
  (nothing from the Secret is known here) and never an error message (it could quote a response).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ecs_scan_operator.core.model import SEVERITY_ORDER, ImageResult, ImageStatus, Severity
from ecs_scan_operator.core.policy import NotifyDestination, NotifyEvent, NotifyType, PolicyRef, PolicySpec
from ecs_scan_operator.core.result import Outcome, RunResult
from ecs_scan_operator.core.tickets import route_for

OPEN, FIXED, TOLD, OVERDUE_TOLD = "o", "f", "r", "d"  # TOLD: heard "redeploy needed" for the digest
SEP = "\x1f"  # between image and finding id in a memory key (neither can contain it)
REDEPLOY_MARK = "\x1eredeploy "  # stands for the finding id in a redeploy memory key, + the digest
MAX_MEMORY = 20_000  # entries per destination; fixed ones are dropped first beyond it

SLACK_MAX_BLOCKS = 50
SLACK_MAX_TEXT = 3000
SLACK_MAX_HEADER = 150
TEAMS_MAX_BYTES = 28_000
FIELD_MAX = 300  # one finding's title, package, image in a message
MAX_FAMILIES = 3
MAX_JIRA_KEYS = 20

Memory = dict[str, str]


@dataclass(frozen=True)
class FindingLine:
    """One finding named in a message."""

    event: NotifyEvent
    severity: Severity
    vulnerability_id: str
    package: str
    image: str
    families: tuple[str, ...]
    title: str = ""
    url: str = ""


@dataclass(frozen=True)
class RedeployLine:
    """One image whose affected digest still runs after its tag moved to a clean digest."""

    image: str
    digest: str
    tag_digest: str
    services: tuple[str, ...]
    clusters: tuple[str, ...]
    running_tasks: int
    severity: Severity  # its worst finding

    def text(self) -> str:
        """`repo:tag@sha… runs in 3 tasks of services a, b; the tag now points at sha…`."""
        where = f" in {self.running_tasks} tasks" if self.running_tasks else ""
        where += f" of services {', '.join(self.services[:MAX_FAMILIES])}" if self.services else ""
        tag = f"; the tag now points at {self.tag_digest}" if self.tag_digest else ""
        return clip(f"{self.image} still runs{where}{tag}", FIELD_MAX)


def _redeploys(
    chosen: Sequence[ImageResult], dest: NotifyDestination, memory: Memory, *, announce: bool
) -> list[RedeployLine]:
    """Images newly needing a redeploy for this destination; each is remembered in `memory`."""
    out = []
    for img in chosen:
        worst = [f.severity for f in img.findings if dest.sends(f.severity, f.assessment.priority)]
        if not (img.redeploy_needed and worst):
            continue
        key = _key(img.ref.display, REDEPLOY_MARK + (img.digest or img.ref.digest or ""))
        if key not in memory and announce:
            rt = img.runtime
            out.append(
                RedeployLine(
                    image=img.ref.display,
                    digest=img.digest or img.ref.digest or "",
                    tag_digest=(rt.tag_digest or "") if rt else "",
                    services=rt.services if rt else (),
                    clusters=rt.clusters if rt else (),
                    running_tasks=rt.running_tasks if rt else 0,
                    severity=min(worst, key=SEVERITY_ORDER.index),
                )
            )
        memory[key] = TOLD
    return sorted(out, key=lambda r: (SEVERITY_ORDER.index(r.severity), r.image))


@dataclass
class Outgoing:
    """What the run does for one destination: maybe a message, and the memory to keep if it is sent."""

    destination: NotifyDestination
    memory: Memory
    payload: dict[str, Any] | None = None  # None: nothing to send (the memory is kept anyway)
    events: dict[str, int] = field(default_factory=dict)  # event -> count


@dataclass(frozen=True)
class RunContext:
    """What the messages say about the run."""

    policy: PolicyRef
    run_id: str
    report_link: str = ""
    jira_keys: tuple[str, ...] = ()


def _key(image: str, finding_id: str) -> str:
    return f"{image}{SEP}{finding_id}"


def _image_of(key: str) -> str:
    return key.split(SEP, 1)[0]


def _finding_id(vulnerability_id: str, package: str) -> str:
    return f"{vulnerability_id} {package}" if package else vulnerability_id


def _takes(dest: NotifyDestination, spec: PolicySpec) -> Callable[[ImageResult], bool]:
    routes = set(dest.filter.routes)
    families = list(dest.filter.families)
    accounts = list(dest.filter.accounts)

    def takes(img: ImageResult) -> bool:
        if families and not any(fnmatch.fnmatchcase(u.family, g) for u in img.uses for g in families):
            return False
        if accounts and not any(
            u.account and fnmatch.fnmatchcase(u.account, g) for u in img.uses for g in accounts
        ):
            return False
        if routes:
            route = route_for(img, spec.jira).name if spec.jira is not None else "default"
            if route not in routes:
                return False
        return True

    return takes


def _line(event: NotifyEvent, img: ImageResult, finding_index: Mapping[str, Any], key: str) -> FindingLine:
    f = finding_index[key]
    return FindingLine(
        event=event,
        severity=f.severity,
        vulnerability_id=f.vulnerability_id,
        package=f.package,
        image=img.ref.display,
        families=tuple(sorted({u.family for u in img.uses}))[:MAX_FAMILIES],
        title=f.title,
        url=f.url,
    )


def _order(line: FindingLine) -> tuple[int, str, str]:
    return (SEVERITY_ORDER.index(line.severity), line.vulnerability_id, line.image)


def _bounded(memory: Memory) -> Memory:
    if len(memory) <= MAX_MEMORY:
        return memory
    keep = sorted(memory, key=lambda k: (memory[k] == FIXED, k))[:MAX_MEMORY]
    return {k: memory[k] for k in keep}


def _compare(
    memory: Memory, present: Mapping[str, Any], by_display: Mapping[str, ImageResult], scanned: set[str]
) -> list[FindingLine]:
    """The events since the memory (updated in place): new, reopened, overdue, fixed."""
    lines: list[FindingLine] = []
    for key, f in present.items():
        state = memory.get(key)
        img = by_display[_image_of(key)]
        if state is None:
            lines.append(_line(NotifyEvent.NEW, img, present, key))
        elif state == FIXED:
            lines.append(_line(NotifyEvent.REOPENED, img, present, key))
        overdue = f.assessment.overdue
        if overdue and state != OVERDUE_TOLD:
            lines.append(_line(NotifyEvent.OVERDUE, img, present, key))
        memory[key] = OVERDUE_TOLD if overdue else OPEN
    for key, state in list(memory.items()):
        if state in (OPEN, OVERDUE_TOLD) and key not in present and _image_of(key) in scanned:
            image, _, finding = key.partition(SEP)
            vuln, _, package = finding.partition(" ")
            lines.append(
                FindingLine(
                    event=NotifyEvent.FIXED,
                    severity=Severity.UNTRIAGED,  # its severity is not kept once gone
                    vulnerability_id=vuln,
                    package=package,
                    image=image,
                    families=tuple(sorted({u.family for u in by_display[image].uses}))[:MAX_FAMILIES],
                )
            )
            memory[key] = FIXED
    return lines


def plan_notifications(
    spec: PolicySpec,
    images: Sequence[ImageResult],
    result: RunResult,
    memories: Mapping[str, Memory],
    context: RunContext,
    *,
    first_run: bool,
) -> list[Outgoing]:
    """The events and the message for each destination of spec.notify."""
    out = []
    for dest in spec.notify:
        takes = _takes(dest, spec)
        chosen = [img for img in images if takes(img)]
        by_display = {img.ref.display: img for img in chosen}
        present: dict[str, Any] = {}
        counts = {s.value: 0 for s in SEVERITY_ORDER}
        for img in chosen:
            for f in img.findings:
                if dest.sends(f.severity, f.assessment.priority):
                    present[_key(img.ref.display, _finding_id(f.vulnerability_id, f.package))] = f
                    counts[f.severity.value] += 1
        old = memories.get(dest.name)
        lines: list[FindingLine] = []
        if old is None or first_run:
            memory = {k: OVERDUE_TOLD if f.assessment.overdue else OPEN for k, f in present.items()}
        else:
            scanned = {d for d, img in by_display.items() if img.status is ImageStatus.SCANNED}
            # Images gone from the fleet (or from the filter) are forgotten, not "fixed".
            memory = {k: v for k, v in old.items() if _image_of(k) in by_display}
            lines = _compare(memory, present, by_display, scanned)
        wanted = set(dest.events)
        # Remembered even when not listened to: turning the event on later does not flood.
        announce = not (old is None or first_run) and NotifyEvent.REDEPLOY_NEEDED in wanted
        redeploys = _redeploys(chosen, dest, memory, announce=announce)
        lines = sorted((ln for ln in lines if ln.event in wanted), key=_order)
        events = {e.value: sum(1 for ln in lines if ln.event is e) for e in NotifyEvent}
        events[NotifyEvent.REDEPLOY_NEEDED.value] = len(redeploys)
        run_failed = NotifyEvent.RUN_FAILED in wanted and run_outcome(result) is not Outcome.SUCCEEDED
        events[NotifyEvent.RUN_FAILED.value] = int(run_failed)
        events = {k: v for k, v in events.items() if v}
        payload = None
        if events:
            message = Message(dest, context, result, counts, lines, events, redeploys)
            payload = RENDERERS[dest.type](message)
        out.append(Outgoing(dest, _bounded(memory), payload, events))
    return out


def run_outcome(result: RunResult) -> Outcome:
    """The outcome so far (the pipeline may record failures after it first set the outcome)."""
    if result.outcome is Outcome.FAILED:
        return Outcome.FAILED
    if result.stage_failures or result.errors_total or result.outcome is Outcome.PARTIAL:
        return Outcome.PARTIAL
    return Outcome.SUCCEEDED


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Message:
    """Everything a message says, before the platform's format."""

    destination: NotifyDestination
    context: RunContext
    result: RunResult
    counts: Mapping[str, int]  # current findings at or above minSeverity, by severity
    lines: Sequence[FindingLine]  # every event's finding, most severe first
    events: Mapping[str, int]
    redeploys: Sequence[RedeployLine] = ()  # redeployNeeded, most severe first

    @property
    def redeploys_named(self) -> list[RedeployLine]:
        """The redeploy-needed images named, the top N."""
        return list(self.redeploys[: self.destination.max_findings])

    @property
    def named(self) -> list[FindingLine]:
        """The new and reopened findings named, the top N."""
        opened = [ln for ln in self.lines if ln.event is not NotifyEvent.FIXED]
        return opened[: self.destination.max_findings]

    @property
    def fixed(self) -> list[FindingLine]:
        """The fixed findings named (at most N)."""
        return [ln for ln in self.lines if ln.event is NotifyEvent.FIXED][: self.destination.max_findings]

    def headline(self) -> str:
        """One line: the policy and what happened."""
        words = {
            NotifyEvent.NEW.value: "new",
            NotifyEvent.REOPENED.value: "reopened",
            NotifyEvent.OVERDUE.value: "overdue",
            NotifyEvent.FIXED.value: "fixed",
            NotifyEvent.REDEPLOY_NEEDED.value: "redeploy needed",
        }
        parts = [f"{n} {words[e]}" for e, n in self.events.items() if e in words]
        if self.events.get(NotifyEvent.RUN_FAILED.value):
            parts.append(f"run {run_outcome(self.result).value}")
        return clip(f"ECS scan {self.context.policy.key}: {', '.join(parts)}", SLACK_MAX_HEADER)

    def counts_text(self) -> str:
        """Current findings by severity, e.g. "CRITICAL 2 · HIGH 5"."""
        shown = [f"{sev} {n}" for sev, n in self.counts.items() if n]
        return " · ".join(shown) or "none"

    def failure_text(self) -> str:
        """Which stages failed (names only: error texts may quote a response)."""
        stages = sorted(self.result.stage_failures)
        text = f"The run ended {run_outcome(self.result).value} with {self.result.errors_total} error(s)"
        return text + (f"; failed stages: {', '.join(stages)}" if stages else "")


def clip(text: str, limit: int) -> str:
    """One line of at most `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _more(total: int, shown: int) -> str:
    return f" (and {total - shown} more)" if total > shown else ""


# ---- Slack (Block Kit, mrkdwn)


def slack_escape(text: str) -> str:
    """Make any text inert in Slack mrkdwn: no links, mentions or formatting.

    &, < and > are the control characters of links and mentions (<!channel>, <@U1>, <url|x>);
    the formatting characters get a zero-width space after them, so *x* or `x` stay literal.
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for mark in ("*", "_", "~", "`"):
        text = text.replace(mark, mark + "\u200b")
    return text


def _slack_link(url: str, label: str) -> str:
    safe = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
    return f"<{safe}|{slack_escape(label)}>"


def _label(ln: FindingLine) -> str:
    """What happened to a named finding: new, reopened or overdue."""
    return {NotifyEvent.REOPENED: "reopened", NotifyEvent.OVERDUE: "overdue"}.get(ln.event, "new")


def _finding_text(ln: FindingLine) -> str:
    pkg = f" in {ln.package}" if ln.package else ""
    fams = f" (families: {', '.join(ln.families)})" if ln.families else ""
    title = f" — {ln.title}" if ln.title else ""
    return clip(f"{ln.vulnerability_id}{pkg}{title} · {ln.image}{fams}", FIELD_MAX)


def render_slack(m: Message) -> dict[str, Any]:
    """A Slack incoming-webhook payload (Block Kit), within Slack's limits."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(m.headline(), SLACK_MAX_HEADER)}},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": clip(f"*Findings now (≥ {m.destination.min_severity}):* {m.counts_text()}", 3000),
            },
        },
    ]
    if m.events.get(NotifyEvent.RUN_FAILED.value):
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(m.failure_text())}})
    named = m.named
    for ln in named:
        text = f"*{ln.severity.value}* ({_label(ln)}) {slack_escape(_finding_text(ln))}"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:SLACK_MAX_TEXT]}})
    opened = sum(1 for ln in m.lines if ln.event is not NotifyEvent.FIXED)
    if opened > len(named):
        blocks.append(
            _slack_context(f"{_more(opened, len(named)).strip()} new, reopened or overdue findings")
        )
    fixed = m.fixed
    if fixed:
        total = sum(1 for ln in m.lines if ln.event is NotifyEvent.FIXED)
        items = ", ".join(slack_escape(f"{ln.vulnerability_id} · {ln.image}") for ln in fixed)
        text = clip(f"*Fixed{_more(total, len(fixed))}:* {items}", SLACK_MAX_TEXT)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    redeploys = m.redeploys_named
    if redeploys:
        items = "; ".join(slack_escape(r.text()) for r in redeploys)
        more = _more(len(m.redeploys), len(redeploys))
        text = clip(f"*Redeploy needed{more}:* {items}", SLACK_MAX_TEXT)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    footer = []
    if m.context.jira_keys:
        footer.append("Jira: " + slack_escape(", ".join(m.context.jira_keys[:MAX_JIRA_KEYS])))
    if m.context.report_link:
        footer.append(_slack_link(m.context.report_link, "report"))
    footer.append(slack_escape(f"run {m.context.run_id}"))
    blocks.append(_slack_context(" · ".join(footer), escaped=True))
    if len(blocks) > SLACK_MAX_BLOCKS:  # max_findings <= 40 keeps this from happening; belt and braces
        blocks = [*blocks[: SLACK_MAX_BLOCKS - 1], blocks[-1]]
    return {"text": m.headline(), "blocks": blocks}


def _slack_context(text: str, *, escaped: bool = False) -> dict[str, Any]:
    body = text if escaped else slack_escape(text)
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": body[:SLACK_MAX_TEXT]}]}


# ---- Teams (Adaptive Card in a message)


def teams_escape(text: str) -> str:
    """Make text inert in an Adaptive Card TextBlock (its Markdown subset: links, emphasis, lists).

    Every text is one line (clipped), so list markers matter only at its start.
    """
    out = "".join("\\" + ch if ch in "\\[]()*_`<>" else ch for ch in text)
    return "\\" + out if out[:1] in ("-", "+", "#") or out[:1].isdigit() else out


def render_teams(m: Message) -> dict[str, Any]:
    """A Teams workflow / incoming-webhook payload with one Adaptive Card, within ~28 KB."""
    named = list(m.named)
    fixed = list(m.fixed)
    while True:
        card = _teams_card(m, named, fixed)
        if len(json.dumps(card, ensure_ascii=False).encode()) <= TEAMS_MAX_BYTES or not (named or fixed):
            return card
        # Too big (long titles): name fewer findings; the counts still say how many there are.
        if fixed:
            fixed.pop()
        else:
            named.pop()


def _text_block(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **extra}


def _teams_card(m: Message, named: list[FindingLine], fixed: list[FindingLine]) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        _text_block(teams_escape(m.headline()), size="Medium", weight="Bolder"),
        _text_block(teams_escape(f"Findings now (≥ {m.destination.min_severity}): {m.counts_text()}")),
    ]
    if m.events.get(NotifyEvent.RUN_FAILED.value):
        body.append(_text_block(teams_escape(m.failure_text()), color="Attention"))
    opened = sum(1 for ln in m.lines if ln.event is not NotifyEvent.FIXED)
    if named:
        facts = [
            {
                "title": f"{ln.severity.value} {_label(ln)}",
                "value": teams_escape(_finding_text(ln)),
            }
            for ln in named
        ]
        body.append({"type": "FactSet", "facts": facts})
    if opened > len(named):
        body.append(
            _text_block(
                teams_escape(f"{_more(opened, len(named)).strip()} new, reopened or overdue findings")
            )
        )
    if fixed:
        total = sum(1 for ln in m.lines if ln.event is NotifyEvent.FIXED)
        items = ", ".join(f"{ln.vulnerability_id} · {ln.image}" for ln in fixed)
        body.append(_text_block(teams_escape(clip(f"Fixed{_more(total, len(fixed))}: {items}", 4000))))
    redeploys = m.redeploys_named
    if redeploys:
        items = "; ".join(r.text() for r in redeploys)
        text = clip(f"Redeploy needed{_more(len(m.redeploys), len(redeploys))}: {items}", 4000)
        body.append(_text_block(teams_escape(text), color="Warning"))
    if m.context.jira_keys:
        body.append(_text_block(teams_escape("Jira: " + ", ".join(m.context.jira_keys[:MAX_JIRA_KEYS]))))
    body.append(_text_block(teams_escape(f"run {m.context.run_id}"), isSubtle=True, size="Small"))
    content: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "body": body,
    }
    if m.context.report_link:
        content["actions"] = [
            {"type": "Action.OpenUrl", "title": "Open the report", "url": m.context.report_link}
        ]
    return {
        "type": "message",
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": content}],
    }


# ---- generic webhook (JSON; the adapter signs the body)

WEBHOOK_SCHEMA = "ecsscan.io/notification/v1"


def render_webhook(m: Message) -> dict[str, Any]:
    """The generic webhook's JSON document (the adapter adds the HMAC signature header)."""
    return {
        "schema": WEBHOOK_SCHEMA,
        "policy": {"namespace": m.context.policy.namespace, "name": m.context.policy.name},
        "runId": m.context.run_id,
        "result": run_outcome(m.result).value,
        "destination": m.destination.name,
        "events": dict(m.events),
        "findingsBySeverity": dict(m.counts),
        "findings": [_webhook_line(ln) for ln in [*m.named, *m.fixed]],
        "redeployNeeded": [
            {
                "image": r.image,
                "digest": r.digest,
                "tagDigest": r.tag_digest,
                "severity": r.severity.value,
                "services": list(r.services),
                "clusters": list(r.clusters),
                "runningTasks": r.running_tasks,
            }
            for r in m.redeploys_named
        ],
        "failedStages": sorted(m.result.stage_failures),
        "jiraKeys": list(m.context.jira_keys[:MAX_JIRA_KEYS]),
        "reportUrl": m.context.report_link,
    }


def _webhook_line(ln: FindingLine) -> dict[str, Any]:
    return {
        "event": ln.event.value,
        "severity": ln.severity.value if ln.event is not NotifyEvent.FIXED else None,
        "vulnerabilityId": ln.vulnerability_id,
        "package": ln.package,
        "image": ln.image,
        "families": list(ln.families),
        "title": clip(ln.title, FIELD_MAX),
        "url": ln.url,
    }


RENDERERS: dict[NotifyType, Callable[[Message], dict[str, Any]]] = {
    NotifyType.SLACK: render_slack,
    NotifyType.TEAMS: render_teams,
    NotifyType.WEBHOOK: render_webhook,
}


def jira_keys(planned: Iterable[Mapping[str, str]]) -> tuple[str, ...]:
    """Ticket keys the sync reported (created, reopened, updated), in order, without repeats."""
    keys: dict[str, None] = {}
    for entry in planned:
        key = entry.get("key", "")
        if key and entry.get("action", "") not in ("unchanged", "close", "skip"):
            keys[key] = None
    return tuple(keys)[:MAX_JIRA_KEYS]
