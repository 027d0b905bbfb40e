"""core/keys.py: the report's object keys, each path part made safe."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ecs_scan_operator.core.keys import image_key, run_folder, safe_part, safe_path, state_key


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("..", "_"),
        ("a/b", "a_b"),
        ("ok-1.2_x", "ok-1.2_x"),
        ("a\x00b\nc", "a_b_c"),
        ("", "_"),
        (".hidden", "hidden"),
        ("sha256:abc", "sha256_abc"),
    ],
)
def test_safe_part(text: str, expected: str) -> None:
    assert safe_part(text) == expected


def test_safe_part_bounded_and_distinct() -> None:
    a, b = safe_part("x" * 500 + "a"), safe_part("x" * 500 + "b")
    assert len(a) <= 120 and len(b) <= 120 and a != b


def test_keys_layout() -> None:
    folder = run_folder("reports/", datetime(2026, 11, 28, tzinfo=UTC), "team-a", "nightly", "r1")
    assert folder == "reports/2026-11-28/team-a/nightly/r1"
    assert image_key(folder, "payments/../api", "v1") == f"{folder}/images/payments/_/api/v1.json"
    assert safe_path("a//b/../c") == "a/b/_/c"
    assert state_key("reports", "team-a", "nightly") == "reports/state/team-a/nightly.json"
