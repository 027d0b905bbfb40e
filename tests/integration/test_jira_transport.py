"""The Jira transport's bounds and destination checks, against real local sockets.

A tiny socket server answers serverInfo like Jira Cloud and then misbehaves on every other
request: it trickles its answer one byte per second, or sends a body larger than the cap. The
contract test server (tests/jira_server) stands in for a Jira on a named private host.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import pytest

from ecs_scan_operator.adapters.jira import (
    JiraCredentials,
    JiraSinkOptions,
    JiraTicketSink,
    TransportLimits,
    build_ticket_sink,
)
from ecs_scan_operator.adapters.jira_transport import JiraTransport, ResponseTooLarge, Throttled, TooSlow
from ecs_scan_operator.core.destinations import AllowList
from ecs_scan_operator.core.model import ImageResult
from ecs_scan_operator.core.tickets import TicketReport
from ecs_scan_operator.errors import PermanentError
from tests.jira_server import fleet
from tests.jira_server.server import JiraTestServer

pytestmark = pytest.mark.integration

CREDS = JiraCredentials.from_mapping({"email": "bot@example.com", "apiToken": "tok-en-not-for-logs-1"})
LOOPBACK = AllowList.parse(["127.0.0.1"])
SERVER_INFO = json.dumps({"deploymentType": "Cloud", "baseUrl": "http://x"}).encode()
MiB = 1024 * 1024
NOW = datetime(2025, 5, 5, 6, 0, tzinfo=UTC)


class Misbehaving:
    """serverInfo answered at once; every other request answered the way `mode` says."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests: list[str] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        self._sock.settimeout(0.2)  # so close() is noticed soon
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                while not self._stop.is_set():
                    head = b""
                    while b"\r\n\r\n" not in head:
                        more = conn.recv(65536)
                        if not more:
                            return
                        head += more
                    line = head.split(b"\r\n", 1)[0].decode()
                    self.requests.append(line)
                    if "/serverInfo" in line:
                        conn.sendall(_head(200, len(SERVER_INFO)) + SERVER_INFO)
                        continue
                    self._misbehave(conn)
                    return
            except OSError:
                return  # the client gave up: that is the point

    def _misbehave(self, conn: socket.socket) -> None:
        if self.mode == "trickle-headers":
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            for _ in range(600):
                conn.sendall(b"a")
                if self._stop.wait(1.0):
                    return
        elif self.mode in ("trickle", "trickle-chunked"):
            chunked = self.mode == "trickle-chunked"
            conn.sendall(_head(200, None if chunked else 100_000))
            for _ in range(600):  # ten minutes, one byte a second, unless the client hangs up
                conn.sendall(b"1\r\n{\r\n" if chunked else b" ")
                if self._stop.wait(1.0):
                    return
        elif self.mode == "redirect":
            conn.sendall(
                b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\n"
                b"Content-Length: 0\r\n\r\n"
            )
        elif self.mode == "huge-declared":
            conn.sendall(_head(200, 9 * MiB))
            conn.sendall(b"[" + b"0," * 1000)
            self._stop.wait(5)
        elif self.mode == "huge-chunked":
            conn.sendall(_head(200, None))
            piece = b" " * 65536
            chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            for _ in range(16 * 16):  # 16 MiB, twice the cap
                conn.sendall(chunk)


def _head(status: int, length: int | None) -> bytes:
    size = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n{size}\r\n\r\n".encode()


@pytest.fixture
def misbehaving(request: pytest.FixtureRequest) -> Iterator[Misbehaving]:
    server = Misbehaving(request.param)
    yield server
    server.close()


def _transport(url: str, **limits: Any) -> JiraTransport:
    t = JiraTransport(url, CREDS, limits=TransportLimits(**limits), allow=LOOPBACK, sleep=lambda _: None)
    t.begin_stage()
    return t


def _images() -> list[ImageResult]:
    return [fleet.image("svc/r0", "1", [("CVE-2024-1001", "openssl", "HIGH")], families=[("fam0", "c")])]


def _sync(sink: JiraTicketSink, url: str) -> TicketReport:
    spec = fleet.spec({"url": url})
    return sink.sync(fleet.request(spec, _images(), NOW, "run-1"))


@pytest.mark.parametrize("misbehaving", ["trickle", "trickle-chunked", "trickle-headers"], indirect=True)
def test_a_trickling_answer_ends_at_the_request_deadline(misbehaving: Misbehaving) -> None:
    t = _transport(misbehaving.url, request_deadline=2.0, read_timeout=30.0)
    assert t.cloud  # serverInfo came back at once
    with pytest.raises(TooSlow, match=r"\b2 s\b"):
        t.call("GET", "search/jql", idempotent=True, params={"jql": "x"})
    assert len(misbehaving.requests) == 2  # serverInfo, then one try: slowness is not retried
    t.close()


@pytest.mark.parametrize("misbehaving", ["trickle"], indirect=True)
def test_a_trickling_jira_fails_the_stage_cleanly(misbehaving: Misbehaving) -> None:
    sink = JiraTicketSink(
        misbehaving.url,
        CREDS,
        options=JiraSinkOptions(limits=TransportLimits(request_deadline=2.0)),
        allow=LOOPBACK,
        sleep=lambda _: None,
    )
    report = _sync(sink, misbehaving.url)
    sink.close()
    assert not report.synced and report.reason == "JiraTooSlow"
    assert report.actions == {} and report.writes == 0  # stopped while searching; the next run starts over
    assert len(report.errors) == 1 and "deadline of 2 s" in report.errors[0]
    assert "tok-en-not-for-logs-1" not in json.dumps(asdict(report))


@pytest.mark.parametrize("misbehaving", ["huge-declared", "huge-chunked"], indirect=True)
def test_a_huge_answer_is_capped(misbehaving: Misbehaving) -> None:
    t = _transport(misbehaving.url)
    with pytest.raises(ResponseTooLarge, match="8 MiB"):
        t.call("GET", "search/jql", idempotent=True, params={"jql": "x"})
    t.close()
    sink = JiraTicketSink(misbehaving.url, CREDS, allow=LOOPBACK, sleep=lambda _: None)
    report = _sync(sink, misbehaving.url)
    sink.close()
    assert not report.synced and report.reason == "JiraUnavailable"
    assert "cap of 8 MiB" in report.errors[0]


def test_the_stage_deadline_bounds_a_run_of_slow_answers(jira_server: JiraTestServer) -> None:
    clock = [0.0]

    def monotonic() -> float:
        clock[0] += 100.0  # every look at the clock: 100 s later
        return clock[0]

    creds = JiraCredentials.from_env(jira_server.credentials_env())
    assert creds is not None
    t = JiraTransport(
        jira_server.url,
        creds,
        limits=TransportLimits(stage_deadline=1000.0, request_deadline=1e9),
        allow=LOOPBACK,
        monotonic=monotonic,
    )
    t.begin_stage()
    with pytest.raises(TooSlow, match="stage's 1000 s are spent"):
        for _ in range(20):
            t.call("GET", "serverInfo", idempotent=True)
    assert t.counters.requests < 20
    t.close()


# -- where the credentials go ----------------------------------------------------------------


def _resolver(answers: dict[str, list[str]], calls: list[str] | None = None) -> Any:
    def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        return answers.get(host, [])

    return resolve


@pytest.mark.parametrize(
    ("addresses", "why"),
    [
        (["127.0.0.1"], "loopback"),
        (["::1"], "loopback"),
        (["::ffff:127.0.0.1"], "loopback"),
        (["169.254.169.254"], "instance metadata service"),
        (["fe80::1"], "link-local"),
        (["10.0.0.7"], "private"),
        (["192.168.1.20"], "private"),
        (["0.0.0.0"], "unspecified"),
        (["104.192.141.1", "172.20.0.3"], "172.20.0.3 is a private"),  # one of several
        ([], "resolves to no address"),
    ],
)
def test_the_operator_refuses_a_destination_and_sends_nothing(
    jira_server: JiraTestServer, addresses: list[str], why: str
) -> None:
    port = jira_server.url.rsplit(":", 1)[1]
    url = f"http://jira.example.com:{port}"
    creds = JiraCredentials.from_env(jira_server.credentials_env())
    assert creds is not None
    sink = JiraTicketSink(
        url,
        creds,
        allow=AllowList(),
        resolver=_resolver({"jira.example.com": addresses}),
        sleep=lambda _: None,
    )
    report = _sync(sink, url)
    sink.close()
    assert not report.synced and report.reason == "JiraDestinationRefused"
    assert report.actions == {} and report.requests == 0
    (error,) = report.errors
    assert "jira.example.com" in error and why in error and "no request sent" in error
    assert not jira_server.log  # not even serverInfo


def test_without_the_setting_the_local_test_server_itself_is_refused(
    jira_server: JiraTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ECS_SCAN_JIRA_ALLOWED_HOSTS")
    creds = JiraCredentials.from_env(jira_server.credentials_env())
    assert creds is not None
    sink = JiraTicketSink(jira_server.url, creds, sleep=lambda _: None)  # the setting decides
    report = _sync(sink, jira_server.url)
    assert report.reason == "JiraDestinationRefused" and "127.0.0.1 is a loopback" in report.errors[0]
    # The composition root's sink (what the operator runs) decides the same way.
    built = build_ticket_sink(fleet.spec({"url": jira_server.url}), creds)
    assert built is not None
    again = built.sync(fleet.request(fleet.spec({"url": jira_server.url}), _images(), NOW, "run-2"))
    assert again.reason == "JiraDestinationRefused" and "127.0.0.1" in again.errors[0]
    assert not jira_server.log


def test_the_allow_list_lets_a_named_private_host_through_at_the_checked_address(
    jira_server: JiraTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy that does not exist, bypassed for the name: NO_PROXY is matched against the name,
    # not against the pinned address the connection goes to.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "jira.internal")
    port = jira_server.url.rsplit(":", 1)[1]
    url = f"http://jira.internal:{port}"  # a name no real resolver knows: only the checked address works
    calls: list[str] = []
    creds = JiraCredentials.from_env(jira_server.credentials_env())
    assert creds is not None
    sink = JiraTicketSink(
        url,
        creds,
        allow=AllowList.parse(["jira.internal"]),
        resolver=_resolver({"jira.internal": ["127.0.0.1"]}, calls),
        sleep=lambda _: None,
    )
    report = _sync(sink, url)
    assert report.synced and report.actions == {"create": 1}, report.errors
    assert report.requests >= 3 and calls == ["jira.internal"]  # resolved once, then pinned
    sink.close()


def test_the_cli_mode_warns_and_proceeds(
    jira_server: JiraTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    creds = JiraCredentials.from_env(jira_server.credentials_env())
    assert creds is not None
    sink = JiraTicketSink(
        jira_server.url, creds, allow=AllowList(), enforce_destination=False, sleep=lambda _: None
    )
    report = _sync(sink, jira_server.url)
    sink.close()
    assert report.synced and report.actions == {"create": 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("sending credentials to 127.0.0.1 although 127.0.0.1 is a loopback" in w for w in warnings)


@pytest.mark.parametrize("misbehaving", ["redirect"], indirect=True)
def test_redirects_are_not_followed(misbehaving: Misbehaving) -> None:
    t = _transport(misbehaving.url)
    with pytest.raises(PermanentError, match=r"redirected \(302\)"):
        t.call("GET", "myself", idempotent=True)
    assert len(misbehaving.requests) == 2  # serverInfo and the redirected call; nothing sent onwards
    t.close()


def test_the_retry_window_bounds_one_call(jira_server: JiraTestServer) -> None:
    clock = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    creds = JiraCredentials.from_env(jira_server.credentials_env())
    assert creds is not None
    t = JiraTransport(
        jira_server.url,
        creds,
        limits=TransportLimits(retry_window=150.0, max_attempts=10),
        allow=LOOPBACK,
        sleep=sleep,
        monotonic=lambda: clock[0],
    )
    t.begin_stage()
    t.connect()
    jira_server.faults.retry_after = 60
    for _ in range(5):
        jira_server.fail_next("GET", r"/search/jql$", "429")
    with pytest.raises(Throttled, match=r"throttled \(429\)"):
        t.call("GET", "search/jql", idempotent=True, params={"jql": 'labels = "x"'})
    assert sleeps == [60.0, 60.0]  # a third wait would start a try 180 s after the first
    assert t.counters.requests == 1 + 3  # serverInfo, then three tries
    t.close()


def test_a_grants_private_hosts_travel_with_the_credentials(
    jira_server: JiraTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The operator's own list is empty; the ScanAccessGrant that allowed the policy names the
    # (private) host, and the scheduler hands that to the run with the credentials.
    monkeypatch.delenv("ECS_SCAN_JIRA_ALLOWED_HOSTS")
    creds = JiraCredentials.from_env(jira_server.credentials_env())
    assert creds is not None
    granted = creds.model_copy(update={"allowed_hosts": ("127.0.0.1",)})
    spec = fleet.spec({"url": jira_server.url})
    other = build_ticket_sink(spec, creds.model_copy(update={"allowed_hosts": ("10.0.0.5",)}))
    assert other is not None
    refused = other.sync(fleet.request(spec, _images(), NOW, "run-1"))
    assert refused.reason == "JiraDestinationRefused" and not jira_server.log  # another host's grant
    sink = build_ticket_sink(spec, granted)
    assert sink is not None
    report = sink.sync(fleet.request(spec, _images(), NOW, "run-2"))
    assert report.synced and report.actions == {"create": 1}, report.errors
