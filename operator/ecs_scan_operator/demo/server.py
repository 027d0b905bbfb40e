"""Start moto's AWS server in-process on 127.0.0.1 (a free port) for the demo."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

DEMO_ENV = {
    "AWS_ACCESS_KEY_ID": "demo",
    "AWS_SECRET_ACCESS_KEY": "demo",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def moto_server() -> Iterator[str]:
    """Yield the endpoint URL of a moto server; AWS env vars point at it for the duration."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # moto is a demo/test extra, not a runtime dependency
        raise SystemExit("the demo needs moto: pip install 'ecs-scan-operator[demo]'") from exc
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in [*DEMO_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(DEMO_ENV)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
