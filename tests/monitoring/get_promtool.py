"""Build ``promtool`` (Prometheus's rule checker) once and link it into ``.tools/bin/``. Stdlib only.

``go install github.com/prometheus/prometheus/cmd/promtool@<PROMETHEUS_MODULE>`` through the Go
module proxy, with the module and build caches of the cluster binaries
(``<cache>/go/``, see ``tests/cluster/build.py``); the binary goes to
``<cache>/promtool/<version>/promtool`` and ``.tools/bin/promtool`` is a link to it. Prometheus
3.x is published as the Go module version ``v0.3XX.Y`` (3.XX.Y).  Idempotent: nothing is built
when the cached binary exists.  Measured: a cold build is ~450 s of CPU (393 s user + 52 s system,
i.e. about 4 minutes on 2 idle cores, plus ~300 MB of module downloads the first time); a warm
call returns in 0.05 s.

Usage: ``python -m tests.monitoring.get_promtool [--dest .tools/bin] [--force]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.cluster.build import _file_lock, _go_env, cache_root, find_go

#: Prometheus v3.16.0
PROMETHEUS_MODULE = "v0.316.0"
PACKAGE = "github.com/prometheus/prometheus/cmd/promtool"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DEST = REPO_ROOT / ".tools" / "bin"


def _log(msg: str) -> None:
    print(f"[promtool] {msg}", file=sys.stderr, flush=True)


def cached_binary() -> Path:
    """Where the built promtool of the pinned version lives."""
    return cache_root() / "promtool" / PROMETHEUS_MODULE / "promtool"


def build(force: bool = False) -> Path:
    """Build promtool into the cache unless it is there; return its path."""
    target = cached_binary()
    with _file_lock(target.parent / ".lock", _log):
        if target.is_file() and os.access(target, os.X_OK) and not force:
            return target
        go = find_go()
        env = _go_env(go)
        env["GOBIN"] = str(target.parent)
        env["GOFLAGS"] = "-buildvcs=false"  # `go install pkg@version` has no go.mod of ours
        _log(f"go install {PACKAGE}@{PROMETHEUS_MODULE} (a cold build takes ~4 minutes on 2 cores) ...")
        began = time.monotonic()
        subprocess.run(
            [go, "install", "-trimpath", "-ldflags=-s -w", f"{PACKAGE}@{PROMETHEUS_MODULE}"],
            env=env,
            check=True,
        )
        _log(f"built {target} in {time.monotonic() - began:.0f} s")
    return target


def install(dest: Path = DEFAULT_DEST, force: bool = False) -> Path:
    """Build (or reuse) promtool and link it as dest/promtool."""
    binary = build(force)
    dest.mkdir(parents=True, exist_ok=True)
    link = dest / "promtool"
    if link.is_symlink() or link.exists():
        if link.resolve() == binary.resolve():
            return link
        link.unlink()
    link.symlink_to(binary)
    return link


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    args = parser.parse_args(argv)
    print(install(args.dest, args.force))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
