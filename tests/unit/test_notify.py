"""core/notify.py: events once across runs, baselines, filters, and messages within the platforms' limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from ecs_scan_operator.core.images import parse_image
from ecs_scan_operator.core.model import Finding, ImageResult, ImageStatus, ImageUse, Severity
from ecs_scan_operator.core.notify import (
    SLACK_MAX_BLOCKS,
    TEAMS_MAX_BYTES,
    Outgoing,
    RunContext,
    jira_keys,
    plan_notifications,
    slack_escape,
)
from ecs_scan_operator.core.policy import PolicyRef, parse_spec
from ecs_scan_operator.core.result import RunResult
from ecs_scan_operator.errors import InvalidPolicy
from tests.support.notify_receivers import slack_problem, teams_problem

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
POLICY = PolicyRef(namespace="team-a", name="nightly")
NOW = datetime(2025, 3, 1, tzinfo=UTC)
CONTEXT = RunContext(POLICY, "run-2", "https://console.example/report?a=1&b=2", ("SEC-1",))


def spec(*destinations: dict[str, Any], **over: Any) -> Any:
    base: dict[str, Any] = {
        "schedule": "@daily",
        "aws": {"region": "us-east-1"},
        "report": {"s3": {"bucket": "reports"}},
        "notify": list(destinations),
    }
    base.update(over)
    return parse_spec(base)


def dest(name: str = "chat", type_: str = "slack", **over: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "secret": "chat-hook", **over}


def image(
    repo: str, family: str, *findings: Finding, status: ImageStatus = ImageStatus.SCANNED
) -> ImageResult:
    img = ImageResult(ref=parse_image(f"{ECR}/{repo}:1"), status=status)
    img.uses.append(
        ImageUse(family, 1, "app", f"arn:aws:ecs:us-east-1:1:task-definition/{family}:1", "us-east-1")
    )
    img.findings = list(findings)
    return img


def crit(vid: str, title: str = "") -> Finding:
    return Finding(vid, Severity.CRITICAL, "openssl", title=title)


def result(*images: ImageResult, failed_stage: str = "") -> RunResult:
    r = RunResult(run_id="run-2", policy=POLICY.key, started=NOW)
    r.add_images(list(images))
    if failed_stage:
        r.fail_stage(failed_stage, "boom")
    r.finish(NOW)
    return r


def run(s: Any, images: list[ImageResult], memories: dict[str, dict[str, str]], first: bool = False,
        failed_stage: str = "") -> list[Outgoing]:  # fmt: skip
    return plan_notifications(
        s, images, result(*images, failed_stage=failed_stage), memories, CONTEXT, first_run=first
    )


def events(out: Outgoing) -> dict[str, int]:
    return out.events


# --------------------------------------------------------------------------- spec


def test_spec_defaults_and_errors_name_the_field() -> None:
    s = spec(dest())
    (d,) = s.notify
    assert [e.value for e in d.events] == ["new", "reopened", "runFailed"]
    assert d.min_severity == "HIGH" and d.max_findings == 10
    with pytest.raises(InvalidPolicy) as err:
        spec(dest(type_="email", events=["new", "new"], url="https://x"))
    paths = {e.path for e in err.value.errors}
    assert {"spec.notify[0].type", "spec.notify[0].events", "spec.notify[0].url"} <= paths
    with pytest.raises(InvalidPolicy, match="repeated: chat"):
        spec(dest(), dest())


def test_future_events_are_accepted() -> None:
    (d,) = spec(dest(events=["overdue", "redeployNeeded"])).notify
    assert {e.value for e in d.events} == {"overdue", "redeployNeeded"}


# --------------------------------------------------------------------------- events


def test_events_are_sent_once_across_runs() -> None:
    s = spec(dest(events=["new", "reopened", "fixed"]))
    a = image("app", "svc-a", crit("CVE-1"))
    (first,) = run(s, [a], {}, first=True)
    assert first.payload is None and first.events == {}  # the baseline: what exists is known
    memory = {"chat": first.memory}
    a2 = image("app", "svc-a", crit("CVE-1"), crit("CVE-2"))
    (second,) = run(s, [a2], memory)
    assert second.events == {"new": 1} and second.payload is not None
    (again,) = run(s, [a2], {"chat": second.memory})
    assert again.payload is None  # nothing new: nothing sent
    (fixed,) = run(s, [image("app", "svc-a", crit("CVE-2"))], {"chat": again.memory})
    assert fixed.events == {"fixed": 1}
    (back,) = run(s, [a2], {"chat": fixed.memory})
    assert back.events == {"reopened": 1}


def test_a_failed_send_is_retried_because_the_old_memory_is_kept() -> None:
    s = spec(dest())
    base = run(s, [image("app", "svc-a")], {}, first=True)[0].memory
    a = image("app", "svc-a", crit("CVE-1"))
    (sent,) = run(s, [a], {"chat": base})
    (retry,) = run(s, [a], {"chat": base})  # the caller kept `base`: the send failed
    assert sent.events == retry.events == {"new": 1}


def test_unscanned_or_removed_images_are_not_fixed() -> None:
    s = spec(dest(events=["fixed"]))
    memory = {
        "chat": run(
            s, [image("app", "svc-a", crit("CVE-1")), image("b", "svc-b", crit("CVE-9"))], {}, first=True
        )[0].memory
    }
    failed = image("app", "svc-a", status=ImageStatus.FAILED)
    (out,) = run(s, [failed], memory)  # b left the fleet, app failed to scan
    assert out.payload is None
    assert list(out.memory) == [k for k in memory["chat"] if k.startswith(failed.ref.display)]


def test_min_severity_filter_and_on() -> None:
    s = spec(
        dest("crit-only", min_severity="CRITICAL", filter={"families": ["svc-a*"]}),
        dest("hooks", "webhook", events=["runFailed"]),
    )
    base = {o.destination.name: o.memory for o in run(s, [], {}, first=True)}
    imgs = [
        image("app", "svc-a", crit("CVE-1"), Finding("CVE-H", Severity.HIGH, "zlib")),
        image("other", "svc-b", crit("CVE-2")),
        image("untriaged", "svc-a", Finding("CVE-U", Severity.UNTRIAGED, "x")),
    ]
    crit_only, hooks = run(s, imgs, base)
    assert crit_only.events == {"new": 1}  # HIGH below, svc-b outside, untriaged below every level
    assert hooks.payload is None  # on: runFailed only, and the run succeeded
    crit_only, hooks = run(s, imgs, base, failed_stage="tickets")
    assert hooks.events == {"runFailed": 1}
    assert hooks.payload is not None and hooks.payload["failedStages"] == ["tickets"]
    assert "boom" not in json.dumps(hooks.payload)  # error texts are never sent


def test_route_filter_uses_the_jira_routes() -> None:
    jira = {
        "url": "https://jira.example",
        "credentialsSecret": "jira",
        "project": "SEC",
        "routes": [{"name": "payments", "project": "PAY", "match": {"families": ["pay-*"]}}],
    }
    s = spec(dest(filter={"routes": ["payments"]}), jira=jira)
    base: dict[str, dict[str, str]] = {"chat": {}}
    (out,) = run(s, [image("a", "pay-api", crit("CVE-1")), image("b", "web", crit("CVE-2"))], base)
    assert out.events == {"new": 1}
    assert "CVE-1" in json.dumps(out.payload) and "CVE-2" not in json.dumps(out.payload)


def test_memory_is_bounded_and_destinations_removed_are_dropped_by_the_caller() -> None:
    from ecs_scan_operator.core import notify

    s = spec(dest())
    many = image("app", "svc-a", *[crit(f"CVE-{i}") for i in range(50)])
    old = notify.MAX_MEMORY
    notify.MAX_MEMORY = 20
    try:
        (out,) = run(s, [many], {}, first=True)
    finally:
        notify.MAX_MEMORY = old
    assert len(out.memory) == 20


# --------------------------------------------------------------------------- messages


def _many(n: int, title: str = "") -> list[ImageResult]:
    return [image(f"repo{i}", f"svc-{i}", *[crit(f"CVE-{i}-{j}", title) for j in range(5)]) for i in range(n)]


@pytest.mark.parametrize("max_findings", [1, 10, 40])
def test_slack_message_stays_within_block_kit_limits(max_findings: int) -> None:
    s = spec(dest(max_findings=max_findings, events=["new", "fixed", "runFailed"]))
    (out,) = run(s, _many(60, "x" * 5000), {"chat": {}}, failed_stage="report")
    assert out.payload is not None
    assert slack_problem(out.payload) == ""
    assert len(out.payload["blocks"]) <= SLACK_MAX_BLOCKS
    text = json.dumps(out.payload)
    assert "300 new" in text and "more" in text  # the rest are counted
    assert "https://console.example/report?a=1&amp;b=2" in text and "SEC-1" in text


def test_hostile_title_is_inert_in_slack_mrkdwn() -> None:
    hostile = "<!channel> <https://evil.example|click> *bold* `code` & <@U123>"
    s = spec(dest())
    (out,) = run(s, [image("app", "svc-a", crit("CVE-1", hostile))], {"chat": {}})
    assert out.payload is not None
    texts = [b["text"]["text"] for b in out.payload["blocks"] if b["type"] == "section"]
    finding = next(t for t in texts if "CVE-1" in t)
    assert "<" not in finding and ">" not in finding  # no link, no mention
    assert "&lt;!channel&gt;" in finding and "&amp;" in finding
    assert "*bold*" not in finding and "`code`" not in finding
    assert slack_escape("a<b>&c") == "a&lt;b&gt;&amp;c"


def test_teams_card_stays_under_its_size_limit() -> None:
    s = spec(dest(type_="teams", max_findings=40))
    (out,) = run(s, _many(60, "y" * 2000), {"chat": {}})
    assert out.payload is not None
    body = json.dumps(out.payload, ensure_ascii=False).encode()
    assert len(body) <= TEAMS_MAX_BYTES
    assert teams_problem(body) == (202, "")
    hostile = "[click](https://evil.example) **x**"
    (out,) = run(s, [image("app", "svc-a", crit("CVE-1", hostile))], {"chat": {}})
    assert "](https" not in json.dumps(out.payload)


def test_webhook_document() -> None:
    s = spec(dest(type_="webhook", events=["new", "fixed"]))
    (out,) = run(s, [image("app", "svc-a", crit("CVE-1", "t"))], {"chat": {}})
    assert out.payload is not None
    doc = out.payload
    assert doc["schema"] == "ecsscan.io/notification/v1"
    assert doc["policy"] == {"namespace": "team-a", "name": "nightly"}
    assert doc["events"] == {"new": 1} and doc["jiraKeys"] == ["SEC-1"]
    (line,) = doc["findings"]
    assert line["vulnerabilityId"] == "CVE-1" and line["families"] == ["svc-a"]


def test_jira_keys_from_the_ticket_report() -> None:
    planned = [
        {"action": "create", "key": "SEC-1"},
        {"action": "unchanged", "key": "SEC-2"},
        {"action": "update", "key": "SEC-1"},
        {"action": "reopen", "key": "SEC-3"},
        {"action": "create", "key": ""},
    ]
    assert jira_keys(planned) == ("SEC-1", "SEC-3")


def test_state_keeps_the_memories_and_reads_older_states() -> None:
    from ecs_scan_operator.core.state import RunState, dump_state, load_state

    plain = dump_state(RunState(), "r1", {"img": ["CVE-1"]})
    assert b"notified" not in plain  # unused: the state is what it was before notifications
    assert load_state(plain).notified == {}
    state = RunState(notified={"chat": {"img\x1fCVE-1 openssl": "o", "img\x1fCVE-2": "f"}})
    again = load_state(dump_state(state, "r2", {}))
    assert again.notified == state.notified and again.last_run_id == "r2"


# --------------------------------------------------------------------------- overdue (issue #13)


def overdue(vid: str, is_overdue: bool = True) -> Finding:
    from dataclasses import replace as _replace

    from ecs_scan_operator.core.model import Assessment

    return _replace(crit(vid), assessment=Assessment(priority="P2", overdue=is_overdue))


def test_overdue_is_told_once_across_runs_and_again_after_a_fix() -> None:
    s = spec(dest(events=["new", "overdue", "fixed"]))
    memories: dict[str, dict[str, str]] = {"chat": {}}
    # run 1: a new finding, not overdue yet
    (out,) = run(s, [image("app", "svc", overdue("CVE-1", False))], memories)
    assert events(out) == {"new": 1}
    memories = {"chat": out.memory}
    # run 2: it is overdue now: told once
    (out,) = run(s, [image("app", "svc", overdue("CVE-1"))], memories)
    assert events(out) == {"overdue": 1} and out.payload is not None
    assert "overdue" in json.dumps(out.payload)
    memories = {"chat": out.memory}
    # run 3 and 4: still overdue: nothing more
    for _ in range(2):
        (out,) = run(s, [image("app", "svc", overdue("CVE-1"))], memories)
        assert events(out) == {} and out.payload is None
        memories = {"chat": out.memory}
    # fixed, then back and overdue: fixed, then reopened and overdue again
    (out,) = run(s, [image("app", "svc")], memories)
    assert events(out) == {"fixed": 1}
    memories = {"chat": out.memory}
    (out,) = run(s, [image("app", "svc", overdue("CVE-1"))], memories)
    assert events(out) == {"overdue": 1}  # reopened is not listened to here


def test_overdue_at_the_first_run_is_known_not_told() -> None:
    s = spec(dest(events=["overdue"]))
    (out,) = run(s, [image("app", "svc", overdue("CVE-1"))], {}, first=True)
    assert out.payload is None
    (out,) = run(s, [image("app", "svc", overdue("CVE-1"))], {"chat": out.memory})
    assert out.payload is None


@pytest.mark.parametrize("type_", ["slack", "teams", "webhook"])
def test_overdue_names_the_finding_in_every_format(type_: str) -> None:
    s = spec(dest(type_=type_, events=["overdue"]))
    (out,) = run(s, [image("app", "svc", overdue("CVE-2024-77"))], {"chat": {}})
    text = json.dumps(out.payload)
    assert "CVE-2024-77" in text and "overdue" in text


# --------------------------------------------------------------------------- minPriority, accounts


def prio(vid: str, severity: Severity, priority: str) -> Finding:
    from ecs_scan_operator.core.model import Assessment

    return Finding(vid, severity, "openssl", assessment=Assessment(priority=priority))


@pytest.mark.parametrize(
    ("min_priority", "expected"),
    [
        ("P1", {"CVE-P1-LOW", "CVE-NONE-CRIT"}),
        ("P2", {"CVE-P1-LOW", "CVE-P2-MED", "CVE-NONE-CRIT"}),
        ("P4", {"CVE-P1-LOW", "CVE-P2-MED", "CVE-P4-CRIT", "CVE-NONE-CRIT"}),
        (None, {"CVE-P4-CRIT", "CVE-NONE-CRIT"}),  # minSeverity CRITICAL alone
    ],
)
def test_min_priority_decides_where_a_priority_exists_and_severity_elsewhere(
    min_priority: str | None, expected: set[str]
) -> None:
    # A known-exploited LOW finding can be P1 and is sent under minPriority P1 although minSeverity
    # is CRITICAL; a CRITICAL one without a priority (no signals) falls back to minSeverity.
    over: dict[str, Any] = {"min_severity": "CRITICAL"}
    if min_priority:
        over["minPriority"] = min_priority
    s = spec(dest(**over))
    findings = [
        prio("CVE-P1-LOW", Severity.LOW, "P1"),
        prio("CVE-P2-MED", Severity.MEDIUM, "P2"),
        prio("CVE-P4-CRIT", Severity.CRITICAL, "P4"),
        prio("CVE-NONE-CRIT", Severity.CRITICAL, ""),
    ]
    (out,) = run(s, [image("app", "svc-a", *findings)], {"chat": {}})
    text = json.dumps(out.payload)
    assert {f.vulnerability_id for f in findings if f.vulnerability_id in text} == expected


def test_min_priority_is_validated_naming_the_field() -> None:
    with pytest.raises(InvalidPolicy) as err:
        spec(dest(minPriority="P9"))
    assert {e.path for e in err.value.errors} == {"spec.notify[0].minPriority"}


def test_account_filter_takes_images_used_in_the_listed_accounts_only() -> None:
    s = spec(dest(filter={"accounts": ["1111*"]}))
    mine, theirs, none = (
        image("a", "svc-a", crit("CVE-1")),
        image("b", "svc-b", crit("CVE-2")),
        image("c", "svc-c", crit("CVE-3")),
    )
    mine.uses[0] = ImageUse(
        "svc-a", 1, "app", mine.uses[0].task_definition_arn, "us-east-1", account="111122223333"
    )
    theirs.uses[0] = ImageUse(
        "svc-b", 1, "app", theirs.uses[0].task_definition_arn, "us-east-1", account="999922223333"
    )
    (out,) = run(s, [mine, theirs, none], {"chat": {}})
    text = json.dumps(out.payload)
    assert out.events == {"new": 1} and "CVE-1" in text
    assert "CVE-2" not in text and "CVE-3" not in text  # another account; no account at all
