"""bench/config_inventory.py runs (quick fleets, in a subprocess: it patches moto's ECS in its process).

It fails by itself when the describe path and source: awsConfig find different revisions, or when
the Config emulation refuses a request; here it must also write its section with every row.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_quick_inventory_bench_finds_the_same_revisions_both_ways(tmp_path: Path) -> None:
    out = tmp_path / "inventory.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench.config_inventory", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith(("| S:", "| XL:"))]
    assert len(rows) == 3
    # Every family, one account or many: one Config page per 100 ACTIVE revisions against one
    # DescribeTaskDefinition per family.
    assert rows[1].endswith("| **PASS** |")
    assert rows[2].endswith("| **PASS** |")
    assert "| 240 (3 account(s)) |" in rows[2]
