"""Runs as Kubernetes Jobs: the Job and pinned-spec manifests, the compact result, the outcome. Pure.

Rules (docs/jobs.md says why):
- One run is one `batch/v1` Job in the policy's namespace, named from the policy and the run id
  (so a retried create finds the same name), labelled with the policy's uid and the run id (what
  the operator selects by: one Job per run, at most one active per policy), owned by the
  ScanPolicy (deleting the policy deletes its Jobs and their Pods through the garbage collector).
- The spec is pinned in a ConfigMap owned by the Job, holding the ScanPolicy as the operator
  planned it (that generation, the grant's external ID resolved): the run never reads the live
  policy, and the ConfigMap goes when the Job goes (its TTL, or its policy's deletion).
- `backoffLimit: 0`: a failed Pod is not retried in the same Job. The next scheduled run is the
  retry, as with an in-process run; a second Pod would meet the run lease its predecessor may
  still hold and would scan everything again for the same outcome.
- `activeDeadlineSeconds` is the run deadline plus a grace: the pipeline stops itself at the run
  deadline and still writes its report; the Job deadline is the hard stop behind it.
- The Pod runs under the restricted Pod Security profile, mounts no API token (the run needs
  no Kubernetes API: the spec and Secrets are files the kubelet mounts), and ends by writing a
  compact result of at most 4096 bytes (the termination-message limit) to its termination log.
- What the allowing grant limits beyond the spec travels in the Pod's environment, as it does
  to an in-process run: its private Jira hosts, its notification destinations
  (ENV_NOTIFY_DESTINATIONS) and, for a multi-account policy, its accounts and roles
  (ENV_ACCOUNT_SCOPE). The run refuses what they do not allow, as the operator would.
- The outcome of a Job: the result in its Pod's termination message when there is one (a run
  that failed or was partial exits 1 and still has one); otherwise RunFailed with the Job's
  reason (DeadlineExceeded, BackoffLimitExceeded, ...) and the Pod's (OOMKilled, exit code,
  ImagePullBackOff ...). A Pod stuck before its container runs (image pull, a missing Secret),
  or no Pod at all (a ResourceQuota refusing it), ends the run once `stuck_after` passed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ecs_scan_operator.core.grants import AccountScope
from ecs_scan_operator.core.policy import API_GROUP, API_VERSION, KIND, PolicyRef, PolicySpec
from ecs_scan_operator.core.result import Outcome, RunResult
from ecs_scan_operator.core.schedule import format_time, parse_time
from ecs_scan_operator.core.status import ActiveRun

# Labels the operator selects its Jobs and Pods by (values are label-safe: a uid, a run id).
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "ecs-scan-operator"
LABEL_POLICY_UID = f"{API_GROUP}/policy-uid"
LABEL_POLICY = f"{API_GROUP}/policy"
LABEL_RUN_ID = f"{API_GROUP}/run-id"
# Annotations that let an operator adopt a Job it did not create (after a restart).
ANNOTATION_TRIGGER = f"{API_GROUP}/trigger"
ANNOTATION_STARTED = f"{API_GROUP}/started"
ANNOTATION_GENERATION = f"{API_GROUP}/generation"
# The selector of every Job and Pod this operator creates.
SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_RUN_ID}"

# The grant's limits for the run in the Job (JSON): notification destinations, account scope.
ENV_NOTIFY_DESTINATIONS = "ECS_SCAN_RUN_NOTIFY_DESTINATIONS"
ENV_ACCOUNT_SCOPE = "ECS_SCAN_RUN_ACCOUNT_SCOPE"

CONTAINER = "scan"
SPEC_KEY = "scanpolicy.json"
SPEC_DIR = "/etc/ecs-scan/policy"
JIRA_DIR = "/etc/ecs-scan/jira"
NOTIFY_DIR = "/etc/ecs-scan/notify"
TMP_DIR = "/tmp"  # noqa: S108 - the emptyDir mounted over the read-only root filesystem

#: The kubelet keeps at most this many bytes of a termination message.
TERMINATION_MESSAGE_BYTES = 4096
RESULT_VERSION = 1
RESULT_KIND = "ecsscan.io/run-result"

NAME_MAX = 63  # a Job's name becomes its Pods' job-name label value
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

# Waiting reasons that never resolve by themselves, and those that may (image pulls back off).
# (A missing Secret or ConfigMap is waited for, as the kubelet does: it may be created late.)
FATAL_WAITING = frozenset({"InvalidImageName", "ErrImageNeverPull"})
STUCK_WAITING = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "CreateContainerError",
        "CreateContainerConfigError",
        "ContainerCreating",
    }
)


@dataclass(frozen=True)
class JobSettings:
    """What the operator's settings say about every Job (the chart's `runner.job` values)."""

    image: str
    image_pull_policy: str = "IfNotPresent"
    resources: Mapping[str, Any] = field(default_factory=dict)
    ttl_seconds_after_finished: int = 3600
    deadline_grace_seconds: int = 120
    termination_message_path: str = "/dev/termination-log"
    default_service_account: str = "default"
    run_as_user: int = 65532
    tmp_size_limit: str = "256Mi"
    image_pull_secrets: tuple[str, ...] = ()
    # Environment of the run (AWS region, endpoints, ECS_SCAN_AWS_* limits); never a secret.
    env: Mapping[str, str] = field(default_factory=dict)
    # Hosts Jira credentials may reach although private (the operator's own list); the grant's
    # private hosts are added per run.
    jira_allowed_hosts: tuple[str, ...] = ()
    notify_allow_private: bool = False
    session_tags: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyMeta:
    """The policy a Job runs: who it is and which generation the operator planned on."""

    namespace: str
    name: str
    uid: str
    generation: int

    @property
    def ref(self) -> PolicyRef:
        """namespace/name."""
        return PolicyRef(namespace=self.namespace, name=self.name)


def job_name(policy_name: str, run_id: str) -> str:
    """`<policy>-<hash of the run id>`, at most 63 characters, the same for the same run."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:10]
    stem = policy_name[: NAME_MAX - len(digest) - 1].rstrip("-.")
    return f"{stem}-{digest}"


def label_value(text: str) -> str:
    """`text` when it is a valid label value, else a digest of it (labels are at most 63 characters)."""
    if len(text) <= NAME_MAX and _LABEL_VALUE_RE.match(text):
        return text
    return "h-" + hashlib.sha256(text.encode()).hexdigest()[:40]


def run_labels(policy: PolicyMeta, run_id: str) -> dict[str, str]:
    """The labels of a run's Job, Pod and ConfigMap."""
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_POLICY_UID: label_value(policy.uid),
        LABEL_POLICY: label_value(policy.name),
        LABEL_RUN_ID: label_value(run_id),
    }


def policy_selector(uid: str) -> str:
    """The label selector of every Job of one policy."""
    return f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_POLICY_UID}={label_value(uid)}"


def pinned_manifest(policy: PolicyMeta, spec: PolicySpec) -> dict[str, Any]:
    """The ScanPolicy as the run reads it: that generation's spec, as `run -f` takes it."""
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"namespace": policy.namespace, "name": policy.name, "generation": policy.generation},
        "spec": spec.to_wire(),
    }


def _security_context(settings: JobSettings) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "runAsGroup": settings.run_as_user,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _command(run_id: str, settings: JobSettings, *, jira: bool, notify: bool) -> list[str]:
    cmd = [
        "ecs-scan-operator",
        "run",
        "-f",
        f"{SPEC_DIR}/{SPEC_KEY}",
        "--run-id",
        run_id,
        "--format",
        "json",
        "--termination-log",
        settings.termination_message_path,
    ]
    if jira:
        # Credentials from the mounted Secret; the destination checked as the operator checks it.
        cmd += ["--jira-credentials-dir", JIRA_DIR, "--enforce-jira-destination"]
    if notify:
        cmd += ["--notify-secrets-dir", NOTIFY_DIR]
    if not settings.session_tags:
        cmd.append("--no-session-tags")
    return cmd


def grant_env(notify_destinations: Sequence[str] | None, accounts: AccountScope | None) -> dict[str, str]:
    """The allowing grant's limits as environment variables of the run (none in open mode)."""
    env: dict[str, str] = {}
    if notify_destinations is not None:
        env[ENV_NOTIFY_DESTINATIONS] = json.dumps(list(notify_destinations))
    if accounts is not None:
        scope = {"grant": accounts.grant, "accounts": accounts.accounts, "roleArns": accounts.role_arns}
        env[ENV_ACCOUNT_SCOPE] = json.dumps(scope)
    return env


def _strings(value: object, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a JSON list of strings")
    return tuple(value)


def _json(environ: Mapping[str, str], name: str) -> object:
    try:
        return json.loads(environ[name])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not JSON: {exc.msg}") from None


def parse_grant_env(environ: Mapping[str, str]) -> tuple[tuple[str, ...] | None, AccountScope | None]:
    """(notification destinations, account scope) from the run's environment.

    ValueError names the variable; an absent variable means no such limit (open mode).
    """
    dests: tuple[str, ...] | None = None
    scope: AccountScope | None = None
    if ENV_NOTIFY_DESTINATIONS in environ:
        dests = _strings(_json(environ, ENV_NOTIFY_DESTINATIONS), ENV_NOTIFY_DESTINATIONS)
    if ENV_ACCOUNT_SCOPE in environ:
        doc = _json(environ, ENV_ACCOUNT_SCOPE)
        if not isinstance(doc, dict) or not isinstance(doc.get("grant"), str):
            raise ValueError(f"{ENV_ACCOUNT_SCOPE} must be a JSON object with grant, accounts, roleArns")
        scope = AccountScope(
            grant=doc["grant"],
            accounts=_strings(doc.get("accounts"), f"{ENV_ACCOUNT_SCOPE}.accounts"),
            role_arns=_strings(doc.get("roleArns"), f"{ENV_ACCOUNT_SCOPE}.roleArns"),
        )
    return dests, scope


def _env(
    settings: JobSettings,
    jira_private_hosts: Sequence[str],
    grant: Mapping[str, str] | None = None,
) -> list[dict[str, str]]:
    env = dict(settings.env) | dict(grant or {})
    hosts = list(dict.fromkeys([*settings.jira_allowed_hosts, *jira_private_hosts]))
    if hosts:  # the operator's own list and the allowing grant's private hosts
        env["ECS_SCAN_JIRA_ALLOWED_HOSTS"] = ",".join(hosts)
    if settings.notify_allow_private:
        env["ECS_SCAN_NOTIFY_ALLOW_PRIVATE_DESTINATIONS"] = "true"
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def build_job(
    policy: PolicyMeta,
    spec: PolicySpec,
    run: ActiveRun,
    settings: JobSettings,
    *,
    jira_private_hosts: Sequence[str] = (),
    notify_destinations: Sequence[str] | None = None,
    accounts: AccountScope | None = None,
) -> dict[str, Any]:
    """The Job of one run (its ConfigMap comes from `build_config_map` once the Job has a uid)."""
    name = job_name(policy.name, run.run_id)
    labels = {**settings.labels, **run_labels(policy, run.run_id)}
    annotations = {
        ANNOTATION_TRIGGER: run.trigger.value,
        ANNOTATION_STARTED: format_time(run.started),
        ANNOTATION_GENERATION: str(policy.generation),
        LABEL_RUN_ID: run.run_id,  # the run id as it is, whatever its label form
    }
    mounts: list[dict[str, Any]] = [
        {"name": "policy", "mountPath": SPEC_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": TMP_DIR},
    ]
    tmp: dict[str, Any] = {"sizeLimit": settings.tmp_size_limit} if settings.tmp_size_limit else {}
    volumes: list[dict[str, Any]] = [
        {"name": "policy", "configMap": {"name": name, "items": [{"key": SPEC_KEY, "path": SPEC_KEY}]}},
        {"name": "tmp", "emptyDir": tmp},
    ]
    if spec.jira is not None:
        mounts.append({"name": "jira", "mountPath": JIRA_DIR, "readOnly": True})
        volumes.append({"name": "jira", "secret": {"secretName": spec.jira.credentials_secret}})
    for dest in spec.notify:
        # One folder per destination, named like its Secret (what --notify-secrets-dir reads).
        vol = f"notify-{hashlib.sha256(dest.secret.encode()).hexdigest()[:10]}"
        if not any(v["name"] == vol for v in volumes):
            mounts.append({"name": vol, "mountPath": f"{NOTIFY_DIR}/{dest.secret}", "readOnly": True})
            volumes.append({"name": vol, "secret": {"secretName": dest.secret}})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": _command(run.run_id, settings, jira=spec.jira is not None, notify=bool(spec.notify)),
        "env": _env(settings, jira_private_hosts, grant_env(notify_destinations, accounts)),
        "resources": dict(settings.resources),
        "securityContext": _security_context(settings),
        "terminationMessagePath": settings.termination_message_path,
        "terminationMessagePolicy": "File",
        "volumeMounts": mounts,
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": spec.service_account_name or settings.default_service_account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_user,
            "fsGroup": settings.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": policy.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": f"{API_GROUP}/{API_VERSION}",
                    "kind": KIND,
                    "name": policy.name,
                    "uid": policy.uid,
                    "controller": True,
                }
            ],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": spec.run_deadline_seconds + settings.deadline_grace_seconds,
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
            "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec},
        },
    }


def build_config_map(job: Mapping[str, Any], policy: PolicyMeta, spec: PolicySpec) -> dict[str, Any]:
    """The pinned spec, named like the Job and owned by it (created Job first: it needs the uid)."""
    meta = job["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": dict(meta.get("labels") or {}),
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                }
            ],
        },
        "immutable": True,
        "data": {SPEC_KEY: json.dumps(pinned_manifest(policy, spec), separators=(",", ":"), sort_keys=True)},
    }


def active_run_of(job: Mapping[str, Any]) -> ActiveRun | None:
    """The run a Job carries (its annotations), to adopt it; None when they are unreadable."""
    meta = job.get("metadata") or {}
    notes = meta.get("annotations") or {}
    run_id = notes.get(LABEL_RUN_ID)
    started = parse_time(notes.get(ANNOTATION_STARTED))
    if not run_id or started is None:
        return None
    return ActiveRun(run_id=str(run_id), started=started, holder=str(meta.get("name") or ""))


# --------------------------------------------------------------------------- the compact result


def _result_doc(result: RunResult) -> dict[str, Any]:
    full = result.to_dict()
    return {
        "kind": RESULT_KIND,
        "version": RESULT_VERSION,
        "id": full["id"],
        "startTime": full["startTime"],
        "completionTime": full["completionTime"],
        "result": full["result"],
        "dryRun": full["dryRun"],
        "familiesMatched": full["familiesMatched"],
        "taskDefinitions": full["taskDefinitions"],
        "images": full["images"],
        "imagesByStatus": full["imagesByStatus"],
        "affectedImages": full["affectedImages"],
        "findingsBySeverity": full["findingsBySeverity"],
        "suppressedFindings": full["suppressedFindings"],
        "expiredSuppressions": full["expiredSuppressions"],
        "reportUri": full["reportUri"],
        "errorsTotal": full["errorsTotal"],
        "stageFailures": full["stageFailures"],
        "tickets": full["tickets"],
        "jiraRequests": full["jiraRequests"],
        "refused": result.refused,
        "errors": full["errors"],
        "errorCauses": full["errorCauses"],
        "awsCalls": full["awsCalls"],
        "awsErrors": full["awsErrors"],
    }


def _size(doc: Mapping[str, Any]) -> int:
    return len(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode())


def _clip(text: str, limit: int) -> str:
    raw = text.encode()
    return text if len(raw) <= limit else raw[: limit - 3].decode(errors="ignore") + "…"


def encode_result(result: RunResult, limit: int = TERMINATION_MESSAGE_BYTES) -> str:
    """The compact JSON result, at most `limit` bytes; the least important parts go first.

    In order: AWS call counters, AWS error counters, error causes beyond the first three, error
    messages beyond the first (then the first clipped), stage failure texts clipped, the report
    URI clipped. Counters, the outcome and the run id are always kept.
    """
    doc = _result_doc(result)
    if _size(doc) <= limit:
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    doc["truncated"] = True
    steps: list[Any] = [
        lambda d: d.update(awsCalls={}),
        lambda d: d.update(awsErrors={}),
        lambda d: d.update(errorCauses=dict(list(d["errorCauses"].items())[:3])),
        lambda d: d.update(errors=d["errors"][:1]),
        lambda d: d.update(errors=[_clip(e, 200) for e in d["errors"]]),
        lambda d: d.update(stageFailures={k[:64]: _clip(v, 120) for k, v in d["stageFailures"].items()}),
        lambda d: d.update(errorCauses={}),
        lambda d: d.update(reportUri=_clip(d["reportUri"], 512)),
        lambda d: d.update(stageFailures={}),
        lambda d: d.update(tickets={}),
        lambda d: d.update(errors=[]),
        lambda d: d.update(reportUri=""),
    ]
    for step in steps:
        step(doc)
        if _size(doc) <= limit:
            break
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode()) > limit:  # only a run id or policy of kilobytes gets here
        raise ValueError(f"the run result does not fit in {limit} bytes")
    return text


class ResultUnreadable(ValueError):
    """A termination message that is not a result this version reads."""


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _ints(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): _int(v) for k, v in value.items()}


def _strs(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def decode_result(text: str, policy: str) -> RunResult:
    """A RunResult from a termination message; ResultUnreadable when it is not ours or not readable.

    The message is written by a Pod in the team's namespace: read as untrusted input (types checked,
    unknown keys ignored, the run id compared by the caller).
    """
    try:
        doc = json.loads(text)
    except ValueError:
        raise ResultUnreadable("the termination message is not JSON") from None
    if not isinstance(doc, dict) or doc.get("kind") != RESULT_KIND:
        raise ResultUnreadable("the termination message is not a run result")
    if doc.get("version") != RESULT_VERSION:
        raise ResultUnreadable(f"run result version {doc.get('version')!r} is not {RESULT_VERSION}")
    started = parse_time(doc.get("startTime"))
    try:
        outcome = Outcome(str(doc.get("result")))
    except ValueError:
        raise ResultUnreadable(f"run result outcome {doc.get('result')!r} is unknown") from None
    if not doc.get("id") or started is None:
        raise ResultUnreadable("the run result has no id or start time")
    result = RunResult(run_id=str(doc["id"]), policy=policy, started=started)
    result.completed = parse_time(doc.get("completionTime"))
    result.outcome = outcome
    result.dry_run = bool(doc.get("dryRun"))
    result.families_matched = _int(doc.get("familiesMatched"))
    result.task_definitions = _int(doc.get("taskDefinitions"))
    result.images_total = _int(doc.get("images"))
    result.images_by_status.update(_ints(doc.get("imagesByStatus")))
    result.findings_by_severity.update(_ints(doc.get("findingsBySeverity")))
    result.affected_images = _int(doc.get("affectedImages"))
    result.suppressed_findings = _int(doc.get("suppressedFindings"))
    result.expired_suppressions = _int(doc.get("expiredSuppressions"))
    result.report_uri = str(doc.get("reportUri") or "")
    result.errors = [str(e) for e in doc.get("errors") or [] if isinstance(e, str)][:10]
    result.errors_total = max(_int(doc.get("errorsTotal")), len(result.errors))
    result.stage_failures = _strs(doc.get("stageFailures"))
    result.tickets = _ints(doc.get("tickets"))
    result.aws_calls = _ints(doc.get("awsCalls"))
    result.aws_errors = _ints(doc.get("awsErrors"))
    result.jira_requests = _int(doc.get("jiraRequests"))
    result.error_causes = Counter(_ints(doc.get("errorCauses")))
    result.refused = str(doc.get("refused") or "")
    return result


# --------------------------------------------------------------------------- the outcome


@dataclass(frozen=True)
class StillRunning:
    """The Job has not ended; nothing to record."""


@dataclass(frozen=True)
class Ended:
    """The run ended: its result (from the Pod, or a failure naming why); `delete` the Job first."""

    result: RunResult
    delete: bool = False


JobOutcome = StillRunning | Ended


def _condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == type_ and cond.get("status") == "True":
            return cond
    return None


def _container(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if isinstance(status, Mapping) and status.get("name") == CONTAINER:
            return status
    return {}


def _created(obj: Mapping[str, Any]) -> datetime:
    return parse_time((obj.get("metadata") or {}).get("creationTimestamp")) or datetime(
        1970, 1, 1, tzinfo=UTC
    )


def pod_reason(pod: Mapping[str, Any]) -> str:
    """What a Pod says about why it did not run to the end: OOMKilled (exit 137), ImagePullBackOff: ..."""
    state = _container(pod).get("state") or {}
    last = _container(pod).get("lastState") or {}
    term = state.get("terminated") or last.get("terminated")
    if isinstance(term, Mapping):
        reason = str(term.get("reason") or "Terminated")
        code = term.get("exitCode")
        signal = term.get("signal")
        text = f"{reason} (exit code {code}" + (f", signal {signal})" if signal else ")")
        return text
    waiting = state.get("waiting")
    if isinstance(waiting, Mapping) and waiting.get("reason"):
        message = str(waiting.get("message") or "")
        return str(waiting["reason"]) + (f": {message}" if message else "")
    status = pod.get("status") or {}
    if status.get("reason"):  # Evicted, DeadlineExceeded, NodeLost ...
        return f"{status['reason']}: {status.get('message') or ''}".rstrip(": ")
    phase = status.get("phase") or "Pending"
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return f"Unschedulable: {cond.get('message') or cond.get('reason') or ''}".rstrip(": ")
    return f"Pod {phase}"


def _stuck(pod: Mapping[str, Any], now: datetime, stuck_after: float) -> str | None:
    """Why the Pod will not start, when it is so (at once for fatal reasons, after `stuck_after` else)."""
    waiting = (_container(pod).get("state") or {}).get("waiting")
    if not isinstance(waiting, Mapping):
        return None
    reason = str(waiting.get("reason") or "")
    if reason in FATAL_WAITING:
        return pod_reason(pod)
    if reason in STUCK_WAITING and (now - _created(pod)).total_seconds() >= stuck_after:
        return pod_reason(pod)
    return None


def _message_result(
    ordered: Sequence[Mapping[str, Any]], run: ActiveRun, policy: str
) -> tuple[RunResult | None, str]:
    """The result of the newest Pod whose termination message is this run's, and why others were not."""
    unreadable = ""
    for pod in reversed(ordered):
        term = (_container(pod).get("state") or {}).get("terminated")
        text = term.get("message") if isinstance(term, Mapping) else None
        if not text:
            continue
        try:
            result = decode_result(str(text), policy)
        except ResultUnreadable as exc:
            unreadable = str(exc)
            continue
        if result.run_id != run.run_id:
            unreadable = f"the termination message is of run {result.run_id}, not {run.run_id}"
            continue
        return result, ""
    return None, unreadable


def job_outcome(
    job: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    *,
    run: ActiveRun,
    policy: str,
    now: datetime,
    stuck_after: float = 300.0,
) -> JobOutcome:
    """Has the run's Job ended, and with what result (see the module's rules)."""
    ordered = sorted(pods, key=_created)
    message_result, unreadable = _message_result(ordered, run, policy)
    complete = _condition(job, "Complete")
    failed = _condition(job, "Failed")
    if complete is None and failed is None:
        for pod in ordered:
            why = _stuck(pod, now, stuck_after)
            if why is not None:
                return Ended(_failed(run, policy, now, f"the Job's Pod did not start: {why}"), delete=True)
        if not ordered and (now - _created(job)).total_seconds() >= stuck_after:
            # The Job controller could not create the Pod: a ResourceQuota or LimitRange, or an
            # admission policy refused it (its FailedCreate Events say which).
            text = (
                f"the Job created no Pod within {stuck_after:.0f} s (refused by a ResourceQuota, a "
                "LimitRange or admission? see the Job's FailedCreate Events)"
            )
            return Ended(_failed(run, policy, now, text), delete=True)
        return StillRunning()
    if message_result is not None:
        if message_result.completed is None:
            message_result.completed = now
        return Ended(message_result)
    ended = parse_time((failed or complete or {}).get("lastTransitionTime")) or now
    if failed is not None:
        reason = str(failed.get("reason") or "Failed")
        message = str(failed.get("message") or "")
        text = f"the Job failed: {reason}" + (f" ({message})" if message else "")
    else:
        text = "the Job completed without a result"
    if ordered:
        text += f"; Pod: {pod_reason(ordered[-1])}"
    if unreadable:
        text += f"; {unreadable}"
    return Ended(_failed(run, policy, ended, text))


def _failed(run: ActiveRun, policy: str, now: datetime, error: str) -> RunResult:
    result = RunResult(run_id=run.run_id, policy=policy, started=run.started)
    result.record_error(error)
    result.finish(now, fatal=True)
    return result


def job_active(job: Mapping[str, Any]) -> bool:
    """Whether a Job has not ended (neither Complete nor Failed) and is not being deleted."""
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return _condition(job, "Complete") is None and _condition(job, "Failed") is None


__all__ = [
    "LABEL_POLICY_UID",
    "LABEL_RUN_ID",
    "SELECTOR",
    "TERMINATION_MESSAGE_BYTES",
    "Ended",
    "JobOutcome",
    "JobSettings",
    "PolicyMeta",
    "StillRunning",
    "active_run_of",
    "build_config_map",
    "build_job",
    "decode_result",
    "encode_result",
    "job_active",
    "job_name",
    "job_outcome",
    "pod_reason",
    "policy_selector",
]
