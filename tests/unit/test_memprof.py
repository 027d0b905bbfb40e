"""ECS_SCAN_TRACEMALLOC_FILE: the top allocation sites and a loadable snapshot per dump."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from ecs_scan_operator.controller import memprof


def test_each_dump_appends_the_top_sites_and_writes_a_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "trace.txt"
    tracemalloc.start(memprof.FRAMES)
    try:
        kept = [bytearray(4096) for _ in range(256)]  # 1 MiB from this file
        memprof.dump(path, 1)
        memprof.dump(path, 2)
    finally:
        tracemalloc.stop()
    text = path.read_text()
    assert sum(line.startswith("=== snapshot ") for line in text.splitlines()) == 2
    assert "--- top lines" in text and "--- top tracebacks" in text
    assert "test_memprof.py" in text
    snapshot = tracemalloc.Snapshot.load(f"{path}.1.snap")
    ours = sum(s.size for s in snapshot.statistics("filename") if s.traceback[0].filename == __file__)
    assert ours >= len(kept) * 4096
