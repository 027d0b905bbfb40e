"""An HTTP proxy in front of moto that SIGKILLs the client process at its N-th request.

Point one service of one process at it (`AWS_ENDPOINT_URL_S3=proxy.url`): every request is
counted and forwarded to moto unchanged, and at request number `kill_at` the process `pid` is
killed with SIGKILL, either before the request reaches moto ("before") or after moto handled
it but before the answer goes back ("after": the write landed, the writer never learned it).
"""

from __future__ import annotations

import http.client
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te", "trailer"}


class KillProxy:
    """Counts requests; kills `pid` at request `kill_at` (None: never)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.count = 0
        self.kill_at: int | None = None
        self.mode = "before"
        self.pid: int | None = None
        self.killed_at: str | None = None  # "METHOD path" of the request the kill happened at
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def arm(self, pid: int | None, kill_at: int | None, mode: str = "before") -> None:
        """Reset the counter; kill `pid` at request `kill_at`."""
        with self._lock:
            self.count, self.pid, self.kill_at, self.mode, self.killed_at = 0, pid, kill_at, mode, None

    def start(self) -> KillProxy:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def _kill(self, what: str) -> None:
        if self.pid is not None:
            self.killed_at = what
            os.kill(self.pid, signal.SIGKILL)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy.count += 1
                    doom = proxy.kill_at is not None and proxy.count == proxy.kill_at
                what = f"{self.command} {self.path.split('?')[0]}"
                if doom and proxy.mode == "before":
                    proxy._kill(what)
                    self.close_connection = True
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if doom:
                    proxy._kill(what)
                    self.close_connection = True
                    return
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        return Handler
