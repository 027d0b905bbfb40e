"""tests/cluster/build.py: when is a cached control-plane binary current?

The stamp (hash of go.mod, go.sum and flags) changes whenever go.mod does, for example when a
``tool`` line is added for another binary.  Then the module versions embedded in the binary
(``go version -m``) are compared with what go.mod selects: equal -> kept, any difference -> rebuilt.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.cluster import build

GOMOD = """\
module example/k8s // a comment

go 1.26.0

tool (
\tk8s.io/kubernetes/cmd/kube-apiserver
\tk8s.io/kubernetes/cmd/kube-scheduler
)

require k8s.io/kubernetes v1.36.3

require (
\tgithub.com/a/b v1.2.3 // indirect
\tk8s.io/api v0.0.0 // indirect
)

replace (
\tk8s.io/api => k8s.io/api v0.36.3
\tgithub.com/x/y => github.com/fork/y v0.9.0
\tgithub.com/local/z => ./z
)
"""

VERSION_M = """\
{path}: go1.26.8
\tpath\tk8s.io/kubernetes/cmd/kube-apiserver
\tmod\tk8s.io/kubernetes\tv1.36.3\th1:xx=
\tdep\tgithub.com/a/b\t{ab}\th1:yy=
\tdep\tk8s.io/api\tv0.0.0
\t=>\tk8s.io/api\t{api}\th1:zz=
\tbuild\t-trimpath=true
"""


def test_selected_versions_follow_requirements_then_replacements() -> None:
    selected = build._selected_versions_text(GOMOD)
    assert selected["k8s.io/kubernetes"] == "v1.36.3"
    assert selected["github.com/a/b"] == "v1.2.3"
    assert selected["k8s.io/api"] == "v0.36.3"  # the replacement wins over the v0.0.0 requirement
    assert selected["github.com/x/y"] == "github.com/fork/y@v0.9.0"
    assert "github.com/local/z" not in selected  # a directory has no version to compare


def test_embedded_versions_read_replacements() -> None:
    parsed = build._embedded_versions(VERSION_M.format(path="bin", ab="v1.2.3", api="v0.36.3"))
    assert parsed["path"] == {"k8s.io/kubernetes/cmd/kube-apiserver": ""}
    assert parsed["deps"] == {"github.com/a/b": "v1.2.3", "k8s.io/api": "v0.36.3"}


@pytest.fixture
def fake_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> build.GoBinary:
    gomod_dir = tmp_path / "mod"
    gomod_dir.mkdir()
    (gomod_dir / "go.mod").write_text(GOMOD)
    (gomod_dir / "go.sum").write_text("")
    monkeypatch.setenv("ECS_SCAN_CACHE_DIR", str(tmp_path / "cache"))
    spec = build.GoBinary("kube-apiserver", gomod_dir, build.APISERVER_PKG, "v1.36.3", "NO_SUCH_OVERRIDE")
    spec.path.parent.mkdir(parents=True)
    spec.path.write_bytes(b"\x7fELF not really")
    spec.stamp_path.write_text("a stamp of another go.mod\n")
    return spec


def _fake_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str) -> None:
    out = tmp_path / "version-m.txt"
    out.write_text(output)
    go = tmp_path / "go"
    go.write_text(f'#!/bin/sh\n[ "$1 $2" = "version -m" ] && exec cat {out}\nexit 2\n')
    go.chmod(go.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("GO", str(go))


def test_a_binary_of_the_selected_versions_is_current_despite_another_stamp(
    fake_spec: build.GoBinary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_go(tmp_path, monkeypatch, VERSION_M.format(path=fake_spec.path, ab="v1.2.3", api="v0.36.3"))
    assert fake_spec.fresh()


@pytest.mark.parametrize(
    ("ab", "api", "package"),
    [
        ("v1.2.2", "v0.36.3", build.APISERVER_PKG),  # a required version differs
        ("v1.2.3", "v0.36.2", build.APISERVER_PKG),  # a replacement's version differs
        ("v1.2.3", "v0.36.3", build.SCHEDULER_PKG),  # another command's binary
    ],
)
def test_any_other_binary_is_rebuilt(
    fake_spec: build.GoBinary,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ab: str,
    api: str,
    package: str,
) -> None:
    text = VERSION_M.format(path=fake_spec.path, ab=ab, api=api).replace(build.APISERVER_PKG, package)
    _fake_go(tmp_path, monkeypatch, text)
    assert not fake_spec.fresh()


def test_without_go_only_the_stamp_counts(
    fake_spec: build.GoBinary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GO", str(tmp_path / "no-such-go"))
    assert not fake_spec.fresh()
    fake_spec.stamp_path.write_text(fake_spec.stamp() + "\n")
    assert fake_spec.fresh()


def test_a_binary_that_is_not_there_is_never_current(fake_spec: build.GoBinary) -> None:
    fake_spec.stamp_path.write_text(fake_spec.stamp() + "\n")
    fake_spec.path.unlink()
    assert not fake_spec.fresh()


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5"])
def test_build_procs_must_be_a_positive_integer(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("ECS_SCAN_GO_BUILD_PROCS", raw)
    with pytest.raises(build.BuildError, match="ECS_SCAN_GO_BUILD_PROCS"):
        build._build_procs()


def test_build_procs_limit_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECS_SCAN_GO_BUILD_PROCS", "1")
    assert build._go_env("go")["GOMAXPROCS"] == "1"
    monkeypatch.delenv("ECS_SCAN_GO_BUILD_PROCS")
    assert build._build_procs() == 0
