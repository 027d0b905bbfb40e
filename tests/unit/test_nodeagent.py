"""tests/cluster/nodeagent.py's pure rules: $(VAR) expansion and mount-path rewriting."""

from __future__ import annotations

import pytest

from tests.cluster.nodeagent import expand, rewrite_paths

MAPPING = {
    "/dev/termination-log": "/pods/p/termination-log",
    "/etc/creds": "/pods/p/volumes/creds",
    "/etc/creds/sub": "/pods/p/volumes/other",
    "/dev/shm": "/pods/p/volumes/shm",
    "/data/": "/pods/p/volumes/data",
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/dev/termination-log", "/pods/p/termination-log"),
        ("--out=/dev/termination-log", "--out=/pods/p/termination-log"),
        ("/etc/creds/token", "/pods/p/volumes/creds/token"),
        ("/etc/creds", "/pods/p/volumes/creds"),
        ("/etc/creds/sub/x", "/pods/p/volumes/other/x"),  # the longest mount path wins
        ("a:/etc/creds:/dev/shm/x", "a:/pods/p/volumes/creds:/pods/p/volumes/shm/x"),
        ("'/etc/creds/token'", "'/pods/p/volumes/creds/token'"),
        ("/data/x", "/pods/p/volumes/data/x"),  # a mountPath with a trailing slash
        # not a mount path: a longer name, a path that merely contains one, a relative path
        ("/etc/credsx", "/etc/credsx"),
        ("/etc/creds.d/x", "/etc/creds.d/x"),
        ("/opt/etc/creds", "/opt/etc/creds"),
        ("etc/creds", "etc/creds"),
        ("/dev/termination-log2", "/dev/termination-log2"),
    ],
)
def test_mount_paths_are_rewritten_as_whole_path_components(value: str, expected: str) -> None:
    assert rewrite_paths(value, MAPPING) == expected


def test_a_replacement_is_never_rewritten_again() -> None:
    # the real location lies under another mount path: one pass only
    mapping = {"/dev/termination-log": "/dev/shm/p/termination-log", "/dev/shm": "/pods/p/shm"}
    assert rewrite_paths("/dev/termination-log", mapping) == "/dev/shm/p/termination-log"


def test_replacements_are_literal() -> None:
    assert rewrite_paths("/x/a", {"/x": r"C:\g<0>\1"}) == r"C:\g<0>\1/a"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$(A)", "1"),
        ("x-$(A)-$(B)", "x-1-$(B)"),  # unknown names stay as written
        ("$$(A)", "$(A)"),  # $$ escapes
        ("$$$(A)", "$1"),
        ("$A $(A", "$A $(A"),
        ("", ""),
    ],
)
def test_var_expansion_follows_kubernetes(value: str, expected: str) -> None:
    assert expand(value, {"A": "1"}) == expected
