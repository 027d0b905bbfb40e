"""The commit protocol: whichever run-level write fails, index.json is absent or tells the truth.

Every run-level object is failed in turn, with every error class a sink raises. After each run:
- index.json absent: the run is Failed and points at no report;
- index.json present: its result equals the returned RunResult, the run log's last outcome and
  the CLI's JSON, and every object it lists (run-level objects, per-image reports) is stored;
- the CLI exits 0 exactly when the outcome is Succeeded.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecs_scan_operator import cli
from ecs_scan_operator.core.policy import PolicyRef
from ecs_scan_operator.core.result import Outcome, RunResult
from ecs_scan_operator.errors import AuthError, ConflictError, PermanentError, ScanError, TransientError
from ecs_scan_operator.pipeline import run_policy
from ecs_scan_operator.ports import Ports
from tests.support.fakes import FakeDigests, FakeImageSource, FixedClock, MemorySink
from tests.unit.test_pipeline import FLEET, findings

POLICY = PolicyRef(namespace="team-a", name="nightly")
SPEC: dict[str, Any] = {
    "schedule": "@daily",
    "aws": {"region": "us-east-1"},
    "taskDefinitions": {
        "include": ["svc-a", "svc-b", "svc-c"]
    },  # no failing image: Succeeded when all is well
    "report": {"s3": {"bucket": "reports", "prefix": "scans"}},
}
# Every object a run writes, named by a part of its key.
WRITES = [
    "/images/app/",  # the image's JSON and its page
    "/images/app/1.html",  # the page alone
    "/images/sidecar/2.json",  # the JSON alone
    "/images/sidecar/",
    "summary.csv",
    "state/team-a/nightly.json",
    "index.html",
    "run.log.jsonl",
    "index.json",
]
ERRORS = [
    TransientError("s3:PutObject: SlowDown"),
    AuthError("s3:PutObject: AccessDenied"),
    PermanentError("s3:PutObject: InvalidRequest"),
    ConflictError("s3:PutObject: PreconditionFailed"),
]


class FailingSink(MemorySink):
    """Fails every write whose key contains `fail_on` (plain and conditional writes alike)."""

    def __init__(self, fail_on: str, error: ScanError) -> None:
        super().__init__()
        self.fail_on, self.error = fail_on, error

    def put(self, key: str, body: bytes, content_type: str) -> None:
        if self.fail_on in key:
            raise self.error
        super().put(key, body, content_type)

    def put_if(self, key: str, body: bytes, content_type: str, *, etag: str | None) -> str:
        if self.fail_on in key:
            raise self.error
        return super().put_if(key, body, content_type, etag=etag)


def make_ports(sink: MemorySink) -> Ports:
    return Ports(
        images=FakeImageSource(FLEET),
        digests=FakeDigests(),
        findings=findings(),
        reports=sink,
        aws_calls=lambda: {"s3:PutObject": len(sink.order)},
    )


def check_folder(sink: MemorySink, result: RunResult) -> dict[str, Any] | None:
    """The protocol's promises about one run folder; returns index.json when present."""
    folders = {k.rsplit("/", 1)[0] for k in sink.objects if k.endswith(("summary.csv", "index.json"))}
    index_key = next((k for k in sink.objects if k.endswith("/index.json")), None)
    if index_key is None:
        assert result.outcome is Outcome.FAILED and result.report_uri == ""
        assert any("index.json" in e for e in result.errors)
        return None
    folder = index_key.rsplit("/", 1)[0]
    assert folders <= {folder}
    index = json.loads(sink.objects[index_key])
    assert index["result"] == result.to_dict()
    for name in index["objects"]:
        assert f"{folder}/{name}" in sink.objects, name
    for img in index["images"]:
        for link in (img["report"], img["page"]):
            if link:
                assert f"{folder}/{link}" in sink.objects
    if "index.html" in index["objects"]:
        # index.html links an image's JSON or page only when that object is stored.
        own = re.findall(r'href="(images/[^"]+)"', sink.objects[f"{folder}/index.html"].decode())
        assert own and all(f"{folder}/{link}" in sink.objects for link in own)
    assert sink.order[-1] == index_key or sink.order[-1].startswith("DELETE")  # last, bar the lease release
    if "run.log.jsonl" in index["objects"]:
        lines = [json.loads(line) for line in sink.objects[f"{folder}/run.log.jsonl"].splitlines()]
        finished = [line for line in lines if line["event"] == "run_finished"]
        assert finished and finished[-1]["result"] == index["result"]["result"]
    else:
        assert result.outcome is not Outcome.SUCCEEDED
    return dict(index)


def test_fault_free_run_commits_everything_and_succeeds() -> None:
    sink = MemorySink()
    result = run_policy(POLICY, _spec(), make_ports(sink), FixedClock(), run_id="r1")
    assert result.outcome is Outcome.SUCCEEDED, result.errors
    index = check_folder(sink, result)
    assert index is not None and index["objects"] == ["summary.csv", "index.html", "run.log.jsonl"]
    names = [k.rsplit("/", 1)[-1] for k in sink.order if "/r1/" in k or k.endswith("nightly.json")]
    assert names[-5:] == ["summary.csv", "nightly.json", "index.html", "run.log.jsonl", "index.json"]
    # awsCalls counts every write but index.json itself (and the lease release after it)
    assert index["result"]["awsCalls"] == {"s3:PutObject": len(sink.order) - 2}


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("fail_on", WRITES)
def test_any_failed_write_leaves_a_truthful_index_or_none(fail_on: str, error: ScanError) -> None:
    sink = FailingSink(fail_on, error)
    result = run_policy(POLICY, _spec(), make_ports(sink), FixedClock(), run_id="r1")
    assert result.outcome is not Outcome.SUCCEEDED
    index = check_folder(sink, result)
    if fail_on == "index.json":
        assert index is None and result.outcome is Outcome.FAILED
    else:
        assert index is not None
    if fail_on.startswith("state/") and isinstance(error, ConflictError):
        assert "state" in result.stage_failures  # a lost race is reported, never overwritten
    assert not any(k.endswith(".lease") for k in sink.objects)  # released whatever happened


@pytest.mark.parametrize("error", ERRORS[:2], ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("fail_on", WRITES)
def test_cli_exit_code_and_json_agree_with_index(
    fail_on: str,
    error: ScanError,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sink = FailingSink(fail_on, error)
    monkeypatch.setattr("ecs_scan_operator.bootstrap.build_ports", lambda *a, **k: make_ports(sink))
    policy = tmp_path / "p.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "ecsscan.io/v1alpha1",
                "kind": "ScanPolicy",
                "metadata": {"name": "nightly", "namespace": "team-a"},
                "spec": SPEC,
            }
        )
    )
    code = cli.main(["run", "-f", str(policy), "--format", "json"])
    printed = json.loads(capsys.readouterr().out)
    index_key = next((k for k in sink.objects if k.endswith("/index.json")), None)
    assert code == (0 if printed["result"] == "Succeeded" else 1)
    assert code == 1  # one object failed: never a clean exit
    if index_key is None:
        assert printed["result"] == "Failed" and printed["reportUri"] == ""
    else:
        assert json.loads(sink.objects[index_key])["result"] == printed


def test_lease_failures_never_change_the_committed_outcome() -> None:
    class ReleaseFails(MemorySink):
        def delete_if(self, key: str, *, etag: str) -> None:
            raise TransientError("s3:DeleteObject: SlowDown")

    sink = ReleaseFails()
    result = run_policy(POLICY, _spec(), make_ports(sink), FixedClock(), run_id="r1")
    index = check_folder(sink, result)
    assert result.outcome is Outcome.SUCCEEDED and index is not None  # it lapses on its own
    assert any(k.endswith(".lease") for k in sink.objects)


def test_a_run_that_cannot_take_the_lease_writes_nothing() -> None:
    sink = FailingSink(".lease", TransientError("s3:PutObject: SlowDown"))
    with pytest.raises(TransientError):
        run_policy(POLICY, _spec(), make_ports(sink), FixedClock(), run_id="r1")
    assert sink.objects == {}


def _spec() -> Any:
    from ecs_scan_operator.core.policy import parse_spec

    return parse_spec(SPEC)
