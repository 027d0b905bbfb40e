"""The run side of the controller: Jira credentials, the worker-thread body, the pool, metrics, kopf glue."""

from __future__ import annotations

import base64
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import SecretStr

from ecs_scan_operator.adapters.jira_credentials import JiraCredentials
from ecs_scan_operator.clock import SystemClock
from ecs_scan_operator.controller.metrics import Metrics, stage_label
from ecs_scan_operator.controller.runs import RunPool, execute_run, read_jira_credentials
from ecs_scan_operator.core.policy import PolicyRef, parse_spec
from ecs_scan_operator.core.result import Outcome, RunResult
from ecs_scan_operator.errors import AuthError, Cancelled, NotFoundError, PermanentError
from ecs_scan_operator.settings import get_settings
from tests.unit.test_controller_worker import FakeKube

SPEC = parse_spec(
    {"schedule": "@daily", "aws": {"region": "us-east-1"}, "report": {"s3": {"bucket": "reports"}}}
)
REF = PolicyRef(namespace="ns", name="p")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("data", "scheme"),
    [
        ({"email": b64("bot@example.com"), "apiToken": b64("tok-value-1\n")}, "Basic"),
        ({"token": b64("pat-value-1")}, "Bearer"),
    ],
)
def test_jira_credentials(data: dict[str, str], scheme: str) -> None:
    kube = FakeKube()
    kube.secrets[("ns", "jira")] = data
    creds = read_jira_credentials(kube, "ns", "jira")
    assert "-value-1" not in repr(creds) and "-value-1" not in str(creds)
    header = creds.auth()(requests.Request("GET", "https://jira.example.com/").prepare()).headers
    assert header["Authorization"].split()[0] == scheme
    if scheme == "Basic":
        assert creds.secrets()[0] == "tok-value-1"  # stripped of the newline


def test_jira_credentials_problems_are_named_without_values() -> None:
    kube = FakeKube()
    with pytest.raises(NotFoundError, match="ns/absent"):
        read_jira_credentials(kube, "ns", "absent")
    kube.secrets[("ns", "half")] = {"email": b64("e")}
    with pytest.raises(PermanentError, match="ns/half: invalid Jira credentials: Jira Cloud needs both"):
        read_jira_credentials(kube, "ns", "half")
    kube.secrets[("ns", "both")] = {"email": b64("e"), "apiToken": b64("t"), "token": b64("pat")}
    with pytest.raises(PermanentError, match=r"ns/both: .*not both"):
        read_jira_credentials(kube, "ns", "both")
    kube.secrets[("ns", "none")] = {"other": b64("x")}
    with pytest.raises(PermanentError, match=r"ns/none: .*no Jira credentials"):
        read_jira_credentials(kube, "ns", "none")
    kube.secrets[("ns", "bad")] = {"token": "!!not-base64!!"}
    with pytest.raises(PermanentError, match="not valid base64") as info:
        read_jira_credentials(kube, "ns", "bad")
    assert "!!not-base64!!" not in str(info.value)


class Clock:
    def now(self) -> datetime:
        return datetime(2025, 3, 1, tzinfo=UTC)


def test_execute_run_maps_setup_failures_and_bugs_to_a_failed_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import ecs_scan_operator.bootstrap as bootstrap
    import ecs_scan_operator.pipeline as pipeline

    def no_role(*_: Any, **__: Any) -> Any:
        raise AuthError("sts:AssumeRole AccessDenied")

    monkeypatch.setattr(bootstrap, "build_ports", no_role)
    result = execute_run(REF, SPEC, "r1", threading.Event(), None, Clock())
    assert result.outcome is Outcome.FAILED and "AccessDenied" in result.errors[0]

    monkeypatch.setattr(bootstrap, "build_ports", lambda *a, **k: object())

    def buggy(*_: Any, **__: Any) -> RunResult:
        raise KeyError("boom")

    monkeypatch.setattr(pipeline, "run_policy", buggy)
    result = execute_run(REF, SPEC, "r2", threading.Event(), None, Clock())
    assert result.outcome is Outcome.FAILED and "internal error: KeyError" in result.errors[0]

    def cancelled(*_: Any, **__: Any) -> RunResult:
        raise Cancelled("run cancelled")

    monkeypatch.setattr(pipeline, "run_policy", cancelled)
    with pytest.raises(Cancelled):
        execute_run(REF, SPEC, "r3", threading.Event(), None, Clock())


def test_execute_run_passes_the_run_id_cancel_and_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    import ecs_scan_operator.bootstrap as bootstrap
    import ecs_scan_operator.pipeline as pipeline

    seen: dict[str, Any] = {}

    def ports(
        policy: PolicyRef,
        spec: Any,
        *,
        jira_credentials: Any,
        state_key: Any,
        session_identity: bool,
        notify_secrets: Any,
        notify_allow_private: bool,
        notify_destinations: tuple[str, ...] | None,
        account_scope: Any,
    ) -> str:
        assert account_scope is None  # a one-account policy: no account scope travels
        seen["creds"], seen["session_identity"] = jira_credentials, session_identity
        seen["notify_destinations"] = notify_destinations
        seen["state_key"] = state_key.get_secret_value()
        assert notify_secrets is None and notify_allow_private is False  # the spec has no notify
        return "ports"

    def run(
        policy: PolicyRef, spec: Any, ports: Any, clock: Any, *, run_id: str, cancel: threading.Event
    ) -> RunResult:
        seen.update(run_id=run_id, cancel=cancel, ports=ports)
        return RunResult(run_id=run_id, policy=policy.key, started=clock.now())

    monkeypatch.setattr(bootstrap, "build_ports", ports)
    monkeypatch.setattr(pipeline, "run_policy", run)
    monkeypatch.setenv("ECS_SCAN_STATE_KEY", "s" * 40)  # the chart's Secret, as the pod sees it
    get_settings.cache_clear()
    cancel = threading.Event()
    creds = JiraCredentials(token=SecretStr("x"))
    try:
        execute_run(REF, SPEC, "r9", cancel, creds, Clock(), notify_destinations=("hooks.slack.com",))
    finally:
        get_settings.cache_clear()
    assert seen == {
        "creds": creds,
        "notify_destinations": ("hooks.slack.com",),
        "state_key": "s" * 40,
        "session_identity": True,
        "run_id": "r9",
        "cancel": cancel,
        "ports": "ports",
    }


def test_notify_secrets_are_read_in_the_run_only_for_policies_that_notify(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A policy with spec.notify gets a reader of its namespace's Secrets; values stay SecretStr."""
    import ecs_scan_operator.bootstrap as bootstrap
    import ecs_scan_operator.pipeline as pipeline

    class Kube:
        def read_secret(self, namespace: str, name: str) -> dict[str, str]:
            assert (namespace, name) == ("ns", "hook")
            url = base64.b64encode(b"https://hooks.example.com/x\n").decode()
            return {"url": url} if self.good else {"url": url, "bad": "%%"}

        good = False

    seen: dict[str, Any] = {}

    def ports(policy: PolicyRef, spec: Any, **kw: Any) -> str:
        seen.update(kw)
        return "ports"

    def run(policy: PolicyRef, spec: Any, ports: Any, clock: Any, **kw: Any) -> RunResult:
        return RunResult(run_id="r", policy=policy.key, started=clock.now())

    monkeypatch.setattr(bootstrap, "build_ports", ports)
    monkeypatch.setattr(pipeline, "run_policy", run)
    notifying = parse_spec({**SPEC.to_wire(), "notify": [{"name": "c", "type": "slack", "secret": "hook"}]})
    execute_run(REF, notifying, "r", threading.Event(), None, Clock(), kube=Kube(), notify_allow_private=True)  # type: ignore[arg-type]
    assert seen["notify_allow_private"] is True
    with pytest.raises(PermanentError, match="key bad is not base64"):
        seen["notify_secrets"]("hook")
    Kube.good = True
    values = seen["notify_secrets"]("hook")
    assert values["url"].get_secret_value() == "https://hooks.example.com/x"
    assert "hooks.example.com" not in repr(values)
    seen.clear()
    execute_run(REF, SPEC, "r", threading.Event(), None, Clock(), kube=Kube())  # type: ignore[arg-type]
    assert seen["notify_secrets"] is None  # no reader for a policy without spec.notify


async def test_pool_tracks_active_runs_until_their_thread_ends() -> None:
    release = threading.Event()

    def fn(
        policy: PolicyRef, spec: Any, run_id: str, cancel: threading.Event, creds: Any, /, **_: Any
    ) -> RunResult:
        release.wait(5)
        return RunResult(run_id=run_id, policy=policy.key, started=Clock().now())

    pool = RunPool(2, run_fn=fn)
    handle = pool.submit("u1", "r1", REF, SPEC, None)
    assert pool.active("u1") is handle and pool.running() == 1
    pool.cancel_all()
    assert handle.cancel.is_set()
    release.set()
    assert handle.future.result(5).run_id == "r1"
    for _ in range(100):
        if pool.running() == 0:
            break
        threading.Event().wait(0.01)
    assert pool.active("u1") is None
    pool.shutdown()


def test_system_clock_is_utc() -> None:
    assert SystemClock().now().tzinfo is UTC


# --------------------------------------------------------------------------- metrics


def test_metric_labels_are_bounded() -> None:
    m = Metrics(CollectorRegistry())
    r = RunResult(run_id="20250301T000000Z-abc", policy="ns/p", started=Clock().now())
    r.images_by_status = {"scanned": 5, "failed": 1}
    r.findings_by_severity = {"CRITICAL": 2}
    r.fail_stage("taskDefinitions[eu-west-1]", "boom")
    r.fail_stage("taskDefinitions[us-east-1]", "boom")
    r.aws_calls = {"ecr:DescribeImages": 4}
    r.aws_errors = {"inspector2:ListFindings": 1}
    r.jira_requests = 7
    r.tickets = {"create": 2, "unchanged": 0}
    r.finish(Clock().now())
    m.run_finished("ns", "p", r, 12.5)
    text = generate_latest(m.registry).decode()
    assert "20250301T000000Z-abc" not in text  # never a run id, image or CVE in a label
    assert 'ecsscan_run_errors_total{namespace="ns",policy="p",stage="taskDefinitions"} 1.0' in text
    labels = {"namespace": "ns", "policy": "p", "action": "create"}
    assert m.registry.get_sample_value("ecsscan_jira_ticket_actions_total", labels) == 2
    errors = {"namespace": "ns", "policy": "p", "service": "inspector2", "operation": "ListFindings"}
    assert m.registry.get_sample_value("ecsscan_aws_api_errors_total", errors) == 1
    assert m.registry.get_sample_value("ecsscan_jira_requests_total", {"namespace": "ns", "policy": "p"}) == 7
    assert (
        m.registry.get_sample_value("ecsscan_images", {"namespace": "ns", "policy": "p", "status": "failed"})
        == 1
    )
    assert (
        m.registry.get_sample_value("ecsscan_run_duration_seconds_count", {"namespace": "ns", "policy": "p"})
        == 1
    )
    m.forget("ns", "p")
    assert 'policy="p"' not in generate_latest(m.registry).decode()


def test_overdue_findings_per_priority_a_fixed_label_set() -> None:
    """ecsscan_findings_overdue: the last run's overdue findings, P1..P4 always (4 series a policy)."""
    m = Metrics(CollectorRegistry())
    r = RunResult(run_id="r", policy="ns/p", started=Clock().now())
    r.overdue_by_priority = {"P1": 2, "P2": 0, "P3": 5, "P4": 0}
    r.finish(Clock().now())
    m.run_finished("ns", "p", r, 1.0)

    def overdue(priority: str) -> float | None:
        labels = {"namespace": "ns", "policy": "p", "priority": priority}
        return m.registry.get_sample_value("ecsscan_findings_overdue", labels)

    assert [overdue(p) for p in ("P1", "P2", "P3", "P4")] == [2, 0, 5, 0]
    assert generate_latest(m.registry).decode().count("ecsscan_findings_overdue{") == 4
    r.overdue_by_priority = {"P1": 0, "P2": 0, "P3": 0, "P4": 0}  # all fixed: back to 0, not stale
    m.run_finished("ns", "p", r, 1.0)
    assert overdue("P1") == 0
    m.forget("ns", "p")
    assert overdue("P1") is None


def test_findings_by_priority_a_fixed_label_set() -> None:
    """ecsscan_findings_by_priority: the last run's actionable findings, P1..P4 always."""
    m = Metrics(CollectorRegistry())
    r = RunResult(run_id="r", policy="ns/p", started=Clock().now())
    r.findings_by_priority = {"P1": 1, "P2": 3, "P3": 0, "P4": 7}
    r.finish(Clock().now())
    m.run_finished("ns", "p", r, 1.0)
    labels = {"namespace": "ns", "policy": "p"}
    got = [
        m.registry.get_sample_value("ecsscan_findings_by_priority", labels | {"priority": p})
        for p in ["P1", "P2", "P3", "P4"]
    ]
    assert got == [1, 3, 0, 7]
    m.forget("ns", "p")
    assert m.registry.get_sample_value("ecsscan_findings_by_priority", labels | {"priority": "P4"}) is None


def test_last_outcome_is_one_result_at_a_time() -> None:
    """ecsscan_last_run_outcome: 1 for the last run's result only (the RunFailed alerts read it)."""
    m = Metrics(CollectorRegistry())
    now = Clock().now()

    def outcome(result: str) -> float | None:
        labels = {"namespace": "ns", "policy": "p", "result": result}
        return m.registry.get_sample_value("ecsscan_last_run_outcome", labels)

    failed = RunResult(run_id="r1", policy="ns/p", started=now)
    failed.finish(now, fatal=True)
    m.run_finished("ns", "p", failed, 1.0)
    assert (outcome("Failed"), outcome("PartialFailure"), outcome("Succeeded")) == (1, 0, 0)
    ok = RunResult(run_id="r2", policy="ns/p", started=now)
    ok.finish(now)
    m.run_finished("ns", "p", ok, 1.0)
    assert (outcome("Failed"), outcome("PartialFailure"), outcome("Succeeded")) == (0, 0, 1)
    m.forget("ns", "p")
    assert outcome("Succeeded") is None


def test_schedule_interval_and_last_success_from_the_status() -> None:
    """The interval follows the schedule (gone while suspended); the last success never moves back."""
    m = Metrics(CollectorRegistry())
    labels = {"namespace": "ns", "policy": "p"}

    def sample(name: str) -> float | None:
        return m.registry.get_sample_value(name, labels)

    early, late = datetime(2025, 3, 1, 9, tzinfo=UTC), datetime(2025, 3, 1, 10, tzinfo=UTC)
    m.policy_scheduled("ns", "p", 3600.0, early)  # after a restart: seeded from the status
    assert sample("ecsscan_schedule_interval_seconds") == 3600
    assert sample("ecsscan_last_success_timestamp_seconds") == early.timestamp()
    ok = RunResult(run_id="r", policy="ns/p", started=late)
    ok.finish(late)
    m.run_finished("ns", "p", ok, 1.0)
    m.policy_scheduled("ns", "p", 3600.0, early)  # a status read before the run ended
    assert sample("ecsscan_last_success_timestamp_seconds") == late.timestamp()
    m.policy_scheduled("ns", "p", None, None)  # suspended
    assert sample("ecsscan_schedule_interval_seconds") is None
    m.forget("ns", "p")
    assert sample("ecsscan_last_success_timestamp_seconds") is None


def test_stage_label() -> None:
    assert stage_label("taskDefinitions[eu-west-1]") == "taskDefinitions"
    assert stage_label("tickets") == "tickets"
    assert stage_label("[x]") == "other"


# --------------------------------------------------------------------------- kopf glue


def test_kopf_glue_names_the_policy_without_its_body() -> None:
    import kopf

    from ecs_scan_operator.controller.handlers import logger_factory, object_reference
    from ecs_scan_operator.controller.scheduler import PolicyKey

    ref = PolicyKey("team-a", "p", "uid-1")
    body = object_reference(ref)
    assert (body.metadata.namespace, body.metadata.name, body.metadata.uid) == ("team-a", "p", "uid-1")
    assert (body["apiVersion"], body["kind"]) == ("ecsscan.io/v1alpha1", "ScanPolicy")
    logger = logger_factory(kopf.OperatorSettings())(ref)
    assert logger.extra is not None
    assert logger.extra["k8s_ref"] == {
        "apiVersion": "ecsscan.io/v1alpha1",
        "kind": "ScanPolicy",
        "name": "p",
        "uid": "uid-1",
        "namespace": "team-a",
    }


def test_entry_points_exist() -> None:
    from ecs_scan_operator import controller
    from ecs_scan_operator.controller import main

    assert callable(controller.run)
    assert main.handlers.FINALIZER == "ecsscan.io/finalizer"
