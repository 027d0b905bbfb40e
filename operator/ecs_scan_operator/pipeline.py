"""run_policy(): the stages of one scan run, in order, each stage's failure recorded.

Run lease -> ECS task definitions -> images -> digests -> findings -> rules -> per-image report
objects -> Jira -> commit (summary.csv, state, index.html, run.log.jsonl, index.json last) ->
lease released -> RunResult. docs/run-protocol.md says what this guarantees.
The CLI, the operator's worker thread and a Kubernetes Job all call this one function, so it
knows nothing of kopf. It blocks; `cancel` is checked between stages and batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from ecs_scan_operator.concurrency import parallel_map
from ecs_scan_operator.core.coverage import RescanWindow, at_risk
from ecs_scan_operator.core.images import parse_image, running_image
from ecs_scan_operator.core.kev import KevEntry, KevLookup, bounded, lookup_ids, stale, with_kev
from ecs_scan_operator.core.keys import lease_key, run_folder, state_key
from ecs_scan_operator.core.model import (
    Account,
    Finding,
    ImageRef,
    ImageResult,
    ImageScan,
    ImageStatus,
    ImageUse,
    RefKind,
    Resolution,
    RuntimeContext,
    ScanState,
    ScanType,
    Severity,
    TaskDefinitionImages,
    TaskDefinitionListing,
)
from ecs_scan_operator.core.notify import RunContext, jira_keys, plan_notifications
from ecs_scan_operator.core.policy import PolicyRef, PolicySpec
from ecs_scan_operator.core.priority import NO_FIX_REASON, assess, fetch_floor, is_actionable, report_only
from ecs_scan_operator.core.report import (
    ReportObject,
    image_page_key,
    image_report_key,
    render_csv_bytes,
    render_html_bytes,
    render_images,
    render_index_json,
    render_log,
)
from ecs_scan_operator.core.result import RunResult, causes_text, clip
from ecs_scan_operator.core.rules import apply_rules, expired_suppressions, severities_at_or_above
from ecs_scan_operator.core.runtime import (
    decide_redeploy,
    fold_running_rows,
    is_running_row,
    running_key,
    runtime_context,
    tag_key,
    track_running,
)
from ecs_scan_operator.core.state import RunState, dump_state, finding_key, image_of_key, load_state
from ecs_scan_operator.core.tickets import TicketRequest
from ecs_scan_operator.errors import Cancelled, ConflictError, ErrorCause, RunAborted, ScanError
from ecs_scan_operator.leasing import RunLease, default_holder
from ecs_scan_operator.ports import Clock, Ports

log = logging.getLogger(__name__)
SCAN_BATCH = 200  # images per findings call group; cancel is checked between groups
REPORT_CHUNK = 32  # per-image report objects rendered ahead of their writes, at least
REGISTRY_GROUP = 20  # Prefetch: a registry's new images that join a batch together
PREFETCH_BATCH = SCAN_BATCH  # Prefetch: images per batch
STALL = 400  # Prefetch: revisions in a row without a new image after which everything waiting goes
FLUSH_ALL = 5  # Prefetch: this many batches waiting in small registries go together

Progress = Callable[[str, int, int], None]  # stage, done, total


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


class Guard:
    """The run's checkpoint: cancelled from outside, its deadline passed, or its lease lost.

    Checked between stages and batches (a call in flight is not interrupted: the adapters'
    own timeouts bound it), so a run stops cleanly at the next checkpoint.
    """

    def __init__(
        self,
        cancel: threading.Event | None,
        clock: Clock,
        deadline: datetime,
        seconds: int,
        lease: RunLease | None = None,
    ) -> None:
        self.cancel = cancel
        self.clock = clock
        self.deadline = deadline
        self.seconds = seconds
        self.lease = lease
        self.stage = "start"

    def enter(self, stage: str) -> None:
        """Check (a deadline passed during the stage just done names that stage), then enter `stage`."""
        self.check()
        self.stage = stage

    def check(self) -> None:
        """Raise Cancelled (from outside) or RunAborted (deadline, lease lost) when the run must stop."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("run cancelled")
        if self.lease is not None and self.lease.lost is not None:
            raise RunAborted(f"stopped in stage {self.stage}: {self.lease.lost}", stage=self.stage)
        if self.clock.now() >= self.deadline:
            raise RunAborted(
                f"run deadline of {self.seconds}s (spec.runDeadlineSeconds) passed in stage {self.stage}",
                stage=self.stage,
            )

    def is_set(self) -> bool:
        """True when the run must stop (for loops that only skip work)."""
        try:
            self.check()
        except (Cancelled, RunAborted):
            return True
        return False


def _check(cancel: Guard | threading.Event | None) -> None:
    if isinstance(cancel, Guard):
        cancel.check()
    elif cancel is not None and cancel.is_set():
        raise Cancelled("run cancelled")


def _identity(ref: ImageRef) -> tuple[str, ...]:
    """Two spellings of one image are one image (Docker Hub short forms, explicit docker.io)."""
    if ref.kind is RefKind.MALFORMED:
        return ("malformed", ref.raw)
    return (ref.kind.value, ref.registry, ref.repository, ref.tag or "", ref.digest or "")


def select_accounts(spec: PolicySpec, ports: Ports, result: RunResult, rlog: _RunLog) -> list[Account]:
    """Stage 0 (multi-account policies): the accounts to scan, each refused one reported by name.

    spec.aws.accounts as listed, or the organization's ACTIVE accounts (discovered now). An account
    the allowing grant does not give is a stage failure `accounts[<id>]` (AccessNotGranted), so
    the run is PartialFailure naming it: never a silent drop.
    """
    aws = spec.aws
    if aws.accounts is not None:
        candidates = [Account(a) for a in aws.accounts]
    elif aws.organization is not None:
        if ports.accounts is None:
            result.fail_stage("accounts", "no AWS Organizations reader configured")
            return []
        try:
            candidates = ports.accounts.accounts(aws.organization, aws.all_regions[0])
        except ScanError as exc:
            result.fail_stage("accounts", f"organization accounts: {exc}")
            result.record_cause(str(exc.cause or ""))
            rlog("accounts_failed", "warning", error=str(exc))
            return []
    else:
        return []
    kept = []
    for account in candidates:
        why = ports.account_refusal(account.id) if ports.account_refusal else None
        if why is None:
            kept.append(account)
            continue
        result.fail_stage(f"accounts[{account.id}]", f"AccessNotGranted: {why}")
        result.record_cause(str(ErrorCause("sts", "AssumeRole", "AccessNotGranted", account.id)))
        rlog("account_refused", "warning", account=account.id, reason=why)
    rlog("accounts_selected", accounts=len(kept), refused=len(candidates) - len(kept))
    return kept


def _listing(
    spec: PolicySpec,
    ports: Ports,
    state: RunState,
    guard: Guard | threading.Event | None,
    target: tuple[str, str],
    prefetch: Prefetch | None = None,
) -> TaskDefinitionListing | ScanError | None:
    """One (account, region)'s task definitions, its failure, or None when the run is stopping."""
    account, region = target
    if isinstance(guard, Guard) and guard.is_set():
        return None
    try:
        if account and prefetch is not None:
            return ports.images.task_definitions(
                spec.task_definitions, region, state.cache, account, found=prefetch.found
            )
        if account:
            return ports.images.task_definitions(spec.task_definitions, region, state.cache, account)
        return ports.images.task_definitions(spec.task_definitions, region, state.cache)
    except ScanError as exc:
        if account and exc.cause is not None and not exc.cause.account:
            exc.cause = dataclasses.replace(exc.cause, account=account)
        return exc


class Prefetch:
    """Multi-account runs: digests, findings and KEV data of images found while the inventory is read.

    A multi-account inventory takes as long as its slowest (account, region) pair's task-definition
    reads (20 a second each), and a fleet names most of its images in its first families. The
    source tells it each revision it describes (not those in the revision cache: a warm rerun's
    inventory is quick, and the stages read with more concurrency than one batch at a time). An
    image's digest, findings and KEV answers do not depend on which families use it, so they are
    read in the background as images appear - in batches of PREFETCH_BATCH new images, one batch at a
    time (the adapters spread each batch's calls; KEV lookups stay within their worker count) -
    and the stages after the inventory find them ready: the run ends soon after its slowest pair.

    Best effort, never a second source of truth: only what a stage would accept is kept (a
    digest found, a scan that did not fail, a KEV answer); the rest, a batch that failed and the
    images of a last partial batch are read by the stages themselves, which record their failures
    as always. Cancel and deadline stop it at the next batch. Memory: the kept scans are what the
    findings stage would hold for the same images (multi-account batches span the fleet anyway).
    """

    def __init__(
        self,
        spec: PolicySpec,
        ports: Ports,
        state: RunState,
        now: datetime,
        guard: Guard | threading.Event | None,
    ) -> None:
        self._ports, self._state, self._now, self._guard = ports, state, now, guard
        self._batch = PREFETCH_BATCH
        self._severities = severities_at_or_above(fetch_floor(spec), include_untriaged=spec.include_untriaged)
        self._lock = threading.Lock()
        self._seen: set[tuple[str, ...]] = set()
        self._raw: set[str] = set()  # image strings already looked at (most revisions repeat them)
        self._quiet = 0  # revisions in a row that named no new image
        # New images wait by registry (account, region): a registry's images go together, so a
        # repository's tags share ECR calls and Inspector's per-account filters stay full.
        self._pending: dict[tuple[str, str], list[ImageRef]] = {}
        self._ready: list[ImageRef] = []
        self._waiting = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self._futures: list[Future[None]] = []
        self._cves: set[str] = set()  # asked (or being asked) by an earlier batch
        self.digests: dict[tuple[str, ...], str] = {}  # by image identity
        self.scans: dict[tuple[ImageRef, str], ImageScan] = {}
        self.kev: dict[str, KevEntry] = {}
        self.kev_asked = 0
        self.batches = 0

    def found(self, td: TaskDefinitionImages) -> None:
        """A revision was read (in the source's thread): queue its new private ECR images.

        A registry's queue joins the next batch once it holds REGISTRY_GROUP images; a batch goes
        once it holds PREFETCH_BATCH images. Everything waiting goes when FLUSH_ALL batches wait
        (many small registries), or when STALL revisions in a row named no new image (a fleet
        names most of its images early: the stragglers need not wait for the inventory's end).
        """
        with self._lock:
            new = [c.image for c in td.containers if c.image not in self._raw]
            self._raw.update(new)
            refs = [parse_image(image) for image in new]
            queued = False
            for ref in refs:
                key = _identity(ref)
                if not ref.scannable or key in self._seen:
                    continue
                self._seen.add(key)
                queue = self._pending.setdefault((ref.account or "", ref.region or ""), [])
                queue.append(ref)
                self._waiting += 1
                queued = True
                if len(queue) >= REGISTRY_GROUP:
                    self._ready.extend(queue)
                    queue.clear()
                if len(self._ready) >= self._batch or self._waiting >= FLUSH_ALL * self._batch:
                    self._submit(everything=self._waiting >= FLUSH_ALL * self._batch)
            self._quiet = 0 if queued else self._quiet + 1
            if self._waiting and self._quiet >= STALL:
                self._submit(everything=True)

    def _submit(self, *, everything: bool) -> None:
        refs = self._ready
        if everything:
            refs = refs + [r for queue in self._pending.values() for r in queue]
            self._pending = {}
        self._ready = []
        self._waiting -= len(refs)
        self._futures.append(self._pool.submit(self._read, refs))

    def close(self) -> None:
        """The inventory is complete: wait for the batches submitted; raise what a batch raised."""
        self._pool.shutdown(wait=True)
        with self._lock:
            self._pending, self._ready = {}, []
            futures, self._futures = self._futures, []
        for f in futures:
            f.result()  # ScanErrors are caught in _read; anything else is a bug to surface

    def _stopping(self) -> bool:
        guard = self._guard
        if isinstance(guard, Guard):
            return guard.is_set()
        return guard is not None and guard.is_set()

    def _read(self, refs: list[ImageRef]) -> None:
        if self._stopping():
            return
        try:
            resolved = self._ports.digests.resolve(refs)
        except ScanError:
            return
        keys = []
        for ref in refs:
            res = resolved.get(ref)
            if res is not None and res.digest is not None:
                self.digests[_identity(ref)] = res.digest
                keys.append(_scan_key(ref, res.digest))
        keys = sorted(set(keys) - self.scans.keys())
        if not keys or self._stopping():
            return
        try:
            scans = self._ports.findings.scans(keys, self._severities)
        except ScanError:
            return
        kept = {k: v for k, v in scans.items() if v.state is not ScanState.FAILED}
        self.scans.update(kept)
        self.batches += 1
        self._kev(kept)

    def _kev(self, scans: Mapping[tuple[ImageRef, str], ImageScan]) -> None:
        intel = self._ports.vulnerabilities
        enhanced = [
            (key, scan)
            for key, scan in scans.items()
            if scan.scan_type == ScanType.ENHANCED and scan.state is ScanState.COMPLETE and scan.findings
        ]
        if intel is None or not enhanced or self._stopping():
            return
        ids = lookup_ids(f.vulnerability_id for _, s in enhanced for f in s.findings)
        ask = [v for v in stale(self._state.kev, ids, self._now, intel.ttl) if v not in self._cves]
        if not ask:
            return
        self._cves.update(ask)
        self.kev_asked += len(ask)
        region = min(key[0].region or "" for key, _ in enhanced)
        # A refusal leaves the rest unasked: the findings stage asks them again and records it.
        self.kev.update(intel.search(ask, region, self._now).entries)

    def handover(self, state: RunState) -> None:
        """Hand the KEV answers to the state's cache (the findings stage reads them from there)."""
        state.kev.update(self.kev)
        self.kev = {}


def _add_uses(
    images: dict[tuple[str, ...], ImageResult], td: TaskDefinitionImages, region: str, account: str
) -> None:
    for c in td.containers:
        # source: running: the digest the task runs is known, so the image is that digest
        # (no tag resolution); a PENDING container has none yet and is reported as such.
        ref = parse_image(running_image(c.image, c.digest) if td.tasks else c.image)
        img = images.setdefault(_identity(ref), ImageResult(ref=ref))
        img.uses.append(
            ImageUse(
                td.family,
                td.revision,
                c.name,
                td.arn,
                td.region or region,
                service=td.service,
                launch_type=td.launch_type,
                tasks=td.tasks,
                account=account or td.account,
                cluster=td.cluster,
            )
        )
        img.td_tags.update(td.tags)
        if td.tasks and ref.digest is None:
            img.awaiting_digest = True


def collect_images(
    spec: PolicySpec,
    ports: Ports,
    state: RunState,
    result: RunResult,
    rlog: _RunLog,
    cancel: Guard | threading.Event | None,
    accounts: Sequence[Account] | None = None,
    prefetch: Prefetch | None = None,
) -> list[ImageResult]:
    """Stage 1-2: task definitions of every (account,) region -> unique images with their uses.

    Multi-account policies read every (account, region) pair in parallel, `fanout.targets_at_once`
    pairs at a time: each pair is its own AWS rate-limit domain, so the stage takes about as long as
    its slowest pair. A pair that fails is that pair's stage failure; the others complete.
    `prefetch` hears each revision as it is read (multi-account only).
    """
    images: dict[tuple[str, ...], ImageResult] = {}
    regions = spec.aws.all_regions
    if spec.aws.multi_account:
        targets = [(a.id, r) for a in accounts or () for r in regions]
        at_once = ports.fanout.targets_at_once
    else:
        targets, at_once = [("", r) for r in regions], 1
    _check(cancel)
    outcomes = parallel_map(lambda t: _listing(spec, ports, state, cancel, t, prefetch), targets, at_once)
    _check(cancel)
    for (account, region), listing in zip(targets, outcomes, strict=True):
        where = f"{account}/{region}" if account else region
        if listing is None:
            continue
        if isinstance(listing, ScanError):
            exc = listing
            result.fail_stage(f"taskDefinitions[{where}]", str(exc))
            result.record_cause(str(exc.cause or ""))
            rlog("task_definitions_failed", "warning", region=region, account=account, error=str(exc))
            continue
        result.families_matched += listing.families_matched
        result.task_definitions += len(listing.task_definitions)
        for err in listing.errors:
            result.record_error(f"{account}: {err}" if account else err)
            rlog("task_definition_failed", "warning", region=region, error=clip(err))
        rlog(
            "task_definitions_listed",
            region=region,
            **({"account": account} if account else {}),
            families=listing.families_matched,
            taskDefinitions=len(listing.task_definitions),
        )
        for td in listing.task_definitions:
            _add_uses(images, td, region, account)
    out = sorted(images.values(), key=lambda i: i.ref.raw)
    for img in out:
        if img.ref.kind is RefKind.MALFORMED:
            img.status, img.reason = ImageStatus.UNSCANNABLE, f"malformed reference: {img.ref.reason}"
        elif not img.ref.scannable:
            img.status, img.reason = ImageStatus.UNSCANNABLE, img.ref.reason
        elif img.awaiting_digest:
            img.status = ImageStatus.NOT_SCANNED
            img.reason = "container PENDING: ECS has not recorded the digest it runs yet (next run reads it)"
    return out


def running_td_tags(
    images: list[ImageResult],
    spec: PolicySpec,
    ports: Ports,
    state: RunState,
    result: RunResult,
    now: datetime,
) -> None:
    """Task-definition tags of the running view's revisions, only when a Jira route matches on them.

    Tasks and service revisions do not carry their task definition's tags; the declared view
    reads them with the revision. Cached in the state (core/state.py TD_TAGS_TTL).
    """
    if (
        ports.td_tags is None
        or spec.jira is None
        or not any(r.match.task_definition_tags for r in spec.jira.routes)
    ):
        return
    arns = sorted({u.task_definition_arn for i in images for u in i.uses if u.tasks})
    if not arns:
        return
    tags, errors = ports.td_tags.revision_tags(arns, state.cache, now)
    for err in errors:
        result.record_error(f"task-definition tags: {err}")
    for img in images:
        for u in img.uses:
            if u.tasks:
                img.td_tags.update(tags.get(u.task_definition_arn, ()))


def resolve_digests(
    images: list[ImageResult],
    spec: PolicySpec,
    ports: Ports,
    result: RunResult,
    rlog: _RunLog,
    prefetched: Mapping[tuple[str, ...], str] | None = None,
) -> None:
    """Stage 3: tags -> digests; not_found and failures recorded per image.

    `prefetched`: digests already read during the inventory (Prefetch), by image identity.
    """
    todo = [i for i in images if i.ref.scannable and not i.awaiting_digest]
    if not todo:
        return
    # The running view: a running digest needs no lookup, but its tag's current digest does
    # (drift, redeploy needed); the resolver batches these with the declared tags per repository.
    tag_refs = {id(i): _tag_ref(i.ref) for i in todo if is_running_row(i) and i.ref.tag}
    known = prefetched or {}
    resolved: dict[ImageRef, Resolution] = {
        i.ref: Resolution(digest) for i in todo if (digest := known.get(_identity(i.ref)))
    }
    ask = [i.ref for i in todo if i.ref not in resolved] + sorted(set(tag_refs.values()))
    try:
        if ask:
            resolved.update(ports.digests.resolve(ask))
    except ScanError as exc:
        result.fail_stage("digests", str(exc))
        for img in todo:
            img.status, img.reason, img.cause = ImageStatus.FAILED, clip(str(exc)), str(exc.cause or "")
        return
    for img in todo:
        res = resolved.get(img.ref)
        if res is None:
            img.status, img.reason = ImageStatus.FAILED, "digest resolution returned nothing"
        elif res.digest is None:
            img.status, img.reason, img.cause = res.status or ImageStatus.FAILED, res.reason, res.cause
        else:
            img.digest = res.digest
        if id(img) in tag_refs:
            moved = resolved.get(tag_refs[id(img)])
            img.runtime = RuntimeContext(
                running_digests=(img.digest or "",), tag_digest=moved.digest if moved else None
            )
    if spec.jira is not None and any(r.match.repository_tags for r in spec.jira.routes):
        # Only routing needs repository tags: one call per repository, skipped when no route asks.
        tags = ports.digests.repository_tags([i.ref for i in todo if i.digest])
        for img in todo:
            img.repository_tags = tags.get(
                (img.ref.account or "", img.ref.region or "", img.ref.repository), {}
            )
    failed = [i for i in todo if i.status is ImageStatus.FAILED]
    if failed:
        result.record_error(f"{len(failed)} image(s) failed digest resolution{_causes_of(failed)}")
    rlog("digests_resolved", images=len(todo), resolved=sum(1 for i in todo if i.digest))


def _tag_ref(ref: ImageRef) -> ImageRef:
    """The reference of a running row's tag: `repo:tag@digest` without the digest."""
    return parse_image(ref.raw.rsplit("@", 1)[0])


def _causes_of(images: list[ImageResult]) -> str:
    """`: ecr:DescribeImages AccessDeniedException x2` for failed images with a known cause."""
    counts: Counter[str] = Counter(i.cause for i in images if i.cause)
    return f": {causes_text(dict(counts))}" if counts else ""


@dataclass
class RunSignals:
    """What the rules need beyond the scan: KEV answers by CVE, first sightings by finding."""

    now: datetime
    kev: dict[str, KevEntry] = field(default_factory=dict)
    first_seen: dict[str, datetime] = field(default_factory=dict)  # the state's, read at the start
    seen_now: dict[str, datetime] = field(default_factory=dict)  # what this run keeps
    # One object per distinct (frozen) Signals and Assessment: a CVE's findings in many images
    # mostly carry equal ones, and the findings are held for the whole run.
    shared: dict[Any, Any] = field(default_factory=dict)


def _assess(img: ImageResult, f: Finding, spec: PolicySpec, sig: RunSignals, *, actionable: bool) -> Finding:
    # Interned: the state's keys are (load_state), so a finding seen before shares its key's string.
    key = sys.intern(finding_key(img.ref.display, f.vulnerability_id, f.package))
    out = assess(f, spec, remembered=sig.first_seen.get(key), now=sig.now, actionable=actionable)
    if out.assessment.first_seen is not None:
        sig.seen_now[key] = out.assessment.first_seen
    signals = sig.shared.setdefault(out.signals, out.signals)
    assessment = sig.shared.setdefault(out.assessment, out.assessment)
    if signals is not out.signals or assessment is not out.assessment:
        out = replace(out, signals=signals, assessment=assessment)
    return out


def _apply_scan(img: ImageResult, scan: ImageScan, spec: PolicySpec, sig: RunSignals) -> set[str]:
    img.scan_type, img.scanned_at = scan.scan_type, scan.scanned_at
    if scan.state is ScanState.COMPLETE:
        findings = scan.findings
        if scan.scan_type == ScanType.ENHANCED and sig.kev:
            findings = tuple(with_kev(f, sig.kev.get(f.vulnerability_id)) for f in findings)
        outcome = apply_rules(
            findings,
            img.ref,
            spec.suppressions,
            spec.threshold,
            include_untriaged=spec.include_untriaged,
            today=sig.now.date(),
            act=(lambda f: is_actionable(spec, f)) if spec.act_on is not None else None,
        )
        img.status = ImageStatus.SCANNED
        kept = [f for f in outcome.actionable if not report_only(spec, f)]
        no_fix = [(f, NO_FIX_REASON) for f in outcome.actionable if report_only(spec, f)]
        img.findings = [_assess(img, f, spec, sig, actionable=True) for f in kept]
        img.suppressed = [
            (_assess(img, f, spec, sig, actionable=False), why) for f, why in [*outcome.suppressed, *no_fix]
        ]
        return set(outcome.expired_used)
    img.status = {
        ScanState.NOT_FOUND: ImageStatus.NOT_FOUND,
        ScanState.FAILED: ImageStatus.FAILED,
    }.get(scan.state, ImageStatus.NOT_SCANNED)
    img.reason = clip(scan.reason or scan.state.value)
    img.cause = scan.cause if img.status is ImageStatus.FAILED else ""
    return set()


def read_findings(
    images: list[ImageResult],
    spec: PolicySpec,
    ports: Ports,
    result: RunResult,
    rlog: _RunLog,
    state: RunState,
    sig: RunSignals,
    cancel: Guard | threading.Event | None,
    progress: Progress | None,
    seen: _Seen | None = None,
    prefetched: dict[tuple[ImageRef, str], ImageScan] | None = None,
) -> set[str]:
    """Stage 4: findings per digest (batched by the adapter), KEV data for their CVEs, then the
    rules (threshold or actOn, suppressions, noFix) and each finding's priority and SLA in the core.

    The running view adds one read per drifted row whose tag's current digest is no row of its own
    (its findings decide "redeploy needed"); those scans and Inspector's coverage go to `seen`.
    `prefetched`: scans read during the inventory (Prefetch); each is taken out as it is used.
    """
    todo = [i for i in images if i.digest]
    severities = severities_at_or_above(fetch_floor(spec), include_untriaged=spec.include_untriaged)
    # One digest may be used under several tags: ask once per (repository, digest).
    by_key: dict[tuple[ImageRef, str], list[ImageResult]] = {}
    for img in todo:
        by_key.setdefault(_scan_key(img.ref, img.digest or ""), []).append(img)
    for img in todo:
        if img.runtime is not None and img.runtime.drift and img.runtime.tag_digest:
            by_key.setdefault(_scan_key(img.ref, img.runtime.tag_digest), [])
            if seen is not None:
                seen.tag_keys.add(_scan_key(img.ref, img.runtime.tag_digest))
    keys = sorted(by_key)
    done = 0
    expired_used: set[str] = set()
    kev = KevLookups(state, sig)

    def apply(batch: list[tuple[ImageRef, str]], scans: Mapping[tuple[ImageRef, str], ImageScan]) -> None:
        nonlocal done, expired_used
        for key in batch:
            scan = scans.get(key) or ImageScan(ScanState.FAILED, reason="no answer from the findings source")
            if seen is not None:
                seen.keep(key, scan)
            for img in by_key[key]:
                expired_used |= _apply_scan(img, scan, spec, sig)
        done += len(batch)
        if progress:
            progress("findings", done, len(keys))

    # Multi-account: a batch spans several registries (account, region), read in parallel.
    size = SCAN_BATCH * (ports.fanout.targets_at_once if spec.aws.multi_account else 1)
    # A rule may need KEV data, so a batch's rules run once its new CVEs are looked up; those
    # lookups (a call per CVE) run in the background while the next batch's findings are read.
    # At most two batches' raw scans are held; each is let go once its rules ran (memory stays
    # flat with the fleet).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kev") as background:
        pending: tuple[list[tuple[ImageRef, str]], Mapping[tuple[ImageRef, str], ImageScan], _KevAsk] | None
        pending = None
        for start in range(0, len(keys), size):
            _check(cancel)
            batch = keys[start : start + size]
            scans = _batch_scans(batch, severities, ports, prefetched)
            ask = kev.start(scans, ports, background)
            if pending is not None:
                kev.merge(pending[2], result)
                apply(pending[0], pending[1])
            pending = (batch, scans, ask)
        if pending is not None:
            kev.merge(pending[2], result)
            apply(pending[0], pending[1])
        pending = None
    kev.finish(rlog)
    failed_images = [i for i in todo if i.status is ImageStatus.FAILED]
    failed = len(failed_images)
    if failed:
        result.record_error(f"{failed} image(s) failed while reading findings{_causes_of(failed_images)}")
    rlog("findings_read", images=len(todo), failed=failed)
    return expired_used


def _batch_scans(
    batch: list[tuple[ImageRef, str]],
    severities: Sequence[Severity],
    ports: Ports,
    prefetched: dict[tuple[ImageRef, str], ImageScan] | None,
) -> dict[tuple[ImageRef, str], ImageScan]:
    """A findings batch: the prefetched scans (taken out), the others read now (a failure per image)."""
    scans = {k: prefetched.pop(k) for k in batch if k in prefetched} if prefetched else {}
    missing = [k for k in batch if k not in scans]
    if not missing:
        return scans
    try:
        scans.update(ports.findings.scans(missing, severities))
    except ScanError as exc:
        cause = str(exc.cause or "")
        scans.update({k: ImageScan(ScanState.FAILED, reason=str(exc), cause=cause) for k in missing})
    return scans


def _scan_key(ref: ImageRef, digest: str) -> tuple[ImageRef, str]:
    """What the findings source is asked for: the repository (not the tag) and the digest."""
    repo = ImageRef(
        raw="",
        kind=ref.kind,
        registry=ref.registry,
        repository=ref.repository,
        account=ref.account,
        region=ref.region,
    )
    return repo, digest


@dataclass
class _Seen:
    """What the findings stage saw beyond the rows, for the running view: the full scans of the
    digests tags point at now (drifted rows), and Inspector's in-use figures of every key. Raw
    scans are not kept otherwise (memory stays flat with the fleet)."""

    tag_keys: set[tuple[ImageRef, str]] = field(default_factory=set)
    scans: dict[tuple[ImageRef, str], ImageScan] = field(default_factory=dict)
    in_use: dict[tuple[ImageRef, str], tuple[int | None, datetime | None]] = field(default_factory=dict)

    def keep(self, key: tuple[ImageRef, str], scan: ImageScan) -> None:
        """Remember what the running view will ask of this scan."""
        if key in self.tag_keys:
            self.scans[key] = scan
        if scan.in_use_count is not None or scan.last_in_use_at is not None:
            self.in_use[key] = (scan.in_use_count, scan.last_in_use_at)


def assess_runtime(
    images: list[ImageResult], spec: PolicySpec, state: RunState, seen: _Seen, now: datetime
) -> None:
    """The running view of every row (RuntimeContext), first/last seen running, and redeploy needed."""
    running_now = [
        running_key(i.ref, d)
        for i in images
        for d in (i.ref.digest or i.digest,)
        if d and any(u.tasks for u in i.uses)
    ]
    # Always: a policy that no longer has a running view still ages its old entries out.
    state.running = track_running(state.running, running_now, now)
    by_tag: dict[tuple[str, str, str], set[str]] = {}
    for img in images:
        if is_running_row(img) and img.ref.digest:
            by_tag.setdefault(tag_key(img.ref), set()).add(img.ref.digest)
    for img in images:
        digest = img.digest or img.ref.digest
        count, at = seen.in_use.get(_scan_key(img.ref, digest), (None, None)) if digest else (None, None)
        if not spec.task_definitions.running_view:
            if count is not None or at is not None:
                img.runtime = RuntimeContext(in_use_count=count, last_in_use_at=at)
            continue
        runs = any(u.tasks for u in img.uses)
        if is_running_row(img):
            tag_digest = img.runtime.tag_digest if img.runtime else None
            running: set[str] = {img.ref.digest or ""}
        else:
            tag_digest = img.digest
            running = set(by_tag.get(tag_key(img.ref), set())) if img.ref.tag else set()
            if runs and img.digest:
                running.add(img.digest)
        key = running_key(img.ref, digest) if digest and runs else ""
        img.runtime = runtime_context(
            img.uses,
            running_digests=running,
            tag_digest=tag_digest,
            seen=state.running.get(key) if key else None,
            in_use_count=count,
            last_in_use_at=at,
        )
        if runs and img.findings and tag_digest and tag_digest != digest:  # else it cannot be true
            img.redeploy_needed = decide_redeploy(
                digest=digest,
                running_tasks=img.runtime.running_tasks,
                findings=[f.vulnerability_id for f in img.findings],
                tag_digest=tag_digest,
                tag_findings=_tag_findings(img, tag_digest, seen, spec, now.date()),
            )


def _tag_findings(
    img: ImageResult, tag_digest: str | None, seen: _Seen, spec: PolicySpec, today: date
) -> list[str] | None:
    """The actionable finding ids of the tag's current digest, None when its scan is not complete."""
    scan = seen.scans.get(_scan_key(img.ref, tag_digest)) if tag_digest else None
    if scan is None or scan.state is not ScanState.COMPLETE:
        return None
    outcome = apply_rules(
        scan.findings,
        img.ref,
        spec.suppressions,
        spec.threshold,
        include_untriaged=spec.include_untriaged,
        today=today,
        act=(lambda f: is_actionable(spec, f)) if spec.act_on is not None else None,
    )
    return [f.vulnerability_id for f in outcome.actionable if not report_only(spec, f)]


def flag_coverage(
    images: list[ImageResult], ports: Ports, result: RunResult, rlog: _RunLog, now: datetime
) -> None:
    """The running view: flag digests that ran past Inspector's re-scan window (CoverageAtRisk).

    One GetConfiguration per registry (account, region) that has a running image; a registry
    whose setting cannot be read is named in the result (the condition says Unknown), never a
    failed run: the findings themselves were read.
    """
    running = [i for i in images if i.runtime is not None and i.runtime.running_tasks and i.ref.scannable]
    if not running or ports.coverage is None:
        return
    windows: dict[tuple[str, str], RescanWindow | None] = {}
    for key in sorted({(i.ref.account or "", i.ref.region or "") for i in running}):
        try:
            windows[key] = ports.coverage.rescan_window(*key)
        except ScanError as exc:
            windows[key] = None
            result.coverage_unknown = clip(str(exc))
            rlog("rescan_window_unreadable", "warning", account=key[0], region=key[1], error=clip(str(exc)))
    settings: set[str] = set()
    for img in running:
        window = windows.get((img.ref.account or "", img.ref.region or ""))
        if img.runtime is not None and window is not None and at_risk(window, img.runtime, now):
            img.runtime = replace(img.runtime, coverage_at_risk=True)
            settings.add(window.describe())
    result.rescan_windows = sorted(settings)
    rlog(
        "coverage_checked",
        registries=len(windows),
        atRisk=sum(1 for i in running if i.runtime is not None and i.runtime.coverage_at_risk),
        windows=sorted(w.describe() for w in windows.values() if w is not None),
    )


@dataclass
class _KevAsk:
    """One findings batch's CVEs new to the run, those asked, and the pending answer."""

    ids: list[str]
    ask: list[str]
    answer: Future[KevLookup] | None


@dataclass
class KevLookups:
    """KEV data for the distinct CVEs of the run's ENHANCED findings, a findings batch at a time.

    The state's cache answers CVEs asked within the TTL; the others are asked with
    SearchVulnerabilities, each once per run. A failure leaves those CVEs unknown (never "not KEV";
    a stale cached answer is still used) and is a run error; the other findings are unaffected.
    """

    state: RunState
    sig: RunSignals
    seen: set[str] = field(default_factory=set)  # CVEs of this run's findings so far
    asked: int = 0

    def start(
        self, scans: Mapping[tuple[ImageRef, str], ImageScan], ports: Ports, background: ThreadPoolExecutor
    ) -> _KevAsk:
        """The CVEs of these scans new to this run; those the cache lacks are asked in `background`."""
        enhanced = [
            (key, scan)
            for key, scan in scans.items()
            if scan.state is ScanState.COMPLETE and scan.scan_type == ScanType.ENHANCED and scan.findings
        ]
        ids = [
            v
            for v in lookup_ids(f.vulnerability_id for _, s in enhanced for f in s.findings)
            if v not in self.seen
        ]
        self.seen.update(ids)
        intel = ports.vulnerabilities
        if not ids or intel is None:
            return _KevAsk([], [], None)
        ask = stale(self.state.kev, ids, self.sig.now, intel.ttl)
        if not ask:
            return _KevAsk(ids, [], None)
        self.asked += len(ask)
        region = min(key[0].region or "" for key, _ in enhanced)
        return _KevAsk(ids, ask, background.submit(intel.search, ask, region, self.sig.now))

    def merge(self, job: _KevAsk, result: RunResult) -> None:
        """Wait for a batch's lookups and fill `sig.kev` for its CVEs (in the run's thread)."""
        if job.answer is not None:
            answer = job.answer.result()
            self.state.kev.update(answer.entries)
            failed = len(job.ask) - len(answer.entries)
            if failed:
                detail = "; ".join(answer.errors) or "not asked after a refusal"
                result.record_error(f"kev: {failed} CVE(s) not looked up (kev unknown for them): {detail}")
                for cause in answer.causes:
                    result.record_cause(cause)
        self.sig.kev.update({v: self.state.kev[v] for v in job.ids if v in self.state.kev})

    def finish(self, rlog: _RunLog) -> None:
        """Keep only the CVEs this run found (bounded), and say what was asked."""
        self.state.kev = bounded(self.state.kev, self.seen)
        if not self.seen:
            return
        rlog(
            "kev_looked_up",
            cves=len(self.seen),
            asked=self.asked,
            cached=len(self.seen) - self.asked,
            kev=sum(1 for e in self.sig.kev.values() if e.kev),
        )


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
    holder: str | None = None,
) -> RunResult:
    """Run one scan of `spec` under the policy's run lease (docs/run-protocol.md).

    Never raises for AWS/Jira faults during the run (they are recorded); raises LeaseHeld when
    another run holds the policy, or the ScanError of a lease that could not be read or written
    (nothing was written then), and Cancelled. The lease is released in every outcome.
    """
    started = clock.now()
    run_id = run_id or new_run_id(started)
    deadline = started + timedelta(seconds=spec.run_deadline_seconds)
    prefix = spec.report.s3.prefix
    lease = RunLease.acquire(
        ports.reports,
        lease_key(prefix, policy.namespace, policy.name),
        policy=policy.key,
        run_id=run_id,
        holder=holder or default_holder(),
        clock=clock,
        deadline=deadline,
    )
    try:
        lease.start()
        guard = Guard(cancel, clock, deadline, spec.run_deadline_seconds, lease)
        return _Run(policy, spec, ports, clock, run_id, started, guard, progress).execute(lease.how)
    finally:
        lease.release()


@dataclass
class _Run:
    """One run's steps, in order; `execute` is the whole of it."""

    policy: PolicyRef
    spec: PolicySpec
    ports: Ports
    clock: Clock
    run_id: str
    started: datetime
    guard: Guard
    progress: Progress | None
    fatal: bool = False

    def __post_init__(self) -> None:
        self.result = RunResult(
            run_id=self.run_id, policy=self.policy.key, started=self.started, dry_run=self.spec.dry_run
        )
        self.rlog = _RunLog(self.clock, self.run_id)
        prefix = self.spec.report.s3.prefix
        self.state_key = state_key(prefix, self.policy.namespace, self.policy.name)
        self.folder = run_folder(prefix, self.started, self.policy.namespace, self.policy.name, self.run_id)
        self.images: list[ImageResult] = []
        self.new_ids: dict[str, list[str]] = {}
        self.written: dict[str, str] = {}  # per-image object key -> link
        self.committed: list[str] = []  # run-level objects stored, relative to the folder
        self.state = RunState()
        self.signals = RunSignals(now=self.started)
        self.state_etag: str | None = None
        self.state_readable = True
        self.ticket_keys: tuple[str, ...] = ()
        self.account_names: dict[str, str] = {}  # multi-account: names Organizations told

    def _progress(self, stage: str, done: int, total: int) -> None:
        if self.progress:
            self.progress(stage, done, total)

    def _settle(self) -> None:
        """Recompute the outcome from what is recorded so far (after every write that can fail)."""
        self.result.finish(self.clock.now(), fatal=self.fatal)

    def execute(self, lease_how: str) -> RunResult:
        """Scan, report, sync tickets, then commit the run folder with index.json last."""
        result, rlog, spec = self.result, self.rlog, self.spec
        rlog(
            "run_started",
            policy=self.policy.key,
            dryRun=spec.dry_run,
            regions=spec.aws.all_regions,
            deadline=self.guard.deadline.isoformat(),
            lease=lease_how,
        )
        self.read_state()
        expired_used: set[str] = set()
        inventory_errors = 0
        try:
            self.guard.enter("taskDefinitions")
            self._progress("task definitions", 0, 1)
            errors_before = result.errors_total
            prefetch = self.inventory()
            running_td_tags(self.images, spec, self.ports, self.state, result, self.started)
            inventory_errors = result.errors_total - errors_before  # listing errors only, not the state's
            self._progress("task definitions", 1, 1)
            self.guard.enter("digests")
            resolve_digests(
                self.images, spec, self.ports, result, rlog, prefetch.digests if prefetch else None
            )
            if spec.task_definitions.running_view:
                self.images = fold_running_rows(self.images)
            self.guard.enter("findings")
            seen = _Seen()
            # The state's own map (tens of thousands of entries on L), not a copy: replaced at the end.
            self.signals = RunSignals(now=self.started, first_seen=self.state.first_seen)
            expired_used = read_findings(
                self.images,
                spec,
                self.ports,
                result,
                rlog,
                self.state,
                self.signals,
                self.guard,
                self.progress,
                seen,
                prefetch.scans if prefetch else None,
            )
            prefetch = None  # what it read is in the images now
            self.signals.shared.clear()  # the findings hold what they share
            assess_runtime(self.images, spec, self.state, seen, self.started)
            result.running_view = spec.task_definitions.running_view
            self.guard.enter("coverage")
            flag_coverage(self.images, self.ports, result, rlog, self.started)
        except RunAborted as exc:
            self.abort(exc)
        self.apply_rules(expired_used)
        if not self.fatal:
            try:
                self.guard.enter("report")
                if self.ports.release_reads is not None:
                    self.ports.release_reads()
                self.write_image_objects()
                self.guard.enter("tickets")
                self.sync_tickets(inventory_complete=not inventory_errors)
                self.guard.enter("notify")
                self.notify()
                self.guard.enter("commit")
            except RunAborted as exc:
                self.abort(exc)
        self.commit()
        return result

    def inventory(self) -> Prefetch | None:
        """The accounts (multi-account) and their images; what was prefetched meanwhile, if anything."""
        spec, result, rlog = self.spec, self.result, self.rlog
        accounts = select_accounts(spec, self.ports, result, rlog) if spec.aws.multi_account else []
        self.account_names = {a.id: a.name for a in accounts if a.name}
        if not spec.aws.multi_account:
            self.images = collect_images(spec, self.ports, self.state, result, rlog, self.guard)
            return None
        # Digests, findings and KEV data are read while the inventory still runs.
        prefetch = Prefetch(spec, self.ports, self.state, self.started, self.guard)
        try:
            self.images = collect_images(
                spec, self.ports, self.state, result, rlog, self.guard, accounts, prefetch
            )
        finally:
            prefetch.close()
        prefetch.handover(self.state)
        rlog(
            "prefetched",
            batches=prefetch.batches,
            digests=len(prefetch.digests),
            scans=len(prefetch.scans),
            kevAsked=prefetch.kev_asked,
        )
        return prefetch

    def notify(self) -> None:
        """Tell each spec.notify destination what changed; before the state, which remembers it."""
        self._settle()
        notify(
            self.policy,
            self.spec,
            self.images,
            self.ports,
            self.state,
            self.result,
            self.rlog,
            report_link=self.ports.reports.link(f"{self.folder}/index.html"),
            jira_keys=self.ticket_keys,
        )

    def abort(self, exc: RunAborted) -> None:
        """The run stopped itself: Failed, naming the stage; the state is kept as it was."""
        self.fatal = True
        self.result.fail_stage(exc.stage, str(exc))
        self.rlog("run_aborted", "warning", stage=exc.stage, error=str(exc))

    def read_state(self) -> None:
        """The state object and its ETag (the state is written back only if nobody changed it)."""
        try:
            found = self.ports.reports.read(self.state_key)
        except ScanError as exc:
            # Without the state the run is only slower (no revision cache) and "new since" is unknown.
            self.rlog("state_unreadable", "warning", error=str(exc))
            self.result.record_error(f"state: {exc}")
            self.state_readable = False
            return
        key, scope = self.ports.state_key, self.policy.key
        if found is not None:
            self.state, self.state_etag = load_state(found.body, key=key, scope=scope), found.etag
        else:
            self.state = load_state(None, key=key, scope=scope)
        if self.state.trust:  # the reason only; the key never reaches the log
            event, level = (
                ("state_untrusted", "warning") if key is not None else ("state_unauthenticated", "info")
            )
            self.rlog(event, level, reason=self.state.trust)

    def apply_rules(self, expired_used: set[str]) -> None:
        """Fold the images into the result; which findings are new since the last run."""
        result = self.result
        expired = expired_suppressions(self.spec.suppressions, self.started.date())
        self.expired = expired
        result.expired_suppressions = len(expired)
        result.add_images(self.images)
        for img in self.images:
            before = set(self.state.findings.get(img.ref.display, []))
            if img.findings and self.state.last_run_id:
                self.new_ids[img.ref.display] = sorted({f.vulnerability_id for f in img.findings} - before)
        result.report_uri = self.ports.reports.uri(f"{self.folder}/index.json")
        self.rlog(
            "rules_applied",
            affected=result.affected_images,
            findings=result.findings_total,
            expiredSuppressionsUsed=sorted(expired_used),
        )

    def write_image_objects(self) -> None:
        """The per-image objects, written as they are rendered (memory stays flat with the fleet)."""
        reports, guard = self.ports.reports, self.guard

        def put(obj: ReportObject) -> str | None:
            if guard.is_set():
                return "stopped"
            try:
                reports.put(obj.key, obj.body, obj.content_type)
            except ScanError as exc:
                return str(exc)
            return None

        # Two objects per affected image: as many writes at once as the S3 client's 16 pooled
        # connections (S3 takes 3,500 PUT/s per prefix); multi-account fleets have thousands of
        # affected images: more writes at once, within the cap (128 x ~20 PUT/s each stays under
        # the prefix's 3,500/s). Writes stream: an object is rendered when a write is free (at most
        # twice as many objects as writes in memory), never a chunk waiting for its slowest write.
        workers = min(128, self.ports.fanout.max_concurrency) if self.spec.aws.multi_account else 16
        ahead = max(2 * workers, REPORT_CHUNK)
        inflight: dict[Future[str | None], ReportObject] = {}

        def settle(done: Iterable[Future[str | None]]) -> None:
            for future in done:
                obj = inflight.pop(future)
                error = future.result()
                if error is None:
                    self.written[obj.key] = reports.link(obj.key)
                elif error != "stopped":
                    self.result.record_error(f"report object {obj.key}: {error}")

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="report") as pool:
            for obj in render_images(
                self.folder, self.policy, self.images, self.run_id, self.new_ids, self.account_names
            ):
                if len(inflight) >= ahead:
                    settle(wait(inflight, return_when=FIRST_COMPLETED).done)
                    if guard.is_set():
                        break
                inflight[pool.submit(put, obj)] = obj
            settle(wait(inflight).done)
        guard.check()
        self._progress("report", 1, 2)

    def sync_tickets(self, *, inventory_complete: bool) -> None:
        """Jira: create/update/close tickets (before the state, so the state follows Jira)."""
        result, spec, ports = self.result, self.spec, self.ports
        if ports.tickets is None or spec.jira is None:
            return
        links = {}
        for img in self.images:
            if img.affected:
                # The page for people when it is stored, else the JSON.
                for key in (image_page_key(self.folder, img), image_report_key(self.folder, img)):
                    if key in self.written:
                        links[img.ref.display] = self.written[key]
                        break
        request = TicketRequest(
            policy=self.policy,
            spec=spec,
            images=self.images,
            run_id=self.run_id,
            now=self.clock.now(),
            report_links=links,
            run_log_link=ports.reports.link(f"{self.folder}/run.log.jsonl"),
            index_link=ports.reports.link(f"{self.folder}/index.html"),
            dry_run=spec.dry_run,
            # A partial inventory must not read as "image no longer used" and close its ticket.
            inventory_complete=inventory_complete,
        )
        try:
            report = ports.tickets.sync(request)
        except ScanError as exc:
            result.fail_stage("tickets", str(exc))
            result.record_cause(str(exc.cause or ""))
            return
        result.tickets = dict(report.actions)
        self.ticket_keys = jira_keys(report.planned)
        result.jira_requests = report.requests
        if report.planned:
            self.rlog("tickets_planned", plan=report.planned[:500])
        for err in report.errors:
            result.record_error(f"jira: {err}")
        if not report.synced:
            detail = "; ".join(report.errors) or "tickets not fully synced"
            result.stage_failures["tickets"] = clip(f"{report.reason}: {detail}")
        self.rlog("tickets_synced", actions=report.actions, requests=report.requests, synced=report.synced)

    # ---- the commit protocol: every other object first, index.json last

    def commit(self) -> None:
        """summary.csv, the state, index.html, run.log.jsonl, then index.json with the final outcome."""
        self._settle()
        self.put_run_object(
            "summary.csv", render_csv_bytes(self.images, self.account_names), "text/csv; charset=utf-8"
        )
        self.write_state()
        self._settle()
        # Rendered straight to bytes and let go once stored: on a large fleet the page is megabytes,
        # and the run log and index.json are rendered after it.
        html = render_html_bytes(
            self.images,
            self.result,
            self._relative_links(image_report_key),
            self.expired,
            self.account_names,
            pages=self._relative_links(image_page_key),
        )
        self.put_run_object("index.html", html, "text/html; charset=utf-8")
        del html
        self._settle()
        self.rlog(
            "run_finished",
            result=self.result.outcome.value,
            images=self.result.images_total,
            findings=self.result.findings_total,
            errors=self.result.errors_total,
        )
        self.put_run_object("run.log.jsonl", render_log(self.rlog.lines), "application/x-ndjson")
        self.write_index()
        self._progress("report", 2, 2)

    def _relative_links(self, key_of: Callable[[str, ImageResult], str]) -> dict[str, str]:
        # Relative links, so index.html works from a downloaded copy too; only objects stored.
        out = {}
        for img in self.images:
            key = key_of(self.folder, img)
            if img.affected and key in self.written:
                out[img.ref.raw] = key[len(self.folder) + 1 :]
        return out

    def put_run_object(self, name: str, body: bytes, content_type: str) -> bool:
        """Store one run-level object; a failure is recorded (the run is at best partial)."""
        try:
            self.ports.reports.put(f"{self.folder}/{name}", body, content_type)
        except ScanError as exc:
            self.result.fail_stage("report", f"{name}: {exc}")
            self.result.record_cause(str(exc.cause or ""))
            self.rlog("report_object_failed", "warning", object=name, error=str(exc))
            return False
        self.committed.append(name)
        return True

    def write_state(self) -> None:
        """The state, only if nobody wrote it since this run read it (If-Match / If-None-Match)."""
        if self.fatal:
            self.rlog("state_kept", reason="the run did not finish: the previous state stays")
            return
        if not self.state_readable:
            self.result.record_error("state: not written, it could not be read at the start")
            return
        findings_now = {img.ref.display: [f.vulnerability_id for f in img.findings] for img in self.images}
        # First sightings: this run's findings, plus those of images still used but not scanned now
        # (a failed scan is not a fix); everything else is gone and forgotten.
        unscanned = {img.ref.display for img in self.images if img.status is not ImageStatus.SCANNED}
        first_seen = self.signals.seen_now  # extended in place: no second map of the fleet's findings
        if unscanned:
            for k, t in self.state.first_seen.items():
                if image_of_key(k) in unscanned:
                    first_seen.setdefault(k, t)
        self.state.first_seen = first_seen
        body = dump_state(
            self.state, self.run_id, findings_now, key=self.ports.state_key, scope=self.policy.key
        )
        try:
            self.ports.reports.put_if(self.state_key, body, "application/json", etag=self.state_etag)
        except ConflictError as exc:
            self.result.fail_stage(
                "state",
                f"another writer changed the state object since this run read it; not overwritten ({exc})",
            )
            self.rlog("state_conflict", "warning", error=str(exc))
        except ScanError as exc:
            self.result.record_error(f"state: {exc}")
            self.result.record_cause(str(exc.cause or ""))
            self.rlog("state_write_failed", "warning", error=str(exc))

    def write_index(self) -> None:
        """index.json, last: its presence means every object it lists is stored."""
        result = self.result
        # Taken now: every call of the run except this PutObject and the lease release after it.
        if self.ports.aws_calls is not None:
            result.aws_calls = self.ports.aws_calls()
        if self.ports.aws_errors is not None:
            result.aws_errors = self.ports.aws_errors()
        self._settle()
        body = render_index_json(
            self.folder,
            self.policy,
            self.images,
            result,
            self.new_ids,
            self.expired,
            written=set(self.written),
            objects=self.committed,
            account_names=self.account_names,
        )
        try:
            self.ports.reports.put(f"{self.folder}/index.json", body, "application/json")
        except ScanError as exc:
            # No index.json: the folder is incomplete by definition, and the run failed.
            self.fatal = True
            result.fail_stage("report", f"index.json: {exc}")
            result.record_cause(str(exc.cause or ""))
            result.report_uri = ""
            self._settle()
            self.rlog("run_failed", "warning", result=result.outcome.value, error=f"index.json: {exc}")
            with contextlib.suppress(ScanError):  # best effort: say so in the run log too
                self.ports.reports.put(
                    f"{self.folder}/run.log.jsonl", render_log(self.rlog.lines), "application/x-ndjson"
                )
