"""Local Slack-like, Teams-like and webhook receivers: real HTTP servers on 127.0.0.1.

Each checks what the real service would refuse and answers as it does: Slack's incoming webhook
answers 400 `invalid_blocks` / `invalid_payload` (Block Kit: at most 50 blocks, a section or
context text at most 3,000 characters, a header's plain_text at most 150); a Teams workflow
webhook refuses a card over ~28 KB (413) or that is not an Adaptive Card; the generic webhook
checks the HMAC-SHA256 signature over "<timestamp>.<body>" and the timestamp's freshness (401).
Everything received is kept (`received`), valid or not; `fail_with` makes it answer an error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SLACK_BLOCK_TYPES = {"header", "section", "context", "divider", "actions"}
TEAMS_MAX_BYTES = 28_000


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    problem: str = ""

    @property
    def json(self) -> Any:
        """The body parsed."""
        return json.loads(self.body)


@dataclass
class Receiver:
    """A running receiver."""

    kind: str
    url: str
    signing_key: bytes = b""
    received: list[Received] = field(default_factory=list)
    fail_with: int | None = None

    @property
    def accepted(self) -> list[Received]:
        """The requests answered 2xx."""
        return [r for r in self.received if 200 <= r.status < 300]


def slack_problem(payload: Any) -> str:
    """Why Slack would refuse this incoming-webhook payload ("" when it would not)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
        return "invalid_payload: no text"
    blocks = payload.get("blocks", [])
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "invalid_blocks: more than 50 blocks"
    for i, block in enumerate(blocks):
        kind = block.get("type")
        if kind not in SLACK_BLOCK_TYPES:
            return f"invalid_blocks: block {i} type {kind!r}"
        if kind == "header":
            text = block["text"]
            if text.get("type") != "plain_text" or not 0 < len(text.get("text", "")) <= 150:
                return f"invalid_blocks: header {i}"
        elif kind == "section":
            text = block.get("text", {})
            if text.get("type") not in ("mrkdwn", "plain_text") or not 0 < len(text.get("text", "")) <= 3000:
                return f"invalid_blocks: section {i} text"
        elif kind == "context":
            elements = block.get("elements", [])
            if not 0 < len(elements) <= 10 or any(len(e.get("text", "")) > 3000 for e in elements):
                return f"invalid_blocks: context {i}"
    return ""


def teams_problem(body: bytes) -> tuple[int, str]:
    """(status, why) a Teams workflow webhook would refuse this body; (202, "") when accepted."""
    if len(body) > TEAMS_MAX_BYTES:
        return 413, f"payload of {len(body)} bytes is over {TEAMS_MAX_BYTES}"
    payload = json.loads(body)
    if payload.get("type") != "message":
        return 400, "type is not message"
    attachments = payload.get("attachments", [])
    if (
        len(attachments) != 1
        or attachments[0].get("contentType") != "application/vnd.microsoft.card.adaptive"
    ):
        return 400, "not one Adaptive Card attachment"
    card = attachments[0]["content"]
    if card.get("type") != "AdaptiveCard" or not card.get("version") or not card.get("body"):
        return 400, "not an Adaptive Card"
    for element in card["body"]:
        if element.get("type") not in ("TextBlock", "FactSet"):
            return 400, f"element {element.get('type')!r}"
        if element["type"] == "TextBlock" and not isinstance(element.get("text"), str):
            return 400, "TextBlock without text"
    return 202, ""


def webhook_problem(headers: dict[str, str], body: bytes, key: bytes) -> str:
    """Why a signed webhook delivery is refused ("" when the signature and timestamp hold)."""
    stamp = headers.get("x-ecsscan-timestamp", "")
    signature = headers.get("x-ecsscan-signature", "")
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > 300:
        return "stale or missing timestamp"
    expected = "sha256=" + hmac.new(key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature, expected):
        return "bad signature"
    payload = json.loads(body)
    for name in ("schema", "policy", "runId", "events", "findingsBySeverity", "findings", "reportUrl"):
        if name not in payload:
            return f"missing {name}"
    return ""


@contextmanager
def receiver(kind: str, signing_key: bytes = b"", tls: tuple[str, str] | None = None) -> Iterator[Receiver]:
    """Run a receiver of `kind` (slack, teams, webhook) until the block ends; HTTPS with `tls` (cert, key)."""
    state = Receiver(kind=kind, url="", signing_key=signing_key)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, problem = 200, ""
            try:
                if state.fail_with is not None:
                    status, problem = state.fail_with, "told to fail"
                elif kind == "slack":
                    problem = slack_problem(json.loads(body))
                    status = 400 if problem else 200
                elif kind == "teams":
                    status, problem = teams_problem(body)
                else:
                    problem = webhook_problem(headers, body, state.signing_key)
                    status = 401 if problem else 204
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                status, problem = 400, f"invalid_payload: {exc}"
            with lock:
                state.received.append(Received(self.path, headers, body, status, problem))
            reply = (problem or "ok").encode()
            self.send_response(status)
            self.send_header("Content-Length", str(0 if status == 204 else len(reply)))
            self.end_headers()
            if status != 204:
                self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    state.url = f"{scheme}://127.0.0.1:{server.server_address[1]}/hook/{kind}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
