"""The local-folder report sink (`--output-dir`): every way a write or read can fail is a ScanError
naming the path, never an OSError escaping into a traceback; a failed write leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecs_scan_operator.adapters.local_report import LocalReportSink
from ecs_scan_operator.errors import PermanentError, ScanError


def test_write_and_read_back(tmp_path: Path) -> None:
    sink = LocalReportSink(tmp_path)
    sink.put("runs/r1/index.json", b"{}", "application/json")
    assert sink.get("runs/r1/index.json") == b"{}"
    assert sink.get("runs/r1/absent.json") is None


@pytest.mark.parametrize(
    ("prepare", "key"),
    [
        (lambda root: (root / "runs").write_text("a file"), "runs/r1/index.json"),  # a parent is a file
        (lambda root: (root / "runs" / "r1" / "index.json").mkdir(parents=True), "runs/r1/index.json"),
        (lambda root: None, "runs/" + "n" * 300 + "/index.json"),  # a name over NAME_MAX
        (lambda root: None, "runs/r1/" + "n" * 300 + ".json"),
    ],
    ids=["parent-is-a-file", "target-is-a-directory", "long-folder", "long-name"],
)
def test_a_failed_write_is_a_scan_error_and_leaves_nothing(tmp_path: Path, prepare: object, key: str) -> None:
    prepare(tmp_path)  # type: ignore[operator]
    before = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    with pytest.raises(PermanentError) as err:
        LocalReportSink(tmp_path).put(key, b"{}", "application/json")
    assert "cannot write" in str(err.value) and str(tmp_path) in str(err.value)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == before  # no temp file left


def test_a_root_under_proc_fails_as_a_scan_error() -> None:
    with pytest.raises(ScanError, match="cannot write"):
        LocalReportSink(Path("/proc/self/no-such-dir")).put("index.json", b"{}", "application/json")


def test_a_failed_read_is_a_scan_error() -> None:
    # /proc/self/mem is a regular file whose read fails (EIO), even for root.
    with pytest.raises(PermanentError, match="cannot read"):
        LocalReportSink(Path("/proc/self")).get("mem")
