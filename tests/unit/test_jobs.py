"""core.jobs: the Job manifest, the compact result in the termination message, the outcome of a Job."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ecs_scan_operator.core import jobs
from ecs_scan_operator.core.jobs import (
    Ended,
    JobSettings,
    PolicyMeta,
    StillRunning,
    build_config_map,
    build_job,
    decode_result,
    encode_result,
    job_active,
    job_name,
    job_outcome,
)
from ecs_scan_operator.core.policy import parse_document, parse_spec
from ecs_scan_operator.core.result import Outcome, RunResult
from ecs_scan_operator.core.status import ActiveRun

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
POLICY = PolicyMeta(
    namespace="team-a", name="payments", uid="0b1c2d3e-aaaa-bbbb-cccc-1234567890ab", generation=7
)
RUN = ActiveRun(run_id="20261129T090000Z-abc123", started=T0, holder="op-1", scheduled_time=T0)
SETTINGS = JobSettings(
    image="registry.example/ecs-scan-operator:1.2.3",
    resources={"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    env={"AWS_REGION": "eu-west-1"},
    jira_allowed_hosts=("jira.corp.internal",),
)


def spec(**extra: Any) -> Any:
    body: dict[str, Any] = {
        "schedule": "0 6 * * *",
        "aws": {"region": "eu-west-1", "roleArn": "arn:aws:iam::111122223333:role/scan"},
        "report": {"s3": {"bucket": "reports", "prefix": "team-a"}},
        "runDeadlineSeconds": 900,
    }
    body.update(extra)
    return parse_spec(body)


JIRA = {"url": "https://example.atlassian.net", "credentialsSecret": "jira-creds", "project": "SEC"}


# --------------------------------------------------------------------------- the manifest


def test_job_runs_the_operator_image_on_the_pinned_spec_under_the_restricted_profile() -> None:
    job = build_job(POLICY, spec(serviceAccountName="scanner"), RUN, SETTINGS)
    meta, job_spec = job["metadata"], job["spec"]
    pod = job_spec["template"]["spec"]
    (container,) = pod["containers"]
    assert meta["namespace"] == "team-a" and meta["name"] == job_name("payments", RUN.run_id)
    assert meta["labels"][jobs.LABEL_POLICY_UID] == POLICY.uid
    assert meta["labels"][jobs.LABEL_RUN_ID] == RUN.run_id
    assert job_spec["template"]["metadata"]["labels"] == meta["labels"]  # the Pods are selected alike
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "ecsscan.io/v1alpha1",
            "kind": "ScanPolicy",
            "name": "payments",
            "uid": POLICY.uid,
            "controller": True,
        }
    ]
    assert job_spec["backoffLimit"] == 0
    assert job_spec["activeDeadlineSeconds"] == 900 + SETTINGS.deadline_grace_seconds
    assert job_spec["ttlSecondsAfterFinished"] == SETTINGS.ttl_seconds_after_finished
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "scanner"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["image"] == SETTINGS.image and container["resources"] == SETTINGS.resources
    assert container["terminationMessagePath"] == "/dev/termination-log"
    cmd = container["command"]
    assert cmd[:2] == ["ecs-scan-operator", "run"]
    assert cmd[cmd.index("--run-id") + 1] == RUN.run_id
    assert cmd[cmd.index("--termination-log") + 1] == "/dev/termination-log"
    assert cmd[cmd.index("-f") + 1] == f"{jobs.SPEC_DIR}/{jobs.SPEC_KEY}"
    assert "--jira-credentials-dir" not in cmd
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["policy"]["configMap"]["name"] == meta["name"]
    assert {"name": "AWS_REGION", "value": "eu-west-1"} in container["env"]


def test_default_service_account_when_the_policy_names_none() -> None:
    pod = build_job(POLICY, spec(), RUN, SETTINGS)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "default"


def test_jira_and_notify_secrets_are_mounted_files_and_the_destination_is_enforced() -> None:
    notify = [{"name": "chat", "type": "slack", "secret": "slack-hook"}]
    job = build_job(POLICY, spec(jira=JIRA, notify=notify), RUN, SETTINGS, jira_private_hosts=("10.0.0.5",))
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"jira-creds", "slack-hook"}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert jobs.JIRA_DIR in mounts and f"{jobs.NOTIFY_DIR}/slack-hook" in mounts
    assert all(m.get("readOnly") for m in container["volumeMounts"] if m["mountPath"] != jobs.TMP_DIR)
    cmd = container["command"]
    assert (
        "--enforce-jira-destination" in cmd and cmd[cmd.index("--jira-credentials-dir") + 1] == jobs.JIRA_DIR
    )
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["ECS_SCAN_JIRA_ALLOWED_HOSTS"] == "jira.corp.internal,10.0.0.5"
    # No secret value ever appears in the manifest: only Secret names.
    assert "secretKeyRef" not in json.dumps(job)


def test_the_pinned_spec_is_the_planned_generation_owned_by_the_job_and_readable_by_run() -> None:
    the_spec = spec(jira=JIRA)
    job = build_job(POLICY, the_spec, RUN, SETTINGS)
    job["metadata"]["uid"] = "job-uid-1"
    cm = build_config_map(job, POLICY, the_spec)
    assert cm["metadata"]["name"] == job["metadata"]["name"]
    assert cm["metadata"]["ownerReferences"][0] == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": job["metadata"]["name"],
        "uid": "job-uid-1",
        "controller": True,
    }
    assert cm["immutable"] is True
    doc = json.loads(cm["data"][jobs.SPEC_KEY])
    assert doc["metadata"]["generation"] == 7
    ref, parsed = parse_document(doc)  # what `ecs-scan-operator run -f` does with it
    assert ref.key == "team-a/payments" and parsed == the_spec


@pytest.mark.parametrize(
    "name",
    [
        "p",
        "payments",
        "a" * 253,
        "a" * 52 + "." + "b" * 30,
        "x-" * 40 + "y",
        "long-name.with.dots-" * 10 + "z",
    ],
)
def test_job_names_are_valid_stable_and_distinct_per_run(name: str) -> None:
    first = job_name(name, RUN.run_id)
    assert first == job_name(name, RUN.run_id)
    assert first != job_name(name, RUN.run_id + "x")
    assert len(first) <= 63
    assert first[0].isalnum() and first[-1].isalnum()
    assert all(c.isalnum() or c in "-." for c in first) and first == first.lower()


@pytest.mark.parametrize("value", ["ok", "a" * 63, "a" * 64, "bad/value", "-x", "x-", ""])
def test_label_values_are_valid_whatever_the_input(value: str) -> None:
    out = jobs.label_value(value)
    assert len(out) <= 63 and jobs._LABEL_VALUE_RE.match(out)
    assert (out == value) == (len(value) <= 63 and bool(jobs._LABEL_VALUE_RE.match(value)))


# --------------------------------------------------------------------------- the compact result


def full_result(errors: int = 0, causes: int = 0, text: str = "x") -> RunResult:
    result = RunResult(run_id=RUN.run_id, policy="team-a/payments", started=T0)
    result.images_total = 12
    result.report_uri = "s3://reports/team-a/2026-11-29/team-a/payments/r/index.json"
    result.tickets = {"created": 2, "updated": 1}
    result.aws_calls = {f"ecr:Op{i}": i for i in range(40)}
    for i in range(errors):
        result.record_error(f"error {i}: {text * 300}")
    for i in range(causes):
        result.record_cause(f"ecr:DescribeImages Cause{i}{text * 30}", i + 1)
    result.stage_failures = {"tickets": "Jira said no " + text * 300} if errors else {}
    result.finish(T0 + timedelta(minutes=3))
    return result


@pytest.mark.parametrize("text", ["x", "é", "漢", "\U0001f600", '"', "\\", "<&>", "\u2028"])
@pytest.mark.parametrize(("errors", "causes"), [(0, 0), (1, 0), (10, 10), (10, 0), (0, 10)])
def test_the_result_fits_the_termination_message_and_keeps_outcome_and_counters(
    text: str, errors: int, causes: int
) -> None:
    result = full_result(errors, causes, text)
    encoded = encode_result(result)
    assert len(encoded.encode()) <= jobs.TERMINATION_MESSAGE_BYTES
    back = decode_result(encoded, "team-a/payments")
    assert back.run_id == result.run_id and back.outcome is result.outcome
    assert back.images_total == 12 and back.completed == result.completed
    assert back.errors_total == result.errors_total
    assert back.findings_by_severity == result.findings_by_severity
    if errors:
        assert back.outcome is Outcome.PARTIAL


def test_a_small_result_is_kept_whole() -> None:
    result = full_result()
    back = decode_result(encode_result(result), "team-a/payments")
    assert back.to_dict() == result.to_dict()
    assert "truncated" not in json.loads(encode_result(result))


def test_truncation_drops_call_counters_before_errors() -> None:
    result = full_result(errors=3)
    limit = len(encode_result(result)) - 10
    doc = json.loads(encode_result(result, limit))
    assert doc["truncated"] is True and doc["awsCalls"] == {} and len(doc["errors"]) == 3


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "not JSON"),
        ("Error: something", "not JSON"),
        ("[]", "not a run result"),
        ('{"kind": "other"}', "not a run result"),
        ('{"kind": "ecsscan.io/run-result", "version": 2}', "version 2"),
        ('{"kind": "ecsscan.io/run-result", "version": 1, "id": "r", "startTime": "x"}', "outcome"),
        (
            '{"kind": "ecsscan.io/run-result", "version": 1, "result": "Succeeded", "id": "r"}',
            "no id or start",
        ),
    ],
)
def test_a_message_that_is_not_a_result_is_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(jobs.ResultUnreadable, match=why):
        decode_result(text, "team-a/payments")


def test_a_hostile_result_cannot_inject_types() -> None:
    doc = json.loads(encode_result(full_result()))
    doc.update(images=-5, imagesByStatus={"SCANNED": "many"}, errors=[1, {"a": 1}, "ok"], tickets=[1])
    back = decode_result(json.dumps(doc), "team-a/payments")
    assert back.images_total == 0 and back.images_by_status["SCANNED"] == 0
    assert back.errors == ["ok"] and back.tickets == {}


# --------------------------------------------------------------------------- the outcome


def job(*conditions: tuple[str, str, str], deleting: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": "payments-1", "creationTimestamp": "2026-11-29T09:00:00Z"},
        "status": {
            "conditions": [
                {
                    "type": t,
                    "status": "True",
                    "reason": r,
                    "message": m,
                    "lastTransitionTime": "2026-11-29T09:10:00Z",
                }
                for t, r, m in conditions
            ]
        },
    }
    if deleting:
        body["metadata"]["deletionTimestamp"] = "2026-11-29T09:11:00Z"
    return body


def pod(state: dict[str, Any], created: str = "2026-11-29T09:00:01Z", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"creationTimestamp": created},
        "status": {"containerStatuses": [{"name": "scan", "state": state}], **status},
    }


def terminated(code: int, reason: str = "Completed", message: str = "") -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "reason": reason, "message": message}}


def outcome(j: dict[str, Any], pods: list[dict[str, Any]], now: datetime = T0 + timedelta(minutes=10)) -> Any:
    return job_outcome(j, pods, run=RUN, policy="team-a/payments", now=now, stuck_after=300)


def test_a_running_job_is_still_running() -> None:
    assert outcome(job(), [pod({"running": {}})]) == StillRunning()
    assert job_active(job())
    assert not job_active(job(("Complete", "", "")))
    assert not job_active(job(deleting=True))


@pytest.mark.parametrize("partial", [False, True])
def test_a_finished_job_yields_the_result_its_pod_wrote(partial: bool) -> None:
    result = full_result(errors=1 if partial else 0)
    cond = ("Failed", "BackoffLimitExceeded", "") if partial else ("Complete", "", "")
    got = outcome(job(cond), [pod(terminated(1 if partial else 0, "Error", encode_result(result)))])
    assert isinstance(got, Ended) and not got.delete
    assert got.result.outcome is result.outcome and got.result.run_id == RUN.run_id


@pytest.mark.parametrize(
    ("condition", "pods", "expected"),
    [
        (
            ("Failed", "DeadlineExceeded", "Job was active longer than specified deadline"),
            [],
            "DeadlineExceeded",
        ),
        (
            ("Failed", "BackoffLimitExceeded", ""),
            [pod(terminated(137, "OOMKilled"))],
            "OOMKilled (exit code 137)",
        ),
        (("Failed", "BackoffLimitExceeded", ""), [pod(terminated(2, "Error"))], "Error (exit code 2)"),
        (
            ("Failed", "DeadlineExceeded", ""),
            [pod({"waiting": {"reason": "ImagePullBackOff"}})],
            "ImagePullBackOff",
        ),
        (("Complete", "", ""), [pod(terminated(0))], "completed without a result"),
        (("Failed", "BackoffLimitExceeded", ""), [pod(terminated(1, "Error", "Traceback ..."))], "not JSON"),
        (("Failed", "PodFailurePolicy", ""), [pod({}, reason="Evicted", message="low on memory")], "Evicted"),
    ],
)
def test_a_job_without_a_result_fails_naming_the_job_and_pod_reason(
    condition: tuple[str, str, str], pods: list[dict[str, Any]], expected: str
) -> None:
    got = outcome(job(condition), pods)
    assert isinstance(got, Ended)
    assert got.result.outcome is Outcome.FAILED and got.result.run_id == RUN.run_id
    assert expected in got.result.errors[0]
    assert got.result.completed == datetime(2026, 11, 29, 9, 10, tzinfo=UTC)


def test_a_result_of_another_run_is_not_taken() -> None:
    other = full_result()
    other.run_id = "someone-else"
    got = outcome(
        job(("Failed", "BackoffLimitExceeded", "")), [pod(terminated(0, "Completed", encode_result(other)))]
    )
    assert isinstance(got, Ended) and got.result.outcome is Outcome.FAILED
    assert "of run someone-else" in got.result.errors[0]


def test_the_newest_pod_speaks() -> None:
    old = pod(terminated(137, "OOMKilled"), created="2026-11-29T09:00:01Z")
    new = pod(terminated(0, "Completed", encode_result(full_result())), created="2026-11-29T09:05:00Z")
    got = outcome(job(("Complete", "", "")), [new, old])
    assert isinstance(got, Ended) and got.result.outcome is Outcome.SUCCEEDED


@pytest.mark.parametrize(
    ("waiting", "age", "ends"),
    [
        ("InvalidImageName", 1, True),
        ("CreateContainerConfigError", 1, False),
        ("CreateContainerConfigError", 301, True),
        ("ImagePullBackOff", 60, False),
        ("ImagePullBackOff", 301, True),
        ("ErrImagePull", 400, True),
        ("ContainerCreating", 301, True),
        ("ContainerCreating", 10, False),
    ],
)
def test_a_pod_that_cannot_start_ends_the_run_and_deletes_the_job(waiting: str, age: int, ends: bool) -> None:
    stuck = pod({"waiting": {"reason": waiting, "message": "nope"}}, created="2026-11-29T09:00:00Z")
    got = outcome(job(), [stuck], now=T0 + timedelta(seconds=age))
    if not ends:
        assert got == StillRunning()
        return
    assert isinstance(got, Ended) and got.delete
    assert f"did not start: {waiting}: nope" in got.result.errors[0]


def test_adoption_reads_the_run_from_the_job() -> None:
    built = build_job(POLICY, spec(), RUN, SETTINGS)
    run = jobs.active_run_of(built)
    assert run is not None and run.run_id == RUN.run_id and run.started == T0
    assert jobs.active_run_of({"metadata": {}}) is None


@pytest.mark.parametrize(("age", "ends"), [(10, False), (299, False), (300, True), (4000, True)])
def test_a_job_that_gets_no_pod_ends_the_run_after_the_start_timeout(age: int, ends: bool) -> None:
    got = outcome(job(), [], now=datetime(2026, 11, 29, 9, 0, tzinfo=UTC) + timedelta(seconds=age))
    if not ends:
        assert got == StillRunning()
        return
    assert isinstance(got, Ended) and got.delete
    assert "created no Pod within 300 s" in got.result.errors[0]


@pytest.mark.parametrize(
    "extra", [{}, {"jira": JIRA, "notify": [{"name": "c", "type": "slack", "secret": "s"}]}]
)
def test_the_manifests_pass_the_kubernetes_schemas_strictly(extra: dict[str, Any]) -> None:
    """No misspelled or unknown field (the API server would only warn and drop it)."""
    import kubernetes_validate

    the_spec = spec(**extra)
    job = build_job(POLICY, the_spec, RUN, SETTINGS)
    kubernetes_validate.validate(job, "1.33.0", strict=True)
    job["metadata"]["uid"] = "job-uid"
    kubernetes_validate.validate(build_config_map(job, POLICY, the_spec), "1.33.0", strict=True)


def test_the_grants_limits_travel_to_the_job_and_back() -> None:
    from ecs_scan_operator.core.grants import AccountScope
    from ecs_scan_operator.core.jobs import (
        grant_env,
        parse_grant_env,
    )

    scope = AccountScope("org-grant", ("1111*",), ("arn:aws:iam::*:role/scan",))
    env = grant_env(("hooks.slack.com",), scope)
    assert parse_grant_env(env) == (("hooks.slack.com",), scope)
    assert parse_grant_env(grant_env((), None)) == ((), None)  # nothing granted stays nothing
    assert grant_env(None, None) == {} and parse_grant_env({}) == (None, None)  # open mode


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ECS_SCAN_RUN_NOTIFY_DESTINATIONS", "{"),
        ("ECS_SCAN_RUN_NOTIFY_DESTINATIONS", '"hooks.slack.com"'),
        ("ECS_SCAN_RUN_NOTIFY_DESTINATIONS", "[1]"),
        ("ECS_SCAN_RUN_ACCOUNT_SCOPE", "[]"),
        ("ECS_SCAN_RUN_ACCOUNT_SCOPE", '{"grant": "g", "accounts": "1", "roleArns": []}'),
        ("ECS_SCAN_RUN_ACCOUNT_SCOPE", '{"accounts": [], "roleArns": []}'),
    ],
)
def test_a_malformed_grant_variable_is_refused_naming_it(name: str, value: str) -> None:
    from ecs_scan_operator.core.jobs import parse_grant_env

    with pytest.raises(ValueError, match=name):
        parse_grant_env({name: value})


def test_the_job_carries_the_grants_limits_in_its_environment() -> None:
    from ecs_scan_operator.core.grants import AccountScope
    from ecs_scan_operator.core.jobs import parse_grant_env

    scope = AccountScope("org-grant", ("1111*",), ("arn:aws:iam::*:role/scan",))
    job = build_job(POLICY, spec(), RUN, SETTINGS, notify_destinations=("hooks.slack.com",), accounts=scope)
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert parse_grant_env(env) == (("hooks.slack.com",), scope)
    plain = build_job(POLICY, spec(), RUN, SETTINGS)  # open mode: no limits, no variables
    names = {e["name"] for e in plain["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert not names & {"ECS_SCAN_RUN_NOTIFY_DESTINATIONS", "ECS_SCAN_RUN_ACCOUNT_SCOPE"}
