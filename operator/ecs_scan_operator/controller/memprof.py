"""Memory profiling of the running operator (ECS_SCAN_TRACEMALLOC_FILE): where the bytes are.

With the setting, tracemalloc traces allocations from the start (10 frames each; it costs memory
and CPU, so only for a diagnosis), and each SIGUSR1 appends the top allocation sites to the file
and writes the raw snapshot beside it (`<file>.<n>.snap`, for `tracemalloc.Snapshot.load`):

    kill -USR1 <pid>; less $ECS_SCAN_TRACEMALLOC_FILE
"""

from __future__ import annotations

import gc
import itertools
import signal
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

FRAMES = 10
TOP = 40


def start(path: str) -> None:
    """Trace allocations from now on; dump on SIGUSR1 (the handler runs in the main thread)."""
    tracemalloc.start(FRAMES)
    counter = itertools.count(1)
    signal.signal(signal.SIGUSR1, lambda *_: dump(Path(path), next(counter)))


def dump(path: Path, n: int) -> None:
    """Append the top allocation sites (by line, then by 4-frame traceback) to `path`."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        )
    )
    snapshot.dump(f"{path}.{n}.snap")
    current, peak = tracemalloc.get_traced_memory()
    lines = [
        f"=== snapshot {n} at {datetime.now(UTC).isoformat()}: traced {current / 2**20:.1f} MiB "
        f"(peak {peak / 2**20:.1f} MiB)",
        "--- top lines",
    ]
    lines += [str(stat) for stat in snapshot.statistics("lineno")[:TOP]]
    lines.append("--- top tracebacks (4 frames)")
    for stat in snapshot.statistics("traceback")[: TOP // 2]:
        lines.append(f"{stat.size / 1024:.1f} KiB in {stat.count} blocks")
        lines += [f"    {frame}" for frame in stat.traceback.format(limit=4)]
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n\n")
