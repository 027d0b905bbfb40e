"""run_policy(): the stages of one scan run, in order, each stage's failure recorded.

ECS task definitions -> images -> digests -> findings -> rules -> S3 report -> Jira -> RunResult.
The CLI, the operator's worker thread and a Kubernetes Job all call this one function, so it
knows nothing of kopf. It blocks; `cancel` is checked between stages and batches.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ecs_scan_operator.concurrency import batched, parallel_map
from ecs_scan_operator.core.images import parse_image
from ecs_scan_operator.core.keys import run_folder, state_key
from ecs_scan_operator.core.model import (
    ImageRef,
    ImageResult,
    ImageScan,
    ImageStatus,
    ImageUse,
    RefKind,
    ScanState,
)
from ecs_scan_operator.core.notify import RunContext, jira_keys, plan_notifications
from ecs_scan_operator.core.policy import PolicyRef, PolicySpec
from ecs_scan_operator.core.report import ReportObject, image_report_key, render_images, render_index
from ecs_scan_operator.core.result import RunResult, clip
from ecs_scan_operator.core.rules import apply_rules, expired_suppressions, severities_at_or_above
from ecs_scan_operator.core.state import RunState, dump_state, load_state
from ecs_scan_operator.core.tickets import TicketRequest
from ecs_scan_operator.errors import Cancelled, ScanError
from ecs_scan_operator.ports import (
    Clock,
    DigestResolver,
    FindingsSource,
    ImageSource,
    Notifier,
    ReportSink,
    TicketSink,
)

log = logging.getLogger(__name__)
SCAN_BATCH = 200  # images per findings call group; cancel is checked between groups
REPORT_CHUNK = 32  # per-image report objects rendered and stored together

Progress = Callable[[str, int, int], None]  # stage, done, total


@dataclass
class Ports:
    """The adapters one run uses."""

    images: ImageSource
    digests: DigestResolver
    findings: FindingsSource
    reports: ReportSink
    tickets: TicketSink | None = None
    aws_calls: Callable[[], dict[str, int]] | None = None  # calls by service:Operation so far
    aws_errors: Callable[[], dict[str, int]] | None = None  # failed calls by service:Operation so far
    notifier: Notifier | None = None


@dataclass
class _RunLog:
    """The structured run log (run.log.jsonl); also mirrored to the logger."""

    clock: Clock
    run_id: str
    lines: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        line = {
            "time": self.clock.now().isoformat(),
            "runId": self.run_id,
            "level": level,
            "event": event,
            **fields,
        }
        self.lines.append(line)
        log.log(logging.WARNING if level == "warning" else logging.INFO, "%s %s", event, fields)


def new_run_id(now: datetime) -> str:
    """Sortable and unique: time plus a random suffix."""
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("run cancelled")


def _identity(ref: ImageRef) -> tuple[str, ...]:
    """Two spellings of one image are one image (Docker Hub short forms, explicit docker.io)."""
    if ref.kind is RefKind.MALFORMED:
        return ("malformed", ref.raw)
    return (ref.kind.value, ref.registry, ref.repository, ref.tag or "", ref.digest or "")


def collect_images(
    spec: PolicySpec,
    ports: Ports,
    state: RunState,
    result: RunResult,
    rlog: _RunLog,
    cancel: threading.Event | None,
) -> list[ImageResult]:
    """Stage 1-2: task definitions of every region -> unique images with their uses."""
    images: dict[tuple[str, ...], ImageResult] = {}
    for region in spec.aws.all_regions:
        _check(cancel)
        try:
            listing = ports.images.task_definitions(spec.task_definitions, region, state.cache)
        except ScanError as exc:
            result.fail_stage(f"taskDefinitions[{region}]", str(exc))
            rlog("task_definitions_failed", "warning", region=region, error=str(exc))
            continue
        result.families_matched += listing.families_matched
        result.task_definitions += len(listing.task_definitions)
        for err in listing.errors:
            result.record_error(err)
            rlog("task_definition_failed", "warning", region=region, error=clip(err))
        rlog(
            "task_definitions_listed",
            region=region,
            families=listing.families_matched,
            taskDefinitions=len(listing.task_definitions),
        )
        for td in listing.task_definitions:
            for c in td.containers:
                ref = parse_image(c.image)
                img = images.setdefault(_identity(ref), ImageResult(ref=ref))
                img.uses.append(ImageUse(td.family, td.revision, c.name, td.arn, td.region or region))
                img.td_tags.update(td.tags)
    out = sorted(images.values(), key=lambda i: i.ref.raw)
    for img in out:
        if img.ref.kind is RefKind.MALFORMED:
            img.status, img.reason = ImageStatus.UNSCANNABLE, f"malformed reference: {img.ref.reason}"
        elif not img.ref.scannable:
            img.status, img.reason = ImageStatus.UNSCANNABLE, img.ref.reason
    return out


def resolve_digests(
    images: list[ImageResult], spec: PolicySpec, ports: Ports, result: RunResult, rlog: _RunLog
) -> None:
    """Stage 3: tags -> digests; not_found and failures recorded per image."""
    todo = [i for i in images if i.ref.scannable]
    if not todo:
        return
    try:
        resolved = ports.digests.resolve([i.ref for i in todo])
    except ScanError as exc:
        result.fail_stage("digests", str(exc))
        for img in todo:
            img.status, img.reason = ImageStatus.FAILED, clip(str(exc))
        return
    for img in todo:
        res = resolved.get(img.ref)
        if res is None:
            img.status, img.reason = ImageStatus.FAILED, "digest resolution returned nothing"
        elif res.digest is None:
            img.status, img.reason = res.status or ImageStatus.FAILED, res.reason
        else:
            img.digest = res.digest
    if spec.jira is not None and any(r.match.repository_tags for r in spec.jira.routes):
        # Only routing needs repository tags: one call per repository, skipped when no route asks.
        tags = ports.digests.repository_tags([i.ref for i in todo if i.digest])
        for img in todo:
            img.repository_tags = tags.get(
                (img.ref.account or "", img.ref.region or "", img.ref.repository), {}
            )
    failed = sum(1 for i in todo if i.status is ImageStatus.FAILED)
    if failed:
        result.record_error(f"{failed} image(s) failed digest resolution")
    rlog("digests_resolved", images=len(todo), resolved=sum(1 for i in todo if i.digest))


def _apply_scan(img: ImageResult, scan: ImageScan, spec: PolicySpec, today: date) -> set[str]:
    img.scan_type, img.scanned_at = scan.scan_type, scan.scanned_at
    if scan.state is ScanState.COMPLETE:
        outcome = apply_rules(
            scan.findings,
            img.ref,
            spec.suppressions,
            spec.threshold,
            include_untriaged=spec.include_untriaged,
            today=today,
        )
        img.status = ImageStatus.SCANNED
        img.findings, img.suppressed, img.below_threshold = (
            outcome.actionable,
            outcome.suppressed,
            outcome.below_threshold,
        )
        return set(outcome.expired_used)
    img.status = {
        ScanState.NOT_FOUND: ImageStatus.NOT_FOUND,
        ScanState.FAILED: ImageStatus.FAILED,
    }.get(scan.state, ImageStatus.NOT_SCANNED)
    img.reason = clip(scan.reason or scan.state.value)
    return set()


def read_findings(
    images: list[ImageResult],
    spec: PolicySpec,
    ports: Ports,
    result: RunResult,
    rlog: _RunLog,
    today: date,
    cancel: threading.Event | None,
    progress: Progress | None,
) -> set[str]:
    """Stage 4: findings per digest (batched by the adapter), then threshold and suppressions in the core."""
    todo = [i for i in images if i.digest]
    severities = severities_at_or_above(spec.threshold, include_untriaged=spec.include_untriaged)
    # One digest may be used under several tags: ask once per (repository, digest).
    by_key: dict[tuple[ImageRef, str], list[ImageResult]] = {}
    for img in todo:
        key = (
            ImageRef(
                raw="",
                kind=img.ref.kind,
                registry=img.ref.registry,
                repository=img.ref.repository,
                account=img.ref.account,
                region=img.ref.region,
            ),
            img.digest or "",
        )
        by_key.setdefault(key, []).append(img)
    keys = sorted(by_key)
    done = 0
    expired_used: set[str] = set()
    for start in range(0, len(keys), SCAN_BATCH):
        _check(cancel)
        batch = keys[start : start + SCAN_BATCH]
        try:
            scans = ports.findings.scans(batch, severities)
        except ScanError as exc:
            scans = {k: ImageScan(ScanState.FAILED, reason=str(exc)) for k in batch}
        for key in batch:
            scan = scans.get(key) or ImageScan(ScanState.FAILED, reason="no answer from the findings source")
            for img in by_key[key]:
                expired_used |= _apply_scan(img, scan, spec, today)
        done += len(batch)
        if progress:
            progress("findings", done, len(keys))
    failed = sum(1 for i in todo if i.status is ImageStatus.FAILED)
    if failed:
        result.record_error(f"{failed} image(s) failed while reading findings")
    rlog("findings_read", images=len(todo), failed=failed)
    return expired_used


def notify(
    policy: PolicyRef,
    spec: PolicySpec,
    images: list[ImageResult],
    ports: Ports,
    state: RunState,
    result: RunResult,
    rlog: _RunLog,
    *,
    report_link: str,
    jira_keys: tuple[str, ...] = (),
) -> None:
    """Stage: tell each spec.notify destination what changed; its memory is kept only once sent.

    A failed destination is the stage failure `notify`: the report, the tickets and the state of
    the run stay as they are, and the next run tries that destination's events again.
    """
    if not spec.notify:
        state.notified = {}
        return
    context = RunContext(policy, result.run_id, report_link, jira_keys)
    plans = plan_notifications(spec, images, result, state.notified, context, first_run=not state.last_run_id)
    if spec.dry_run:  # nothing leaves the run: the messages are planned, and asked again next time
        for out in plans:
            if out.payload is not None:
                rlog("notify_planned", destination=out.destination.name, events=out.events)
        return
    kept = {d.name for d in spec.notify}
    memories = {name: m for name, m in state.notified.items() if name in kept}
    failures = []
    for out in plans:
        name = out.destination.name
        if out.payload is not None:
            if ports.notifier is None:
                failures.append(f"{name}: no notifier configured")
                continue
            try:
                ports.notifier.send(out.destination, out.payload)
            except ScanError as exc:
                failures.append(str(exc))
                rlog("notify_failed", "warning", destination=name, error=clip(str(exc)))
                continue
            rlog("notified", destination=name, events=out.events)
        memories[name] = out.memory
    state.notified = memories
    if failures:
        result.fail_stage("notify", "; ".join(failures))


def run_policy(
    policy: PolicyRef,
    spec: PolicySpec,
    ports: Ports,
    clock: Clock,
    *,
    run_id: str | None = None,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Run one scan of `spec`; never raises for AWS/Jira faults (they are recorded), only for Cancelled."""
    started = clock.now()
    run_id = run_id or new_run_id(started)
    result = RunResult(run_id=run_id, policy=policy.key, started=started, dry_run=spec.dry_run)
    rlog = _RunLog(clock, run_id)
    rlog("run_started", policy=policy.key, dryRun=spec.dry_run, regions=spec.aws.all_regions)
    today = started.date()
    prefix = spec.report.s3.prefix
    skey = state_key(prefix, policy.namespace, policy.name)

    try:
        state = load_state(ports.reports.get(skey))
    except ScanError as exc:
        # Without the state the run is only slower (no revision cache) and "new since" is unknown.
        rlog("state_unreadable", "warning", error=str(exc))
        result.record_error(f"state: {exc}")
        state = RunState()

    if progress:
        progress("task definitions", 0, 1)
    errors_before = result.errors_total
    images = collect_images(spec, ports, state, result, rlog, cancel)
    inventory_errors = result.errors_total - errors_before  # listing errors only, not the state's
    if progress:
        progress("task definitions", 1, 1)
    _check(cancel)
    resolve_digests(images, spec, ports, result, rlog)
    _check(cancel)
    expired_used = read_findings(images, spec, ports, result, rlog, today, cancel, progress)
    _check(cancel)

    expired = expired_suppressions(spec.suppressions, today)
    result.expired_suppressions = len(expired)
    result.add_images(images)
    new_ids: dict[str, list[str]] = {}
    for img in images:
        before = set(state.findings.get(img.ref.display, []))
        if img.findings and state.last_run_id:
            new_ids[img.ref.display] = sorted({f.vulnerability_id for f in img.findings} - before)
    folder = run_folder(prefix, started, policy.namespace, policy.name, run_id)
    result.report_uri = ports.reports.uri(f"{folder}/index.json")
    rlog(
        "rules_applied",
        affected=result.affected_images,
        findings=result.findings_total,
        expiredSuppressionsUsed=sorted(expired_used),
    )

    # Per-image objects first, the index last: a reader who sees index.json sees a complete run.
    written: dict[str, str] = {}

    def put(obj: ReportObject) -> str | None:
        if cancel is not None and cancel.is_set():
            return "cancelled"
        try:
            ports.reports.put(obj.key, obj.body, obj.content_type)
        except ScanError as exc:
            return str(exc)
        return None

    # Rendered and stored a few at a time, so memory does not grow with the number of images.
    for chunk in batched(render_images(folder, policy, images, run_id, new_ids), REPORT_CHUNK):
        for obj, error in zip(chunk, parallel_map(put, chunk), strict=True):
            if error is None:
                written[obj.key] = ports.reports.link(obj.key)
            else:
                result.record_error(f"report object {obj.key}: {error}")
    _check(cancel)
    if progress:
        progress("report", 1, 2)

    ticket_keys: tuple[str, ...] = ()
    if ports.tickets is not None and spec.jira is not None:
        links = {}
        for img in images:
            if img.affected:
                key = image_report_key(folder, img)
                if key in written:
                    links[img.ref.display] = written[key]
        request = TicketRequest(
            policy=policy,
            spec=spec,
            images=images,
            run_id=run_id,
            now=clock.now(),
            report_links=links,
            run_log_link=ports.reports.link(f"{folder}/run.log.jsonl"),
            index_link=ports.reports.link(f"{folder}/index.html"),
            dry_run=spec.dry_run,
            # A partial inventory must not read as "image no longer used" and close its ticket.
            inventory_complete=not inventory_errors,
        )
        try:
            report = ports.tickets.sync(request)
        except ScanError as exc:
            result.fail_stage("tickets", str(exc))
        else:
            result.tickets = dict(report.actions)
            result.jira_requests = report.requests
            ticket_keys = jira_keys(report.planned)
            if report.planned:
                rlog("tickets_planned", plan=report.planned[:500])
            for err in report.errors:
                result.record_error(f"jira: {err}")
            if not report.synced:
                detail = "; ".join(report.errors) or "tickets not fully synced"
                result.stage_failures["tickets"] = clip(f"{report.reason}: {detail}")
            rlog("tickets_synced", actions=report.actions, requests=report.requests, synced=report.synced)

    if ports.aws_calls is not None:
        result.aws_calls = ports.aws_calls()
    if ports.aws_errors is not None:
        result.aws_errors = ports.aws_errors()
    # Before the index: the report and its run log say what was sent and what failed.
    notify(
        policy,
        spec,
        images,
        ports,
        state,
        result,
        rlog,
        report_link=ports.reports.link(f"{folder}/index.html"),
        jira_keys=ticket_keys,
    )
    result.finish(clock.now())
    rlog(
        "run_finished",
        result=result.outcome.value,
        images=result.images_total,
        findings=result.findings_total,
        errors=result.errors_total,
    )
    for obj in render_index(folder, policy, images, result, new_ids, expired, rlog.lines):
        try:
            ports.reports.put(obj.key, obj.body, obj.content_type)
        except ScanError as exc:
            result.fail_stage("report", f"{obj.key}: {exc}")
    try:
        findings_now = {img.ref.display: [f.vulnerability_id for f in img.findings] for img in images}
        ports.reports.put(skey, dump_state(state, run_id, findings_now), "application/json")
    except ScanError as exc:
        result.record_error(f"state: {exc}")
    if result.stage_failures or result.errors_total:
        result.finish(result.completed or clock.now())
    if progress:
        progress("report", 2, 2)
    return result
