"""Build and cache the control-plane binaries for the local test cluster.

Both are built from Go modules through the Go module proxy, with our own
build-only go.mod files; nothing of their source is committed:

* ``kube-apiserver``, ``kube-controller-manager`` and ``kube-scheduler`` of the
  pinned Kubernetes release: ``tests/cluster/k8s/go.mod`` requires
  ``k8s.io/kubernetes``, maps every ``k8s.io/*`` staging module to its
  published ``v0.X.Y`` and names the three commands as ``tool`` lines, so one
  module graph (one set of versions) serves all three; the controller-manager
  and the scheduler are only needed by the "workloads" mode of the local
  cluster (``LocalCluster(workloads=True)``) and are built on demand;
* ``etcd`` at the version that release supports (kubeadm's default etcd for it):
  ``tests/cluster/etcd/go.mod`` requires ``go.etcd.io/etcd/server/v3``.
  (Debian's etcd-server 3.4.23 is *not* usable: kube-apiserver >= 1.31 needs
  etcd's RequestWatchProgress, i.e. etcd >= 3.5.13 / 3.4.31, or every watch
  with ``allowWatchBookmarks=true`` - kopf's, client-go's - fails with a 500;
  kubeadm 1.36's minimum external etcd is 3.5.24.)

The binaries go to ``<cache>/<k8s version>/`` (``<cache>`` defaults to
``~/.cache/ecs-scan-operator``), next to the Go module and build caches
(``<cache>/go/``), so later runs start in seconds.  A stamp (hash of go.mod,
go.sum and flags) next to each binary marks it current.  When the stamp differs
(go.mod changed), the module versions embedded in the binary (``go version -m``)
are compared with the ones go.mod selects: a binary built from the same versions
is kept (adding a ``tool`` line or an unrelated requirement rebuilds nothing),
anything else is rebuilt.

Environment overrides:

``ECS_SCAN_CACHE_DIR``   cache root (default ``$XDG_CACHE_HOME/ecs-scan-operator``
                         or ``~/.cache/ecs-scan-operator``)
``KUBE_APISERVER_BIN``   use this kube-apiserver instead of building one
``KUBE_CONTROLLER_MANAGER_BIN``, ``KUBE_SCHEDULER_BIN``   the same for those two
``ETCD_BIN``             use this etcd (>= 3.5.13) instead of building one
``GO``                   the go command (default: ``go`` on PATH, then /usr/local/go/bin/go)
``ECS_SCAN_GO_BUILD_PROCS``  N: ``go build -p N`` and ``GOMAXPROCS=N`` (default: Go's own,
                         all cores), to leave cores to others on a shared machine
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOMOD_DIR = HERE / "k8s"
ETCD_GOMOD_DIR = HERE / "etcd"
APISERVER_PKG = "k8s.io/kubernetes/cmd/kube-apiserver"
CONTROLLER_MANAGER_PKG = "k8s.io/kubernetes/cmd/kube-controller-manager"
SCHEDULER_PKG = "k8s.io/kubernetes/cmd/kube-scheduler"
ETCD_PKG = "go.etcd.io/etcd/server/v3"

# kube-apiserver needs etcd's RequestWatchProgress: etcd >= 3.5.13 (3.4.31 on 3.4)
MIN_ETCD = (3, 5, 13)

Progress = Callable[[str], None]


def default_progress(msg: str) -> None:
    print(f"[cluster-bins] {msg}", file=sys.stderr, flush=True)


class BuildError(RuntimeError):
    pass


# --------------------------------------------------------------------------- versions and paths


def cache_root() -> Path:
    env = os.environ.get("ECS_SCAN_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ecs-scan-operator"


def _required_version(gomod_dir: Path, module: str) -> str:
    text = (gomod_dir / "go.mod").read_text()
    m = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\d+\.\d+\.\d+)(?:\s|$)", text, re.M)
    if not m:
        raise BuildError(f"cannot find the {module} requirement in {gomod_dir / 'go.mod'}")
    return m.group(1)


def kubernetes_version() -> str:
    """The Kubernetes release pinned in tests/cluster/k8s/go.mod (e.g. ``v1.36.3``)."""
    return _required_version(GOMOD_DIR, "k8s.io/kubernetes")


def etcd_pinned_version() -> str:
    """The etcd release pinned in tests/cluster/etcd/go.mod (e.g. ``v3.6.8``)."""
    return _required_version(ETCD_GOMOD_DIR, ETCD_PKG)


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def _fmt_secs(s: float) -> str:
    m, s = divmod(int(s), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


@dataclasses.dataclass(frozen=True)
class GoBinary:
    """One binary built from a Go package of a pinned module."""

    name: str
    gomod_dir: Path
    package: str
    version: str  # vX.Y.Z
    env_override: str

    @property
    def path(self) -> Path:
        return cache_root() / kubernetes_version() / self.name

    @property
    def stamp_path(self) -> Path:
        return self.path.with_name(self.name + ".stamp")

    def ldflags(self) -> list[str]:
        flags = ["-s", "-w"]
        if self.gomod_dir == GOMOD_DIR:  # Kubernetes' commands: the release into their --version
            major, minor, _ = _version_tuple(self.version)
            for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
                flags += [
                    f"-X {pkg}.gitVersion={self.version}",
                    f"-X {pkg}.gitMajor={major}",
                    f"-X {pkg}.gitMinor={minor}",
                    f"-X {pkg}.gitTreeState=clean",
                ]
        return flags

    def stamp(self) -> str:
        h = hashlib.sha256()
        for name in ("go.mod", "go.sum"):
            h.update((self.gomod_dir / name).read_bytes())
        h.update(" ".join([self.package, *self.ldflags()]).encode())
        return h.hexdigest()

    def fresh(self) -> bool:
        p, sp = self.path, self.stamp_path
        if not p.is_file():
            return False
        if sp.is_file() and sp.read_text().strip() == self.stamp():
            return True
        return self.built_from_selected_versions()

    def built_from_selected_versions(self) -> bool:
        """True when the binary embeds exactly the module versions go.mod selects for it.

        Only consulted when the stamp differs: go.mod gained a ``tool`` line or a
        requirement that this binary does not use.  Needs the go command (False without).
        """
        try:
            go = find_go()
            out = subprocess.run(
                [go, "version", "-m", str(self.path)], capture_output=True, text=True, check=True, timeout=30
            ).stdout
            selected = _selected_versions(self.gomod_dir / "go.mod")
        except (BuildError, OSError, subprocess.SubprocessError):
            return False
        embedded = _embedded_versions(out)
        if not embedded or embedded.get("path") != {self.package: ""}:
            return False
        deps = embedded["deps"]
        return bool(deps) and all(selected.get(mod) == ver for mod, ver in deps.items())


def _selected_versions(gomod: Path) -> dict[str, str]:
    """Module path -> (path@)version that a go.mod file selects."""
    return _selected_versions_text(gomod.read_text())


def _selected_versions_text(gomod_text: str) -> dict[str, str]:
    """Module path -> (path@)version that go.mod text selects (requirements, then replacements)."""
    text = re.sub(r"//[^\n]*", "", gomod_text)
    selected: dict[str, str] = {}
    for block_kind, body in re.findall(r"^(require|replace)\s*\(([^)]*)\)", text, re.M):
        for line in body.splitlines():
            _select(block_kind, line.split(), selected)
    for block_kind, rest in re.findall(r"^(require|replace)\s+([^(\s][^\n]*)$", text, re.M):
        _select(block_kind, rest.split(), selected)
    return selected


def _select(kind: str, words: list[str], selected: dict[str, str]) -> None:
    if kind == "require" and len(words) == 2:
        selected.setdefault(words[0], words[1])
    elif kind == "replace" and "=>" in words:
        i = words.index("=>")
        target = words[i + 1 :]
        if len(target) == 2:  # a module replacement (a local directory has no version)
            selected[words[0]] = f"{target[0]}@{target[1]}" if target[0] != words[0] else target[1]


def _embedded_versions(version_m: str) -> dict[str, dict[str, str]]:
    """Parse `go version -m` output: {"path": {pkg: ""}, "deps": {module: (path@)version}}."""
    path: dict[str, str] = {}
    deps: dict[str, str] = {}
    last = ""
    for line in version_m.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "path":
            path[words[1]] = ""
        elif len(words) >= 3 and words[0] in ("mod", "dep"):
            last = words[1]
            if words[0] == "dep":
                deps[last] = words[2]
        elif len(words) >= 3 and words[0] == "=>" and last in deps:
            deps[last] = f"{words[1]}@{words[2]}" if words[1] != last else words[2]
    return {"path": path, "deps": deps}


def kube_apiserver_spec() -> GoBinary:
    return GoBinary("kube-apiserver", GOMOD_DIR, APISERVER_PKG, kubernetes_version(), "KUBE_APISERVER_BIN")


def kube_controller_manager_spec() -> GoBinary:
    return GoBinary(
        "kube-controller-manager",
        GOMOD_DIR,
        CONTROLLER_MANAGER_PKG,
        kubernetes_version(),
        "KUBE_CONTROLLER_MANAGER_BIN",
    )


def kube_scheduler_spec() -> GoBinary:
    return GoBinary("kube-scheduler", GOMOD_DIR, SCHEDULER_PKG, kubernetes_version(), "KUBE_SCHEDULER_BIN")


def specs(workloads: bool = False) -> list[GoBinary]:
    """The binaries of the control plane; with ``workloads`` also controller-manager and scheduler."""
    base = [etcd_spec(), kube_apiserver_spec()]
    return [*base, kube_controller_manager_spec(), kube_scheduler_spec()] if workloads else base


def etcd_spec() -> GoBinary:
    return GoBinary("etcd", ETCD_GOMOD_DIR, ETCD_PKG, etcd_pinned_version(), "ETCD_BIN")


def apiserver_path() -> Path:
    return kube_apiserver_spec().path


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _file_lock(path: Path, progress: Progress) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"another build holds {path}; waiting for it ...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def find_go() -> str:
    env = os.environ.get("GO")
    if env:
        return env
    found = shutil.which("go")
    if found:
        return found
    for cand in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go"):
        if os.access(cand, os.X_OK):
            return cand
    raise BuildError(
        "the Go toolchain is needed to build kube-apiserver and etcd: no `go` on PATH (set GO=...)"
    )


def _go_env(go: str) -> dict[str, str]:
    root = cache_root()
    env = dict(os.environ)
    env.update(
        GOMODCACHE=str(root / "go" / "mod"),
        GOCACHE=str(root / "go" / "build"),
        GOPATH=str(root / "go" / "path"),
        CGO_ENABLED="0",
        GOFLAGS="-mod=readonly -buildvcs=false",
        GOWORK="off",
        # never try to download another toolchain: the local go must be new enough
        GOTOOLCHAIN="local",
    )
    procs = _build_procs()
    if procs:
        env["GOMAXPROCS"] = str(procs)
    return env


def _build_procs() -> int:
    """ECS_SCAN_GO_BUILD_PROCS as a positive int, or 0 (Go's default)."""
    raw = os.environ.get("ECS_SCAN_GO_BUILD_PROCS", "").strip()
    if not raw:
        return 0
    if not raw.isdigit() or int(raw) < 1:
        raise BuildError(f"ECS_SCAN_GO_BUILD_PROCS must be a positive integer, got {raw!r}")
    return int(raw)


def _check_go_version(go: str, env: dict[str, str], gomod_dir: Path) -> str:
    try:
        out = subprocess.run(
            [go, "env", "GOVERSION"], env=env, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"cannot run {go}: {exc}") from exc
    have = out.strip()
    m = re.search(r"^go\s+(\d+\.\d+(?:\.\d+)?)\s*$", (gomod_dir / "go.mod").read_text(), re.M)
    need = m.group(1) if m else "0"
    if _version_tuple(have.removeprefix("go")) < _version_tuple(need):
        raise BuildError(f"{go} is {have}, but {gomod_dir / 'go.mod'} needs go >= {need}")
    return have


def _stream(
    cmd: list[str], cwd: Path, env: dict[str, str], on_line: Callable[[str], None]
) -> tuple[int, list[str]]:
    """Run cmd; feed each stderr line to on_line as it comes; return (rc, stdout lines)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[str] = []

    def _read_out() -> None:
        assert proc.stdout is not None
        out.extend(proc.stdout.read().splitlines())

    t = threading.Thread(target=_read_out, daemon=True)
    t.start()
    assert proc.stderr is not None and proc.stdout is not None
    try:
        for line in proc.stderr:
            on_line(line.rstrip("\n"))
    finally:
        if proc.poll() is None and sys.exc_info()[0] is not None:
            proc.kill()
        rc = proc.wait()
        t.join()
        proc.stdout.close()
        proc.stderr.close()
    return rc, out


# --------------------------------------------------------------------------- building


def ensure_binary(spec: GoBinary, progress: Progress = default_progress, force: bool = False) -> Path:
    """Return the path of the cached binary, building it first if needed."""
    override = os.environ.get(spec.env_override)
    if override:
        if not os.access(override, os.X_OK):
            raise BuildError(f"{spec.env_override}={override} is not an executable file")
        return Path(override)
    if not force and spec.fresh():
        return spec.path
    with _file_lock(spec.path.parent / f".{spec.name}.lock", progress):
        if not force and spec.fresh():  # built by a concurrent process meanwhile
            return spec.path
        _build(spec, progress)
        spec.stamp_path.write_text(spec.stamp() + "\n")
    return spec.path


def _build(spec: GoBinary, progress: Progress) -> None:
    go = find_go()
    env = _go_env(go)
    goversion = _check_go_version(go, env, spec.gomod_dir)
    t0 = time.monotonic()
    tag = f"[{spec.name}]"
    progress(f"{tag} building {spec.name} {spec.version} from {spec.package} with {goversion}")
    progress(f"{tag} go.mod: {spec.gomod_dir / 'go.mod'}; Go caches under {cache_root() / 'go'}")

    # 1. resolve the package graph; downloads the needed modules on a cold machine
    progress(f"{tag} step 1/2: resolving packages, downloading modules (go list -deps)")
    downloads = 0
    last = time.monotonic()
    errors: deque[str] = deque(maxlen=40)

    def on_list_line(line: str) -> None:
        nonlocal downloads, last
        if line.startswith("go: downloading "):
            downloads += 1
            now = time.monotonic()
            if downloads == 1 or now - last > 10:
                last = now
                progress(
                    f"{tag}   downloading modules: {downloads} so far ({line[len('go: downloading ') :]})"
                )
        else:
            errors.append(line)

    cmd = [go, "list", "-trimpath", "-deps", "-f", "{{.ImportPath}} {{.Stale}}", spec.package]
    rc, lines = _stream(cmd, spec.gomod_dir, env, on_list_line)
    if rc != 0:
        raise BuildError(f"`go list -deps {spec.package}` failed:\n" + "\n".join(errors))
    pkgs = [ln.split()[0] for ln in lines if ln.strip()]
    total = sum(1 for ln in lines if ln.endswith(" true"))  # not in the Go build cache yet
    progress(
        f"{tag}   {len(pkgs)} packages, {total} to compile, {downloads} modules downloaded, "
        f"{_fmt_secs(time.monotonic() - t0)}"
    )

    # 2. compile; -v prints each package as it is compiled (cached ones are not printed)
    progress(f"{tag} step 2/2: compiling (go build -v); [compiled/to compile] packages")
    known = set(pkgs)
    done = 0
    last = time.monotonic()
    last_pct = 0
    errors.clear()

    def on_build_line(line: str) -> None:
        nonlocal done, last, last_pct
        if line in known:
            done += 1
            now = time.monotonic()
            pct = done * 100 // max(total, 1)
            if pct // 5 != last_pct // 5 or now - last > 30:
                last, last_pct = now, pct
                progress(f"{tag}   [{done}/{total}] {pct:3d}%  {_fmt_secs(now - t0)} elapsed  ({line})")
        else:
            errors.append(line)

    target = spec.path
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp.{os.getpid()}")
    ldflags = " ".join(spec.ldflags())
    procs = _build_procs()
    parallel = ["-p", str(procs)] if procs else []
    cmd = [go, "build", "-v", *parallel, "-trimpath", "-ldflags", ldflags, "-o", str(tmp), spec.package]
    try:
        t1 = time.monotonic()
        rc, _ = _stream(cmd, spec.gomod_dir, env, on_build_line)
        if rc != 0:
            raise BuildError(f"`go build {spec.package}` failed (rc={rc}):\n" + "\n".join(errors))
        progress(f"{tag}   compiled {done} packages and linked in {_fmt_secs(time.monotonic() - t1)}")
        out = subprocess.run([str(tmp), "--version"], capture_output=True, text=True, check=False)
        if out.returncode != 0 or spec.version.lstrip("v") not in out.stdout:
            raise BuildError(f"the built {spec.name} does not run as expected: {out.stdout} {out.stderr}")
        tmp.replace(target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    progress(f"{tag} {spec.name} {spec.version} ready at {target} ({_fmt_secs(time.monotonic() - t0)})")


def etcd_version(path: str | os.PathLike[str]) -> tuple[int, ...]:
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"etcd Version:\s*(\S+)", out)
    if not m:
        raise BuildError(f"cannot read the version of {path}: {out!r}")
    return _version_tuple(m.group(1))


def ensure_kube_apiserver(progress: Progress = default_progress, force: bool = False) -> Path:
    return ensure_binary(kube_apiserver_spec(), progress, force)


def ensure_etcd(progress: Progress = default_progress, force: bool = False) -> Path:
    path = ensure_binary(etcd_spec(), progress, force)
    ver = etcd_version(path)
    if ver < MIN_ETCD:
        raise BuildError(
            f"{path} is etcd {'.'.join(map(str, ver))}; kube-apiserver {kubernetes_version()} needs etcd >= "
            f"{'.'.join(map(str, MIN_ETCD))} (RequestWatchProgress; watches with bookmarks fail otherwise)"
        )
    return path


def ensure_all(
    progress: Progress = default_progress, force: bool = False, *, workloads: bool = False
) -> dict[str, Path]:
    """Build (or reuse) etcd and kube-apiserver (and, with ``workloads``, kube-controller-manager
    and kube-scheduler); return their paths by name."""
    t0 = time.monotonic()
    ready = binaries_ready(workloads=workloads)
    if not ready:
        progress(
            f"building the local control plane (Kubernetes {kubernetes_version()}, "
            f"etcd {etcd_pinned_version()}) "
            "from the Go module proxy; a cold build takes ~5-10 min on 2 cores"
            + (" (+ a few min for controller-manager and scheduler)" if workloads else "")
            + ", later runs reuse the cache"
        )
    paths = {"etcd": ensure_etcd(progress, force)}
    for spec in specs(workloads)[1:]:
        paths[spec.name] = ensure_binary(spec, progress, force)
    if not ready:
        progress(f"control-plane binaries ready in {_fmt_secs(time.monotonic() - t0)}")
    return paths


def binaries_ready(*, workloads: bool = False) -> bool:
    """True when no build is needed (cheap check; with ``workloads`` also the two workload binaries)."""
    try:
        return all(os.environ.get(s.env_override) or s.fresh() for s in specs(workloads))
    except (OSError, BuildError):
        return False


if __name__ == "__main__":  # pragma: no cover - convenience
    print(json.dumps({k: str(v) for k, v in ensure_all(workloads=True).items()}))
