"""Prometheus metrics of the operator, on their own registry and port.

Cardinality is bounded: labels are the policy (namespace, name) and small fixed vocabularies
(result, image status, severity, pipeline stage, the few AWS operations the adapters call,
Jira action), never an image, repository, CVE or run id. A deleted policy's series are removed.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterable
from datetime import datetime

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

from ecs_scan_operator.core.model import SEVERITY_ORDER, ImageStatus
from ecs_scan_operator.core.result import PRIORITIES, Outcome, RunResult

POLICY = ("namespace", "policy")
DURATION_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
_STAGE = re.compile(r"^([A-Za-z]+)")  # "taskDefinitions[eu-west-1]" -> "taskDefinitions"


def stage_label(stage: str) -> str:
    """A pipeline stage without its region suffix (keeps the label set small)."""
    match = _STAGE.match(stage)
    return match.group(1) if match else "other"


class Metrics:
    """The operator's metrics; one instance per process (tests make their own registry)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process_metrics: bool = False) -> None:
        self.registry = registry or CollectorRegistry()
        if process_metrics:
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                self.registry.register(collector)
        r = self.registry
        self.runs = Counter("ecsscan_runs", "Runs finished, by result.", [*POLICY, "result"], registry=r)
        self.run_duration = Histogram(
            "ecsscan_run_duration_seconds",
            "Wall time of finished runs.",
            POLICY,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.runs_in_progress = Gauge("ecsscan_runs_in_progress", "Runs executing now.", registry=r)
        self.run_slots = Gauge("ecsscan_run_slots", "The global limit on concurrent runs.", registry=r)
        self.images = Gauge(
            "ecsscan_images", "Images of the last run, by status.", [*POLICY, "status"], registry=r
        )
        self.findings = Gauge(
            "ecsscan_findings",
            "Findings at or above the threshold (not suppressed) in the last run, by severity.",
            [*POLICY, "severity"],
            registry=r,
        )
        self.redeploy_needed = Gauge(
            "ecsscan_images_redeploy_needed",
            "Images of the last run whose affected digest still runs while the tag already points at a"
            " digest without the findings (policies with a running view).",
            POLICY,
            registry=r,
        )
        self.coverage_at_risk = Gauge(
            "ecsscan_images_coverage_at_risk",
            "Running images of the last run past Amazon Inspector's re-scan window (stale findings).",
            POLICY,
            registry=r,
        )
        self.findings_by_priority = Gauge(
            "ecsscan_findings_by_priority",
            "Actionable findings of the last run by priority (P1..P4; findings without signals have none).",
            [*POLICY, "priority"],
            registry=r,
        )
        self.findings_overdue = Gauge(
            "ecsscan_findings_overdue",
            "Actionable findings past their due date in the last run, by priority (P1..P4).",
            [*POLICY, "priority"],
            registry=r,
        )
        self.run_errors = Counter(
            "ecsscan_run_errors",
            "Errors recorded by runs, by pipeline stage.",
            [*POLICY, "stage"],
            registry=r,
        )
        self.aws_calls = Counter(
            "ecsscan_aws_api_calls",
            "AWS API calls made by runs, by service and operation.",
            [*POLICY, "service", "operation"],
            registry=r,
        )
        self.aws_errors = Counter(
            "ecsscan_aws_api_errors",
            "AWS API calls that failed after retries, by service and operation.",
            [*POLICY, "service", "operation"],
            registry=r,
        )
        self.jira_requests = Counter(
            "ecsscan_jira_requests",
            "HTTP requests made to Jira by runs (searches and writes).",
            POLICY,
            registry=r,
        )
        self.jira_actions = Counter(
            "ecsscan_jira_ticket_actions",
            "Jira ticket actions taken (or planned in a dry run), by action.",
            [*POLICY, "action"],
            registry=r,
        )
        self.skipped = Counter(
            "ecsscan_skipped_runs",
            "Runs skipped: later than startingDeadlineSeconds, or another run held the policy lease.",
            POLICY,
            registry=r,
        )
        self.last_success = Gauge(
            "ecsscan_last_success_timestamp_seconds",
            "When the last run that wrote a report ended (Unix time).",
            POLICY,
            registry=r,
        )
        self.last_outcome = Gauge(
            "ecsscan_last_run_outcome",
            "1 for the result of the policy's last finished run, 0 for the other results.",
            [*POLICY, "result"],
            registry=r,
        )
        self.schedule_interval = Gauge(
            "ecsscan_schedule_interval_seconds",
            "Seconds between the policy's scheduled times around now (absent while suspended).",
            POLICY,
            registry=r,
        )
        self.kube_requests = Counter(
            "ecsscan_kubernetes_api_requests",
            "Kubernetes API requests of the controller (watches and Events posted by kopf not counted).",
            ["call"],
            registry=r,
        )
        self.kube_errors = Counter(
            "ecsscan_kubernetes_api_errors",
            "Failed Kubernetes API calls of the controller.",
            ["call"],
            registry=r,
        )
        self.leader = Gauge("ecsscan_leader", "1 while this replica is the leader.", registry=r)
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str], set[tuple[str, ...]]] = {}
        self._successes: dict[tuple[str, str], float] = {}

    def _seen(self, namespace: str, policy: str, *labels: str) -> None:
        with self._lock:
            self._known.setdefault((namespace, policy), set()).add(labels)

    def run_finished(self, namespace: str, policy: str, result: RunResult, seconds: float) -> None:
        """Record one finished run."""
        self.runs.labels(namespace, policy, result.outcome.value).inc()
        self.run_duration.labels(namespace, policy).observe(max(0.0, seconds))
        self._seen(namespace, policy, "runs", result.outcome.value)
        for status in ImageStatus:
            self.images.labels(namespace, policy, status.value).set(
                result.images_by_status.get(status.value, 0)
            )
        for severity in SEVERITY_ORDER:
            self.findings.labels(namespace, policy, severity.value).set(
                result.findings_by_severity.get(severity.value, 0)
            )
        self._running_view(namespace, policy, result)
        for priority in PRIORITIES:  # a fixed label set: 4 series per policy each
            self.findings_by_priority.labels(namespace, policy, priority).set(
                result.findings_by_priority.get(priority, 0)
            )
            self.findings_overdue.labels(namespace, policy, priority).set(
                result.overdue_by_priority.get(priority, 0)
            )
        for stage in {stage_label(s) for s in result.stage_failures}:
            self.run_errors.labels(namespace, policy, stage).inc()
            self._seen(namespace, policy, "run_errors", stage)
        for key, count in result.aws_calls.items():
            service, _, operation = key.partition(":")
            self.aws_calls.labels(namespace, policy, service, operation or service).inc(count)
            self._seen(namespace, policy, "aws_calls", service, operation or service)
        for key, count in result.aws_errors.items():
            service, _, operation = key.partition(":")
            self.aws_errors.labels(namespace, policy, service, operation or service).inc(count)
            self._seen(namespace, policy, "aws_errors", service, operation or service)
        if result.jira_requests:
            self.jira_requests.labels(namespace, policy).inc(result.jira_requests)
            self._seen(namespace, policy, "jira_requests")
        for action, count in result.tickets.items():
            if count:
                self.jira_actions.labels(namespace, policy, action).inc(count)
                self._seen(namespace, policy, "jira_actions", action)
        if result.completed is not None and result.outcome.value != "Failed":
            self._set_last_success(namespace, policy, result.completed.timestamp())
        for outcome in Outcome:
            self.last_outcome.labels(namespace, policy, outcome.value).set(
                1 if outcome is result.outcome else 0
            )

    def _running_view(self, namespace: str, policy: str, result: RunResult) -> None:
        if result.running_view:
            self.redeploy_needed.labels(namespace, policy).set(result.redeploy_needed)
            self.coverage_at_risk.labels(namespace, policy).set(result.coverage_at_risk)
        elif result.outcome is not Outcome.FAILED:  # the policy dropped its running view
            _remove(self.redeploy_needed, namespace, policy)
            _remove(self.coverage_at_risk, namespace, policy)

    def policy_scheduled(
        self, namespace: str, policy: str, interval: float | None, last_success: datetime | None
    ) -> None:
        """Record the schedule's interval and the last success known from the status.

        The status survives restarts while the gauges do not: seeding the last-success gauge
        from it keeps the "no successful run" alert right after the operator restarts.
        """
        if interval is None:  # suspended, or no scheduled time ahead: nothing is overdue
            _remove(self.schedule_interval, namespace, policy)
        else:
            self.schedule_interval.labels(namespace, policy).set(interval)
        if last_success is not None:
            self._set_last_success(namespace, policy, last_success.timestamp())

    def _set_last_success(self, namespace: str, policy: str, when: float) -> None:
        # Never moves back: a run that just finished may be newer than a status read before it.
        with self._lock:
            when = max(when, self._successes.get((namespace, policy), 0.0))
            self._successes[(namespace, policy)] = when
        self.last_success.labels(namespace, policy).set(when)

    def run_skipped(self, namespace: str, policy: str) -> None:
        """A run was skipped (too late, or the policy lease was held elsewhere)."""
        self.skipped.labels(namespace, policy).inc()

    def forget(self, namespace: str, policy: str) -> None:
        """Drop a deleted policy's series."""
        with self._lock:
            extra = self._known.pop((namespace, policy), set())
            self._successes.pop((namespace, policy), None)
        simple: Iterable[Gauge | Counter | Histogram] = (
            self.run_duration,
            self.skipped,
            self.last_success,
            self.schedule_interval,
            self.redeploy_needed,
            self.coverage_at_risk,
        )
        for metric in simple:
            _remove(metric, namespace, policy)
        for status in ImageStatus:
            _remove(self.images, namespace, policy, status.value)
        for severity in SEVERITY_ORDER:
            _remove(self.findings, namespace, policy, severity.value)
        for outcome in Outcome:
            _remove(self.last_outcome, namespace, policy, outcome.value)
        for priority in PRIORITIES:
            _remove(self.findings_overdue, namespace, policy, priority)
            _remove(self.findings_by_priority, namespace, policy, priority)
        by_name: dict[str, Gauge | Counter | Histogram] = {
            "runs": self.runs,
            "run_errors": self.run_errors,
            "aws_calls": self.aws_calls,
            "aws_errors": self.aws_errors,
            "jira_requests": self.jira_requests,
            "jira_actions": self.jira_actions,
        }
        for name, *labels in extra:
            _remove(by_name[name], namespace, policy, *labels)

    def serve(self, port: int) -> None:
        """Expose /metrics on 0.0.0.0:port (a daemon thread)."""
        start_http_server(port, registry=self.registry)


def _remove(metric: Gauge | Counter | Histogram, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never set for this policy
        metric.remove(*labels)
