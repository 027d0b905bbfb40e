"""Headless Chromium over the DevTools protocol, for looking at the HTML report the way a person does.

No browser download and no driver: the distribution's `chromium` (Debian: `apt-get install
chromium`) is started with `--remote-debugging-port=0`, the port is read from the profile's
`DevToolsActivePort` file, and the page target is driven over its WebSocket with websocket-client
(already pinned). The session records what the page did: console messages, uncaught exceptions,
log entries (Content-Security-Policy violations arrive there) and every network request.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websocket

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The browser binary: $CHROMIUM, else the first of CANDIDATES on PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageLog:
    """What the page did while it was open."""

    console: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)  # alert(), confirm(): what injected script would do

    def errors(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, and error/warning log entries."""
        out = [
            f"console.{m['type']}: {m.get('args')}" for m in self.console if m["type"] in ("error", "warning")
        ]
        out += [f"exception: {e.get('exceptionDetails', {}).get('text')}" for e in self.exceptions]
        out += [
            f"log {e['entry']['level']} ({e['entry'].get('source')}): {e['entry']['text']}"
            for e in self.log
            if e["entry"]["level"] in ("error", "warning")
        ]
        return out


class Page:
    """One tab, driven over CDP."""

    def __init__(self, ws_url: str, timeout: float) -> None:
        self._ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self._ids = itertools.count(1)
        self._timeout = timeout
        self.log = PageLog()
        self._events: list[dict[str, Any]] = []
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable")

    def close(self) -> None:
        """Close the WebSocket."""
        self._ws.close()

    def _record(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            self.log.console.append(params)
        elif method == "Runtime.exceptionThrown":
            self.log.exceptions.append(params)
        elif method == "Log.entryAdded":
            self.log.log.append(params)
        elif method == "Network.requestWillBeSent":
            self.log.requests.append(params["request"]["url"])
        elif method == "Page.javascriptDialogOpening":
            self.log.dialogs.append(params.get("message", ""))
            self._ws.send(json.dumps({"id": next(self._ids), "method": "Page.handleJavaScriptDialog",
                                      "params": {"accept": True}}))  # fmt: skip
        self._events.append(msg)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer (recording the events that come before it)."""
        ident = next(self._ids)
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            msg = json.loads(self._ws.recv())
            if msg.get("id") == ident:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result
            self._record(msg)

    def wait_for(self, method: str) -> dict[str, Any]:
        """The next event `method` (or one already received)."""
        for i, seen in enumerate(self._events):
            if seen.get("method") == method:
                del self._events[i]
                return seen
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            msg: dict[str, Any] = json.loads(self._ws.recv())
            self._record(msg)
            if msg.get("method") == method:
                self._events.remove(msg)
                return msg
        raise TimeoutError(method)

    def without_javascript(self) -> None:
        """Pages opened from now on run no script (as with JavaScript turned off)."""
        self.call("Emulation.setScriptExecutionDisabled", value=True)

    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self._events.clear()
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def js(self, expression: str) -> Any:
        """Evaluate an expression in the page; its JSON value."""
        out = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in out:
            raise RuntimeError(f"{expression}: {out['exceptionDetails']}")
        return out["result"].get("value")


@contextlib.contextmanager
def chromium(binary: str, *, timeout: float = 30.0) -> Iterator[Page]:
    """A headless browser with one page; the process and its profile are removed afterwards."""
    profile = tempfile.mkdtemp(prefix="report-chromium-")
    args = [
        binary,
        "--headless=new",
        "--no-sandbox",  # as root (CI) the sandbox refuses to start; the pages are our own files
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    page: Page | None = None
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{binary} did not start (exit {proc.poll()})")
            time.sleep(0.05)
        port = int(port_file.read_text().split("\n")[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as resp:
            targets = json.loads(resp.read())
        target = next(t for t in targets if t["type"] == "page")
        page = Page(target["webSocketDebuggerUrl"], timeout)
        yield page
    finally:
        if page is not None:
            page.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
