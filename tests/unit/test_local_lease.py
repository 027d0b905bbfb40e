"""The local sink's conditional writes (--output-dir), across processes, and the CLI's lease paths."""

from __future__ import annotations

import json
import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecs_scan_operator import cli
from ecs_scan_operator.adapters.local_report import LocalReportSink, content_etag
from ecs_scan_operator.core.lease import new_lease
from ecs_scan_operator.core.schedule import format_time
from ecs_scan_operator.errors import ConflictError, PermanentError
from ecs_scan_operator.ports import Ports
from tests.support.fakes import MemorySink
from tests.unit.test_pipeline import FLEET, findings
from tests.unit.test_run_deadline_and_causes import DeniedDigests

KEY = "scans/state/team-a/nightly.lease"


def test_conditional_create_replace_delete(tmp_path: Path) -> None:
    sink = LocalReportSink(tmp_path)
    etag = sink.put_if("a/k", b"1", "application/json", etag=None)
    assert etag == content_etag(b"1")
    with pytest.raises(ConflictError):
        sink.put_if("a/k", b"2", "application/json", etag=None)
    newer = sink.put_if("a/k", b"3", "application/json", etag=etag)
    with pytest.raises(ConflictError):
        sink.put_if("a/k", b"4", "application/json", etag=etag)
    with pytest.raises(ConflictError):
        sink.delete_if("a/k", etag=etag)
    sink.delete_if("a/k", etag=newer)
    assert sink.read("a/k") is None
    sink.delete_if("a/k", etag=newer)  # absent: fine
    with pytest.raises(ConflictError):
        sink.put_if("a/k", b"5", "application/json", etag=newer)
    assert not list(tmp_path.rglob(".tmp-*"))  # no temp file left behind
    (tmp_path / "dir").mkdir()
    with pytest.raises(PermanentError):
        sink.read("dir")


def _race(root: str, n: int, out: Any) -> None:
    sink = LocalReportSink(Path(root))
    won = 0
    for i in range(n):
        try:
            sink.put_if(f"k{i}", str(multiprocessing.current_process().pid).encode(), "x", etag=None)
            won += 1
        except ConflictError:
            pass
    out.put(won)


def test_two_processes_creating_the_same_objects_win_each_exactly_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path), 200, out)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert out.get() + out.get() == 200


def policy_file(tmp_path: Path) -> Path:
    doc = {
        "apiVersion": "ecsscan.io/v1alpha1",
        "kind": "ScanPolicy",
        "metadata": {"name": "nightly", "namespace": "team-a"},
        "spec": {
            "schedule": "@daily",
            "aws": {"region": "us-east-1"},
            "taskDefinitions": {"include": ["svc-*"]},
            "report": {"s3": {"bucket": "reports", "prefix": "scans"}},
        },
    }
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_cli_refuses_a_held_lease_and_shows_and_breaks_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    now = datetime.now(UTC).replace(microsecond=0)  # the CLI reads the real clock
    held = new_lease("team-a/nightly", "r-other", "host:9", now, now + timedelta(hours=1))
    LocalReportSink(out).put_if(KEY, held.to_json(), "application/json", etag=None)
    policy = str(policy_file(tmp_path))

    code = cli.main(["run", "-f", policy, "--output-dir", str(out), "--format", "json"])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert captured.err.strip() == (
        f"another run of team-a/nightly holds the lease since {format_time(now)} (run r-other)"
    )
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["nightly.lease", "nightly.lease.lock"]

    assert cli.main(["lease", "show", "-f", policy, "--output-dir", str(out)]) == 0
    shown = capsys.readouterr().out
    assert f"held by run r-other on host:9 since {format_time(now)}" in shown
    assert cli.main(["lease", "break", "-f", policy, "--output-dir", str(out)]) == 0
    assert "lease broken" in capsys.readouterr().out
    assert LocalReportSink(out).read(KEY) is None
    assert cli.main(["lease", "show", "-f", policy, "--output-dir", str(out)]) == 0
    assert "no run holds the lease" in capsys.readouterr().out


def test_cli_table_names_error_causes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.fakes import FakeImageSource

    sink = MemorySink()
    ports = Ports(images=FakeImageSource(FLEET), digests=DeniedDigests(), findings=findings(), reports=sink)
    monkeypatch.setattr("ecs_scan_operator.bootstrap.build_ports", lambda *a, **k: ports)
    monkeypatch.setenv("COLUMNS", "200")
    assert cli.main(["run", "-f", str(policy_file(tmp_path))]) == 1
    text = " ".join(capsys.readouterr().out.split())
    assert "error causes: ecr:DescribeImages AccessDeniedException x3" in text
    index = next(json.loads(v) for k, v in sink.objects.items() if k.endswith("index.json"))
    assert index["result"]["errorCauses"] == {"ecr:DescribeImages AccessDeniedException": 3}
