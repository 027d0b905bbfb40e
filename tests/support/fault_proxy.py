"""A fault-injecting HTTP proxy in front of moto's server, for tests of timeouts and retries.

botocore talks to it as to any endpoint (`AWS_ENDPOINT_URL_<SERVICE>=proxy.url`). Each request
is matched against the rules in order (service from the SigV4 credential scope, operation from
`X-Amz-Target` for the JSON protocols, method and path for REST ones such as S3 and Inspector2);
the first rule that matches and still has uses left decides what happens to it:

- `pass`      forward to moto and return its answer;
- `blackhole` read the request, then never answer (the connection stays open until the proxy
              stops): a dead endpoint as a client sees it, a read timeout on every attempt;
- `503`       answer HTTP 503 ServiceUnavailable without forwarding;
- `throttle`  answer the protocol's throttling error (400/429 ThrottlingException, S3 503 SlowDown);
- `reset`     read the request, then close the connection with a TCP RST;
- `trickle`   forward, then send moto's whole answer one byte every `trickle_interval` seconds.

A rule with `times=N` applies to its first N matching requests, then falls through (a fault
that clears after a few tries). The proxy is bounded: it stops by itself after `lifetime`
seconds (releasing every held connection), and `stop()` releases them at once.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

Mode = Literal["pass", "blackhole", "503", "throttle", "reset", "trickle"]
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te"}
_SCOPE_RE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")


@dataclass
class Rule:
    """Which requests get which fault; None matches anything."""

    mode: Mode
    service: str | None = None  # the SigV4 signing name: ecs, ecr, inspector2, s3
    operation: str | None = None  # the X-Amz-Target operation (ListTaskDefinitionFamilies)
    method: str | None = None  # PUT, GET...
    path: str | None = None  # a regex searched in the request path
    times: int | None = None  # uses before the rule falls through; None: always
    used: int = 0

    def matches(self, service: str, operation: str, method: str, path: str) -> bool:
        """The request is one of this rule's and the rule has uses left."""
        if self.times is not None and self.used >= self.times:
            return False
        return (
            (self.service is None or self.service == service)
            and (self.operation is None or self.operation == operation)
            and (self.method is None or self.method == method)
            and (self.path is None or re.search(self.path, path) is not None)
        )


class FaultProxy:
    """The proxy: `with FaultProxy(moto_url) as proxy: proxy.add(Rule("blackhole", service="ecs"))`."""

    def __init__(self, upstream: str, *, lifetime: float = 300.0, trickle_interval: float = 0.2) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._lifetime = lifetime
        self.trickle_interval = trickle_interval
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self.stopped = threading.Event()
        #: (service, operation, mode) -> requests seen
        self.seen: Counter[tuple[str, str, str]] = Counter()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True

    def add(self, *rules: Rule) -> None:
        """Append rules (first match wins)."""
        with self._lock:
            self._rules.extend(rules)

    def clear(self) -> None:
        """Forget every rule: everything passes."""
        with self._lock:
            self._rules.clear()

    def decide(self, service: str, operation: str, method: str, path: str) -> Mode:
        """The mode for one request (and count its use)."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(service, operation, method, path):
                    rule.used += 1
                    mode = rule.mode
                    break
            else:
                mode = "pass"
            self.seen[(service, operation, mode)] += 1
        return mode

    def count(self, mode: Mode, service: str | None = None) -> int:
        """Requests answered with `mode` (of `service`)."""
        with self._lock:
            return sum(n for (s, _, m), n in self.seen.items() if m == mode and service in (None, s))

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        """moto's raw answer (status line, headers, body) to one request."""
        conn = http.client.HTTPConnection(*self._upstream, timeout=30)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            lines = [f"HTTP/1.1 {resp.status} {resp.reason}"]
            for name, value in resp.getheaders():
                # A HEAD answer keeps moto's Content-Length (the object's size) and has no body.
                if name.lower() not in _HOP_BY_HOP and (method == "HEAD" or name.lower() != "content-length"):
                    lines.append(f"{name}: {value}")
            if method != "HEAD":
                lines.append(f"Content-Length: {len(data)}")
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            return head + (data if method != "HEAD" else b"")
        finally:
            conn.close()

    def start(self) -> FaultProxy:
        """Serve in a background thread; stop by itself after the lifetime."""
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        """Stop serving and release every held connection."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _error(service: str, mode: Mode) -> bytes:
    """The raw answer of an injected error, in the service's protocol."""
    if service == "s3":
        code, status = ("SlowDown", 503) if mode == "throttle" else ("ServiceUnavailable", 503)
        body = f"<Error><Code>{code}</Code><Message>injected by the fault proxy</Message></Error>".encode()
        ctype = "application/xml"
    else:
        code, status = (
            ("ThrottlingException", 400) if mode == "throttle" else ("ServiceUnavailableException", 503)
        )
        body = f'{{"__type":"{code}","message":"injected by the fault proxy"}}'.encode()
        ctype = "application/x-amz-json-1.1"
    reason = {400: "Bad Request", 503: "Service Unavailable"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nx-amzn-ErrorType: {code}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: tests read `proxy.seen`

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _handle(self) -> None:
            body = self._body()
            scope = _SCOPE_RE.search(self.headers.get("Authorization", ""))
            service = scope.group(1) if scope else ""
            operation = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
            mode = proxy.decide(service, operation, self.command, self.path)
            if mode == "blackhole":
                proxy.stopped.wait()  # never answer; released when the proxy stops
                self.close_connection = True
                return
            if mode == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                return
            if mode in ("503", "throttle"):
                self.wfile.write(_error(service, mode))
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if body:
                headers["Content-Length"] = str(len(body))
            answer = proxy.forward(self.command, self.path, headers, body)
            if mode == "trickle":
                for i in range(len(answer)):
                    if proxy.stopped.wait(proxy.trickle_interval):
                        self.close_connection = True
                        return
                    self.wfile.write(answer[i : i + 1])
                    self.wfile.flush()
                return
            self.wfile.write(answer)

        def finish(self) -> None:
            # The client gave up (a timeout) or the connection was reset on purpose.
            with contextlib.suppress(OSError):
                super().finish()

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

    return Handler


@contextmanager
def fault_proxy(upstream: str, **kwargs: float) -> Iterator[FaultProxy]:
    """A started proxy, stopped on exit."""
    proxy = FaultProxy(upstream, **kwargs).start()
    try:
        yield proxy
    finally:
        proxy.stop()
