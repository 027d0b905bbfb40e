"""Notifications over real HTTP: the adapter against local Slack-, Teams- and webhook-like receivers,
and the pipeline's notify stage end to end (events once across runs, a failing receiver)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from ecs_scan_operator.adapters.notify_http import HttpNotifier, NotifyError, secrets_from_env
from ecs_scan_operator.core.model import Finding, Severity
from ecs_scan_operator.core.policy import PolicyRef, parse_spec
from ecs_scan_operator.core.result import Outcome
from ecs_scan_operator.core.state import load_state
from ecs_scan_operator.errors import NotFoundError
from ecs_scan_operator.pipeline import run_policy
from ecs_scan_operator.ports import Ports
from tests.support.fakes import FakeDigests, FakeFindings, FakeImageSource, FixedClock, MemorySink
from tests.support.notify_receivers import Receiver, receiver
from tests.support.tls import make_ca

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
POLICY = PolicyRef(namespace="team-a", name="nightly")
KEY = b"k" * 32
HOSTILE = "<!channel> <https://evil.example|click here> *now*"


def secrets(*receivers: Receiver) -> Any:
    by_name = {f"{r.kind}-hook": r for r in receivers}

    def read(name: str) -> Mapping[str, SecretStr]:
        if name not in by_name:
            raise NotFoundError(f"Secret team-a/{name} not found")
        r = by_name[name]
        out = {"url": SecretStr(r.url)}
        if r.signing_key:
            out["signingKey"] = SecretStr(r.signing_key.decode())
        return out

    return read


def spec(**over: Any) -> Any:
    base: dict[str, Any] = {
        "schedule": "@daily",
        "aws": {"region": "us-east-1"},
        "report": {"s3": {"bucket": "reports", "prefix": "scans"}},
        "notify": [
            {
                "name": "slack",
                "type": "slack",
                "secret": "slack-hook",
                "events": ["new", "fixed", "runFailed"],
            },
            {"name": "teams", "type": "teams", "secret": "teams-hook"},
            {"name": "hook", "type": "webhook", "secret": "webhook-hook", "minSeverity": "MEDIUM"},
        ],
    }
    base.update(over)
    return parse_spec(base)


FLEET = {"svc-a": [("app", f"{ECR}/app:1")], "svc-b": [("api", f"{ECR}/api:1")]}


def findings(*extra: Finding) -> FakeFindings:
    return FakeFindings(by_repo={"app": [Finding("CVE-1", Severity.CRITICAL, "openssl")], "api": list(extra)})


def ports(sink: MemorySink, notifier: HttpNotifier, fs: FakeFindings) -> Ports:
    return Ports(
        images=FakeImageSource(FLEET), digests=FakeDigests(), findings=fs, reports=sink, notifier=notifier
    )


def fast(read: Any, **kw: Any) -> HttpNotifier:
    return HttpNotifier(read, allow_private=True, deadline=kw.pop("deadline", 10.0), backoff=0.01, **kw)


def test_events_are_delivered_once_across_runs_to_every_kind_of_receiver() -> None:
    with receiver("slack") as slack, receiver("teams") as teams, receiver("webhook", KEY) as hook:
        notifier = fast(secrets(slack, teams, hook))
        sink, clock = MemorySink(), FixedClock()
        first = run_policy(POLICY, spec(), ports(sink, notifier, findings()), clock)
        assert first.outcome is Outcome.SUCCEEDED
        assert slack.received == teams.received == hook.received == []  # the first run is the baseline

        clock.advance(days=1)
        fs = findings(Finding("CVE-2", Severity.HIGH, "curl", title=HOSTILE))
        second = run_policy(POLICY, spec(), ports(sink, notifier, fs), clock)
        assert second.outcome is Outcome.SUCCEEDED, second.errors
        for r in (slack, teams, hook):
            assert [x.status for x in r.received] in ([200], [202], [204]), (r.kind, r.received)
        text = slack.received[0].body.decode()
        assert "CVE-2" in text and "svc-b" in text and "<!channel>" not in text
        doc = hook.received[0].json
        assert doc["events"] == {"new": 1} and doc["findings"][0]["vulnerabilityId"] == "CVE-2"
        assert doc["reportUrl"].startswith("https://reports.example/scans/")
        state = load_state(sink.objects[next(k for k in sink.objects if "/state/" in k)])
        assert set(state.notified) == {"slack", "teams", "hook"}

        clock.advance(days=1)
        third = run_policy(POLICY, spec(), ports(sink, notifier, fs), clock)
        assert third.outcome is Outcome.SUCCEEDED
        assert len(slack.received) == len(teams.received) == len(hook.received) == 1  # nothing new

        clock.advance(days=1)
        run_policy(POLICY, spec(), ports(sink, notifier, findings()), clock)  # CVE-2 fixed
        assert len(slack.received) == 2 and "Fixed" in slack.received[1].body.decode()
        assert len(teams.received) == 1  # teams does not listen to fixed


def test_a_failing_receiver_is_a_notify_stage_failure_and_the_run_keeps_its_work() -> None:
    with receiver("slack") as slack, receiver("teams") as teams, receiver("webhook", KEY) as hook:
        notifier = fast(secrets(slack, teams, hook), attempts=3)
        sink, clock = MemorySink(), FixedClock()
        run_policy(POLICY, spec(), ports(sink, notifier, findings()), clock)
        teams.fail_with = 503
        clock.advance(days=1)
        fs = findings(Finding("CVE-2", Severity.CRITICAL, "curl"))
        result = run_policy(POLICY, spec(), ports(sink, notifier, fs), clock)
        assert result.outcome is Outcome.PARTIAL
        assert set(result.stage_failures) == {"notify"}
        assert (
            "teams" in result.stage_failures["notify"]
            and "HTTP 503 after 3 attempt(s)" in result.stage_failures["notify"]
        )
        assert teams.url not in json.dumps(result.to_dict())  # the URL is the credential
        assert len(teams.received) == 3  # bounded retries
        index_key = next(k for k in sink.order if k.endswith("index.json") and result.run_id in k)
        index = sink.objects[index_key].decode()
        assert "HTTP 503" in index and teams.url not in index  # the report says what failed
        assert result.findings_by_severity["CRITICAL"] == 2
        assert len(slack.received) == 1 and len(hook.received) == 1  # the others got theirs

        # the next run retries only the destination that failed
        teams.fail_with = None
        clock.advance(days=1)
        again = run_policy(POLICY, spec(), ports(sink, notifier, fs), clock)
        assert again.outcome is Outcome.SUCCEEDED
        assert [x.status for x in teams.received][-1] == 202 and "CVE-2" in teams.received[-1].body.decode()
        assert len(slack.received) == 1 and len(hook.received) == 1


def test_a_dry_run_sends_nothing_and_remembers_nothing() -> None:
    with receiver("slack") as slack, receiver("teams") as teams, receiver("webhook", KEY) as hook:
        notifier = fast(secrets(slack, teams, hook))
        sink, clock = MemorySink(), FixedClock()
        run_policy(POLICY, spec(), ports(sink, notifier, findings()), clock)
        fs = findings(Finding("CVE-2", Severity.CRITICAL, "curl"))
        clock.advance(days=1)
        dry = run_policy(POLICY, spec(dryRun=True), ports(sink, notifier, fs), clock)
        assert dry.outcome is Outcome.SUCCEEDED
        assert slack.received == teams.received == hook.received == []
        log = b"".join(v for k, v in sink.objects.items() if k.endswith("run.log.jsonl") and dry.run_id in k)
        assert b"notify_planned" in log
        clock.advance(days=1)
        run_policy(POLICY, spec(), ports(sink, notifier, fs), clock)  # the real run still sends it
        assert len(slack.received) == 1 and "CVE-2" in slack.received[0].body.decode()


def test_webhook_signature_is_checked_by_the_receiver() -> None:
    with receiver("webhook", KEY) as hook:
        wrong = Receiver("webhook", hook.url, b"w" * 32)  # the Secret holds another key
        notifier = fast(secrets(wrong), attempts=1)
        (dest,) = spec().notify[2:]
        with pytest.raises(NotifyError, match="HTTP 401 \\(not retried\\)"):
            notifier.send(dest, {"schema": "x"})
        assert hook.received[0].problem == "bad signature"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:9/hook", "must be https"),
        ("https://127.0.0.1:9/hook", "non-public address"),
        ("https://169.254.169.254/latest/meta-data", "non-public address"),
        ("https://[::1]/x", "non-public address"),
        ("https://10.1.2.3/x", "non-public address"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
        ("https://localhost/x", "non-public address"),
    ],
)
def test_private_destinations_are_refused_unless_allowed(url: str, reason: str) -> None:
    read = lambda name: {"url": SecretStr(url)}  # noqa: E731
    notifier = HttpNotifier(read, allow_private=False, deadline=2)
    (dest,) = spec().notify[:1]
    with pytest.raises(NotifyError, match=reason) as err:
        notifier.send(dest, {"text": "x", "blocks": []})
    assert "pw" not in str(err.value) and notifier.requests == 0


def test_secret_problems_name_the_key_never_a_value() -> None:
    (slack, _, hook) = spec().notify
    with pytest.raises(NotifyError, match="Secret team-a/slack-hook not found"):
        HttpNotifier(secrets()).send(slack, {})
    short = lambda name: {"url": SecretStr("https://hooks.example.com/x"), "signingKey": SecretStr("s3cr")}  # noqa: E731
    with pytest.raises(NotifyError, match="signingKey of at least 16 bytes") as err:
        HttpNotifier(short).send(hook, {})
    assert "s3cr" not in str(err.value)


def test_the_cli_reads_destinations_from_the_environment() -> None:
    read = secrets_from_env({"NOTIFY_SLACK_HOOK_URL": "https://hooks.example.com/1"})
    assert read("slack-hook")["url"].get_secret_value() == "https://hooks.example.com/1"
    with pytest.raises(Exception, match="NOTIFY_TEAMS_HOOK_URL"):
        read("teams-hook")


def test_a_slow_receiver_hits_the_total_deadline() -> None:
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def accept() -> None:  # accepts and never answers
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conns.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    try:
        notifier = HttpNotifier(
            lambda n: {"url": SecretStr(url)}, allow_private=True, deadline=1.0, attempts=5, backoff=0.01
        )
        (dest,) = spec().notify[:1]
        with pytest.raises(NotifyError, match="ReadTimeout"):
            notifier.send(dest, {"text": "x"})
        assert notifier.requests <= 5
    finally:
        stop.set()
        thread.join(2)
        for c in conns:
            c.close()
        server.close()


def _resolver(answers: dict[str, list[str]], calls: list[str]) -> Any:
    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return list(answers.get(host, []))

    return resolve


def test_the_message_goes_to_the_checked_address_under_the_urls_name() -> None:
    # hooks.internal resolves nowhere but in our resolver: delivery proves the connection went to
    # the address that was checked, and that the name was resolved once (no second answer, as a
    # rebinding DNS server would give, is ever asked for).
    with receiver("slack") as slack:
        port = slack.url.split(":")[2].split("/")[0]
        url = f"http://hooks.internal:{port}/hook/slack"
        calls: list[str] = []
        notifier = fast(
            lambda n: {"url": SecretStr(url)}, resolver=_resolver({"hooks.internal": ["127.0.0.1"]}, calls)
        )
        notifier.send(spec().notify[0], {"text": "x", "blocks": []})
        assert [r.status for r in slack.received] == [200]
        assert slack.received[0].headers["host"] == f"hooks.internal:{port}"
        assert calls == ["hooks.internal"]


@pytest.mark.parametrize(("cert_name", "delivered"), [("hooks.test", True), ("other.test", False)])
def test_https_to_the_checked_address_verifies_the_urls_name(
    tmp_path: Path, cert_name: str, delivered: bool
) -> None:
    # The TLS name (SNI and the certificate check) is the URL's host, not the pinned address: a
    # certificate for another name is refused although the address is the checked one.
    ca = make_ca(tmp_path)
    with receiver("slack", tls=ca.issue(cert_name)) as slack:
        port = slack.url.split(":")[2].split("/")[0]
        url = f"https://hooks.test:{port}/hook/slack"
        resolve = _resolver({"hooks.test": ["127.0.0.1"]}, [])
        notifier = fast(lambda n: {"url": SecretStr(url)}, resolver=resolve, verify=ca.ca_file, attempts=1)
        if delivered:
            notifier.send(spec().notify[0], {"text": "x", "blocks": []})
            assert [r.status for r in slack.received] == [200]
        else:
            with pytest.raises(NotifyError, match="SSLError"):
                notifier.send(spec().notify[0], {"text": "x", "blocks": []})
            assert slack.received == []


@pytest.mark.parametrize(
    "url",
    ["https://hooks.slack.com/services/T2/B/x", "https://127.0.0.1/hook", "https://hooks.example.com/x"],
)
def test_a_url_the_grant_does_not_list_is_refused_before_resolving(url: str) -> None:
    calls: list[str] = []
    notifier = fast(
        lambda n: {"url": SecretStr(url)},
        granted=("https://hooks.slack.com/services/T1", "*.webhook.office.com"),
        resolver=_resolver({}, calls),
    )
    with pytest.raises(NotifyError, match="not among the granted notification destinations"):
        notifier.send(spec().notify[0], {"text": "x", "blocks": []})
    assert calls == [] and notifier.requests == 0


def test_a_granted_url_is_delivered() -> None:
    with receiver("slack") as slack:
        notifier = fast(secrets(slack), granted=("127.0.0.1",))
        notifier.send(spec().notify[0], {"text": "x", "blocks": []})
        assert [r.status for r in slack.received] == [200]
