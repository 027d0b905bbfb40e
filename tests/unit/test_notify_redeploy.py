"""The redeployNeeded notification (core/notify.py, issue #12): once per image and digest across
runs, only for destinations that listen and see a finding at their minSeverity, in every format."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from ecs_scan_operator.core.images import parse_image
from ecs_scan_operator.core.model import Finding, ImageResult, RuntimeContext, Severity
from ecs_scan_operator.core.notify import Outgoing
from tests.support.notify_receivers import slack_problem, teams_problem
from tests.unit.test_notify import ECR, crit, dest, image, run, spec

V1 = "sha256:" + "1" * 64
V2 = "sha256:" + "2" * 64


def redeploy(img: ImageResult, digest: str = V1, *, needed: bool = True) -> ImageResult:
    """`img` as the running view reports it: `digest` runs while the tag points at V2."""
    out = replace(img, ref=parse_image(f"{ECR}/{img.ref.repository}:1@{digest}"), digest=digest)
    out.runtime = RuntimeContext(
        clusters=("prod",),
        services=("api", "<!channel>*x*"),
        running_tasks=4,
        running_digests=(digest,),
        tag_digest=V2,
    )
    out.redeploy_needed = needed
    return out


def _events(images: list[ImageResult], memory: dict[str, dict[str, str]], **d: Any) -> Outgoing:
    s = spec(dest(events=["new", "redeployNeeded"], **d))
    (out,) = run(s, images, memory)
    return out


def test_fires_once_per_image_and_digest_across_runs() -> None:
    vulnerable = image("app/api", "web", crit("CVE-1"))
    memory: dict[str, dict[str, str]] = {"chat": {}}
    (baseline,) = run(
        spec(dest(events=["new", "redeployNeeded"])), [redeploy(vulnerable, needed=False)], {}, True
    )
    memory["chat"] = baseline.memory

    first = _events([redeploy(vulnerable)], memory)
    assert first.events == {"redeployNeeded": 1}
    assert first.payload is not None
    memory["chat"] = first.memory

    again = _events([redeploy(vulnerable)], memory)
    assert again.events == {} and again.payload is None  # told once

    # Another digest of the same image still running after a second move: told again, for it.
    other = _events([redeploy(vulnerable, V2.replace("2", "3"))], memory)
    assert other.events["redeployNeeded"] == 1  # (its findings are "new" too: a new image row)


def test_a_destination_that_does_not_listen_or_sees_nothing_at_its_level_hears_nothing() -> None:
    high = image("app/api", "web", Finding("CVE-9", Severity.HIGH, "zlib"))
    (base,) = run(spec(dest(events=["new"])), [redeploy(high, needed=False)], {}, True)
    memory = {"chat": base.memory}
    assert _events([redeploy(high)], memory, minSeverity="CRITICAL").events == {}
    (out,) = run(spec(dest(events=["new"])), [redeploy(high)], memory)
    assert out.events == {}
    # ... and it is remembered, so listening later does not flood with the old ones.
    assert _events([redeploy(high)], {"chat": out.memory}).events == {}


def test_first_run_takes_what_exists_as_known() -> None:
    (out,) = run(
        spec(dest(events=["redeployNeeded"])), [redeploy(image("a", "web", crit("CVE-1")))], {}, True
    )
    assert out.events == {} and out.payload is None
    assert _events([redeploy(image("a", "web", crit("CVE-1")))], {"chat": out.memory}).events == {}


@pytest.mark.parametrize("kind", ["slack", "teams", "webhook"])
def test_every_format_names_the_image_and_stays_inert(kind: str) -> None:
    img = redeploy(image("app/api", "web", crit("CVE-1")))
    s = spec(dest(type_=kind, events=["redeployNeeded"]))
    (out,) = run(s, [img], {"chat": {}})
    assert out.payload is not None
    text = json.dumps(out.payload, ensure_ascii=False)
    assert V1 in text and V2 in text
    if kind == "slack":
        assert slack_problem(out.payload) == ""
        assert "<!channel>" not in text  # escaped
        assert "redeploy needed" in out.payload["text"]
    elif kind == "teams":
        assert teams_problem(json.dumps(out.payload).encode()) == (202, "")
    else:
        (line,) = out.payload["redeployNeeded"]
        assert line["image"] == f"app/api:1@{V1}" and line["tagDigest"] == V2 and line["runningTasks"] == 4
        assert out.payload["events"] == {"redeployNeeded": 1}
