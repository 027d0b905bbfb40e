"""Tenancy mode grants in the policy loop: refused before any run, grants watched, external ID."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from ecs_scan_operator.controller.grants import GrantAccess, GrantIndex, NamespaceLabels, read_external_id
from ecs_scan_operator.controller.reconcile import RUN_NOW_ANNOTATION
from ecs_scan_operator.core.grants import SecretKeyRef
from ecs_scan_operator.errors import NotFoundError, PermanentError
from tests.unit.test_controller_worker import NS, SPEC, FakeKube, Harness, Runner, make, ready, until

ROLE = "arn:aws:iam::111111111111:role/scan-team-a"
POLICY = {**SPEC, "aws": {"region": "us-east-1", "roleArn": ROLE}}


def grant_obj(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ecsscan.io/v1alpha1",
        "kind": "ScanAccessGrant",
        "metadata": {"name": name},
        "spec": spec,
    }


TEAM_A = grant_obj(
    "team-a",
    namespaces={"selector": {"matchLabels": {"team": "a"}}},
    aws={"roleArns": [ROLE], "regions": ["us-*"], "externalIdSecretRef": {"namespace": "ops", "name": "ext"}},
    reports=[{"bucket": "ecs-scan-reports"}],
)


class GrantKube(FakeKube):
    """FakeKube plus what tenancy reads: grants, namespace labels; counts label reads."""

    def __init__(self) -> None:
        super().__init__()
        self.grants: list[dict[str, Any]] = []
        self.labels: dict[str, dict[str, str]] = {NS: {"team": "a"}}
        self.label_reads = 0

    def list_grants(self) -> list[dict[str, Any]]:
        return list(self.grants)

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        self.label_reads += 1
        if namespace not in self.labels:
            raise NotFoundError(f"namespace {namespace}")
        return dict(self.labels[namespace])


@pytest.fixture
async def g() -> Any:
    harness = make(Runner())
    kube = GrantKube()
    harness.kube = kube
    harness.deps.kube = kube
    harness.deps.grants = GrantAccess(kube)
    harness.deps.grants.prime()
    yield harness
    await harness.stop_all()


def _secret(value: str) -> dict[str, str]:
    return {"externalId": base64.b64encode(value.encode()).decode()}


async def test_a_policy_without_a_grant_is_refused_and_never_runs(g: Harness) -> None:
    g.kube.add_policy("p", POLICY, annotations={RUN_NOW_ANNOTATION: "now"})
    g.start("p")
    await until(lambda: bool(g.kube.status("p")))
    status = g.kube.status("p")
    cond = ready(status)
    assert (cond["status"], cond["reason"]) == ("False", "AccessNotGranted")
    assert "metadata.namespace" in cond["message"] and NS in cond["message"]
    assert "nextScheduleTime" not in status
    await asyncio.sleep(0.3)  # several resync rounds: no run, one Event
    assert g.runner.calls == []
    assert g.events["p"].reasons() == ["AccessNotGranted"]


async def test_a_grant_created_while_running_takes_effect_and_supplies_the_external_id(g: Harness) -> None:
    assert isinstance(g.kube, GrantKube) and g.deps.grants is not None
    g.kube.secrets[("ops", "ext")] = _secret("s3cr3t-ext-id")
    g.kube.add_policy("p", POLICY, annotations={RUN_NOW_ANNOTATION: "now"})
    g.start("p")
    await until(
        lambda: ready(g.kube.status("p"))["reason"] == "AccessNotGranted" if g.kube.status("p") else False
    )
    g.deps.grants.index.apply("ADDED", TEAM_A)  # what the grant watch handler does ...
    assert g.scheduler is not None
    g.scheduler.look_at_all()  # ... then every policy is looked at again
    await until(lambda: "lastRun" in g.kube.status("p"))
    assert g.runner.specs[0].aws.external_id == "s3cr3t-ext-id"
    assert g.kube.label_reads >= 1  # the grant selects by label
    everything = repr(g.kube.status("p")) + repr(g.events["p"].posted)
    assert "s3cr3t" not in everything

    # the grant loses the role: the next look refuses, naming the field and what is granted
    changed = grant_obj(
        "team-a",
        **{
            **TEAM_A["spec"],
            "aws": {"roleArns": ["arn:aws:iam::111111111111:role/other"], "regions": ["us-*"]},
        },
    )
    g.deps.grants.index.apply("MODIFIED", changed)
    g.scheduler.look_at_all()
    await until(lambda: ready(g.kube.status("p"))["reason"] == "AccessNotGranted")
    message = ready(g.kube.status("p"))["message"]
    assert "spec.aws.roleArn" in message and "role/other" in message

    # deleted: refused as not selected at all
    g.deps.grants.index.apply("DELETED", changed)
    g.scheduler.look_at_all()
    await until(lambda: "metadata.namespace" in ready(g.kube.status("p"))["message"])
    assert len(g.runner.calls) == 1


async def test_a_missing_external_id_secret_fails_the_run_without_calling_aws(g: Harness) -> None:
    assert isinstance(g.kube, GrantKube) and g.deps.grants is not None
    g.kube.grants.append(TEAM_A)
    g.deps.grants.prime()
    g.kube.add_policy("p", POLICY, annotations={RUN_NOW_ANNOTATION: "now"})
    g.start("p")
    await until(lambda: "lastRun" in g.kube.status("p"))
    last = g.kube.status("p")["lastRun"]
    assert last["result"] == "Failed" and "external ID" in last["errors"][0]
    assert g.runner.calls == []


def test_an_invalid_grant_grants_nothing_and_the_others_stay() -> None:
    index = GrantIndex()
    bad = grant_obj("bad", namespaces={"names": ["Team_A"]})
    index.prime([TEAM_A, bad])
    assert [x.name for x in index.snapshot()] == ["team-a"]
    index.apply("MODIFIED", grant_obj("team-a", namespaces={"names": ["NOPE!"]}))
    assert index.snapshot() == ()


def test_labels_are_read_only_when_a_grant_selects_by_label() -> None:
    kube = GrantKube()
    kube.grants.append(grant_obj("by-name", namespaces={"names": [NS]}))
    access = GrantAccess(kube)
    access.prime()
    tenancy = asyncio.run(access.tenancy(NS))
    assert kube.label_reads == 0 and tenancy.namespace_labels == {}


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({}, "missing or empty"),
        ({"externalId": "!!!"}, "not base64"),
        ({"externalId": base64.b64encode(b"  ").decode()}, "empty"),
    ],
)
def test_external_id_secret_problems_name_the_secret_never_a_value(
    data: dict[str, str], problem: str
) -> None:
    kube = GrantKube()
    kube.secrets[("ops", "ext")] = data
    with pytest.raises(PermanentError, match=problem) as info:
        read_external_id(kube, SecretKeyRef(namespace="ops", name="ext"))
    assert "ops/ext" in str(info.value)


async def test_the_grants_private_jira_hosts_travel_with_the_runs_credentials(g: Harness) -> None:
    # team-a's grant allows its in-network Jira at 10.0.0.5: the run's credentials carry that
    # allowance, so its destination check admits exactly that host on top of the operator's list.
    assert isinstance(g.kube, GrantKube)
    private_jira = {"urls": ["http://10.0.0.5:8080"], "allowPrivateHosts": ["10.0.0.5"]}
    g.kube.grants.append(grant_obj("team-a", **{**TEAM_A["spec"], "jira": private_jira}))
    g.deps.grants = GrantAccess(g.kube)
    g.deps.grants.prime()
    g.kube.secrets[("ops", "ext")] = _secret("ext-id")
    g.kube.secrets[(NS, "jira")] = {
        "token": base64.b64encode(b"pat-123").decode(),
    }
    jira = {"url": "http://10.0.0.5:8080", "credentialsSecret": "jira", "project": "SEC"}
    g.kube.add_policy("p", {**POLICY, "jira": jira}, annotations={RUN_NOW_ANNOTATION: "now"})
    g.start("p")
    await until(lambda: "lastRun" in g.kube.status("p"))
    ((_, _, creds),) = g.runner.calls
    assert creds is not None and creds.allowed_hosts == ("10.0.0.5",)


async def test_the_grants_notification_destinations_travel_with_the_run(g: Harness) -> None:
    # The notifier checks the URL it reads from the Secret against exactly these entries.
    assert isinstance(g.kube, GrantKube)
    dests = ["https://hooks.slack.com/services/TA/"]
    g.kube.grants.append(grant_obj("team-a", **{**TEAM_A["spec"], "notifications": {"destinations": dests}}))
    g.deps.grants = GrantAccess(g.kube)
    g.deps.grants.prime()
    g.kube.secrets[("ops", "ext")] = _secret("ext-id")
    notify = [{"name": "chat", "type": "slack", "secret": "chat-hook"}]
    g.kube.add_policy("p", {**POLICY, "notify": notify}, annotations={RUN_NOW_ANNOTATION: "now"})
    g.start("p")
    await until(lambda: "lastRun" in g.kube.status("p"))
    assert g.runner.notify_destinations == [tuple(dests)]


async def test_without_granted_destinations_a_notifying_policy_does_not_run(g: Harness) -> None:
    assert isinstance(g.kube, GrantKube)
    g.kube.grants.append(grant_obj("team-a", **TEAM_A["spec"]))
    g.deps.grants = GrantAccess(g.kube)
    g.deps.grants.prime()
    notify = [{"name": "chat", "type": "slack", "secret": "chat-hook"}]
    g.kube.add_policy("p", {**POLICY, "notify": notify}, annotations={RUN_NOW_ANNOTATION: "now"})
    g.start("p")
    await until(
        lambda: any(c.get("reason") == "AccessNotGranted" for c in g.kube.status("p").get("conditions", []))
    )
    conditions = {c["type"]: c for c in g.kube.status("p")["conditions"]}
    assert "spec.notify[0]" in conditions["Ready"]["message"]
    assert g.runner.calls == []


def ns_obj(name: str, labels: dict[str, str] | None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


def test_the_namespace_watch_keeps_labels_and_says_when_they_changed() -> None:
    seen = NamespaceLabels()
    assert seen.get(NS) is None
    assert seen.apply(None, ns_obj(NS, {"team": "a"})) is True  # the listing
    assert seen.apply("MODIFIED", ns_obj(NS, {"team": "a"})) is False  # e.g. a status change
    assert seen.apply("MODIFIED", ns_obj(NS, {"team": "a", "env": "prod"})) is True
    assert seen.apply("MODIFIED", ns_obj(NS, None)) is True and seen.get(NS) == {}
    assert seen.apply("DELETED", ns_obj(NS, None)) is True and seen.get(NS) is None
    assert seen.apply("DELETED", ns_obj(NS, None)) is False
    assert seen.apply("ADDED", {"metadata": {}}) is False  # nameless: ignored


def test_once_the_watch_saw_the_namespace_a_look_reads_no_api() -> None:
    kube = GrantKube()
    kube.grants.append(grant_obj("by-label", namespaces={"selector": {"matchLabels": {"team": "a"}}}))
    access = GrantAccess(kube)
    access.prime()
    first = asyncio.run(access.tenancy(NS))  # not seen by the watch yet: one GET
    assert kube.label_reads == 1 and first.namespace_labels == {"team": "a"}
    access.namespaces.apply(None, ns_obj(NS, {"team": "b"}))
    for _ in range(50):
        later = asyncio.run(access.tenancy(NS))
    assert kube.label_reads == 1 and later.namespace_labels == {"team": "b"}  # the watch's answer
