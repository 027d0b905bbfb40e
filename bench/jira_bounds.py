"""How long a run's Jira stage takes against a Jira that never answers, or trickles its answer.

`python -m bench.jira_bounds silent|trickle`: a local socket server accepts connections and then
says nothing (`silent`) or sends headers and one body byte a second (`trickle`); one sync of the
real sink with the default limits runs against it and the wall time is printed. The figures are
in docs/operations.md ("Jira: where the credentials go, timeouts and limits").
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from datetime import UTC, datetime

from tests.jira_server import fleet

from ecs_scan_operator.adapters.jira import JiraCredentials, JiraTicketSink
from ecs_scan_operator.core.destinations import AllowList


def _drip(conn: socket.socket) -> None:
    try:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        while True:
            conn.sendall(b" ")
            time.sleep(1)
    except OSError:
        return  # the client hung up


def main() -> None:
    """Serve misbehaving Jira answers and time one sync against them."""
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["silent", "trickle"])
    mode = parser.parse_args().mode
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []  # silent: keep the connections open, answer nothing

    def serve() -> None:
        while True:
            conn, _ = server.accept()
            held.append(conn)
            if mode == "trickle":
                threading.Thread(target=_drip, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    creds = JiraCredentials.from_mapping({"token": "x" * 20})
    sink = JiraTicketSink(url, creds, allow=AllowList.parse(["127.0.0.1"]))
    image = fleet.image("svc/r0", "1", [("CVE-2024-1001", "openssl", "HIGH")], families=[("fam0", "c")])
    request = fleet.request(fleet.spec({"url": url}), [image], datetime(2025, 5, 5, tzinfo=UTC), "run-1")
    started = time.monotonic()
    report = sink.sync(request)
    print(
        f"{mode}: {time.monotonic() - started:.1f} s, reason {report.reason}, "
        f"requests {report.requests}, errors {report.errors}"
    )


if __name__ == "__main__":
    main()
