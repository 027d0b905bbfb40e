"""A process started for a test in its own session, stopped by process group at the end."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def background_process(
    cmd: list[str], env: dict[str, str], log: Path, *, cwd: Path | None = None, grace: float = 30
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `cmd` with output to `log`; SIGTERM its group at the end, SIGKILL after `grace` seconds."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
