"""Build and cache the control-plane binaries for the local test cluster.

* ``kube-apiserver`` is built from the ``k8s.io/kubernetes`` Go module (Go module
  proxy) with the pinned go.mod in ``tests/cluster/k8s/``; the binary, the Go
  module cache and the Go build cache live under the cache root (default
  ``~/.cache/ecs-scan-operator/``), never in the repository.
* ``etcd`` is Debian's ``etcd-server`` package; it is installed with apt-get
  when missing and we run as root.

Environment overrides:

``ECS_SCAN_CACHE_DIR``   cache root (default ``$XDG_CACHE_HOME/ecs-scan-operator``
                         or ``~/.cache/ecs-scan-operator``)
``KUBE_APISERVER_BIN``   use this kube-apiserver instead of building one
``ETCD_BIN``             use this etcd instead of the system one
``GO``                   the go command (default: ``go`` on PATH, then /usr/local/go/bin/go)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOMOD_DIR = HERE / "k8s"
APISERVER_PKG = "k8s.io/kubernetes/cmd/kube-apiserver"

# etcd versions the pinned kube-apiserver was verified against (see README.md).
MIN_ETCD = (3, 4, 23)

Progress = Callable[[str], None]


def default_progress(msg: str) -> None:
    print(f"[cluster-bins] {msg}", file=sys.stderr, flush=True)


class BuildError(RuntimeError):
    pass


# --------------------------------------------------------------------------- paths


def cache_root() -> Path:
    env = os.environ.get("ECS_SCAN_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ecs-scan-operator"


def kubernetes_version() -> str:
    """The Kubernetes release pinned in tests/cluster/k8s/go.mod (e.g. ``v1.36.3``)."""
    text = (GOMOD_DIR / "go.mod").read_text()
    m = re.search(r"^require\s+k8s\.io/kubernetes\s+(v\d+\.\d+\.\d+)\s*$", text, re.M)
    if not m:
        m = re.search(r"^\s+k8s\.io/kubernetes\s+(v\d+\.\d+\.\d+)\s*$", text, re.M)
    if not m:
        raise BuildError(f"cannot find the k8s.io/kubernetes requirement in {GOMOD_DIR / 'go.mod'}")
    return m.group(1)


def apiserver_path() -> Path:
    return cache_root() / kubernetes_version() / "kube-apiserver"


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _file_lock(path: Path, progress: Progress) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"another build holds {path}; waiting for it ...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fmt_secs(s: float) -> str:
    m, s = divmod(int(s), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


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
    raise BuildError("the Go toolchain is needed to build kube-apiserver: no `go` on PATH (set GO=...)")


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


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
    return env


def _check_go_version(go: str, env: dict[str, str]) -> str:
    try:
        out = subprocess.run([go, "env", "GOVERSION"], env=env, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"cannot run {go}: {exc}") from exc
    have = out.strip()
    m = re.search(r"^go\s+(\d+\.\d+(?:\.\d+)?)\s*$", (GOMOD_DIR / "go.mod").read_text(), re.M)
    need = m.group(1) if m else "0"
    if _version_tuple(have.removeprefix("go")) < _version_tuple(need):
        raise BuildError(f"{go} is {have}, but building Kubernetes {kubernetes_version()} needs go >= {need}")
    return have


def _stamp() -> str:
    h = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        h.update((GOMOD_DIR / name).read_bytes())
    h.update(" ".join(_ldflags()).encode())
    return h.hexdigest()


def _ldflags() -> list[str]:
    v = kubernetes_version()
    major, minor, _ = _version_tuple(v)
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={v}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return flags


def _stream(cmd: list[str], env: dict[str, str], on_line: Callable[[str], None]) -> tuple[int, list[str]]:
    """Run cmd in GOMOD_DIR; feed each stderr line to on_line; return (rc, stdout lines)."""
    proc = subprocess.Popen(
        cmd, cwd=GOMOD_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    # stdout is small (package lists); stderr carries progress: read stderr first, live.
    import threading

    out: list[str] = []

    def _read_out() -> None:
        assert proc.stdout is not None
        out.extend(proc.stdout.read().splitlines())

    t = threading.Thread(target=_read_out, daemon=True)
    t.start()
    assert proc.stderr is not None
    for line in proc.stderr:
        on_line(line.rstrip("\n"))
    rc = proc.wait()
    t.join()
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()
    return rc, out


# --------------------------------------------------------------------------- kube-apiserver


def ensure_kube_apiserver(progress: Progress = default_progress, force: bool = False) -> Path:
    """Return the path of a cached kube-apiserver, building it first if needed."""
    env_bin = os.environ.get("KUBE_APISERVER_BIN")
    if env_bin:
        if not os.access(env_bin, os.X_OK):
            raise BuildError(f"KUBE_APISERVER_BIN={env_bin} is not an executable file")
        return Path(env_bin)

    target = apiserver_path()
    stamp_file = target.with_name(target.name + ".stamp")
    stamp = _stamp()

    def fresh() -> bool:
        return target.is_file() and stamp_file.is_file() and stamp_file.read_text().strip() == stamp

    if not force and fresh():
        return target
    with _file_lock(target.parent / ".build.lock", progress):
        if not force and fresh():  # built by a concurrent process meanwhile
            return target
        _build_kube_apiserver(target, progress)
        stamp_file.write_text(stamp + "\n")
    return target


def _build_kube_apiserver(target: Path, progress: Progress) -> None:
    version = kubernetes_version()
    go = find_go()
    env = _go_env(go)
    goversion = _check_go_version(go, env)
    t0 = time.monotonic()
    progress(f"building kube-apiserver {version} from the k8s.io/kubernetes module with {goversion}")
    progress(f"go.mod: {GOMOD_DIR / 'go.mod'}; caches under {cache_root()}")
    progress("this takes a while on a cold machine (measured ~25 min on 2 cores); later runs reuse the cache")

    # 1. resolve the package graph; downloads the needed modules on first run
    progress("step 1/2: resolving packages and downloading modules (go list -deps)")
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
                progress(f"  downloaded {downloads} modules ... ({line[len('go: downloading '):]})")
        else:
            errors.append(line)

    rc, pkgs = _stream([go, "list", "-deps", "-f", "{{.ImportPath}}", APISERVER_PKG], env, on_list_line)
    if rc != 0:
        raise BuildError("`go list -deps` failed:\n" + "\n".join(errors))
    total = len(pkgs)
    progress(
        f"  {total} packages to build ({downloads} modules downloaded) in {_fmt_secs(time.monotonic() - t0)}"
    )

    # 2. compile; -v prints each package as it is compiled (cached ones are not printed)
    progress("step 2/2: compiling (go build -v); progress is packages compiled / total")
    known = set(pkgs)
    done = 0
    t1 = time.monotonic()
    last = t1
    last_pct = -1
    errors.clear()

    def on_build_line(line: str) -> None:
        nonlocal done, last, last_pct
        if line in known:
            done += 1
            now = time.monotonic()
            pct = done * 100 // max(total, 1)
            if pct // 5 != last_pct // 5 or now - last > 60:
                last, last_pct = now, pct
                progress(f"  [{done}/{total}] {pct:3d}%  {_fmt_secs(now - t0)} elapsed  ({line})")
        else:
            errors.append(line)

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp.{os.getpid()}")
    cmd = [go, "build", "-v", "-trimpath", "-ldflags", " ".join(_ldflags()), "-o", str(tmp), APISERVER_PKG]
    try:
        rc, _ = _stream(cmd, env, on_build_line)
        if rc != 0:
            raise BuildError(f"`go build {APISERVER_PKG}` failed (rc={rc}):\n" + "\n".join(errors))
        progress(f"  linking done; compiled {done} packages in {_fmt_secs(time.monotonic() - t1)}")
        out = subprocess.run([str(tmp), "--version"], capture_output=True, text=True, check=False)
        if out.returncode != 0 or version not in out.stdout:
            raise BuildError(f"the built kube-apiserver does not run: {out.stdout} {out.stderr}")
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    progress(f"kube-apiserver {version} ready at {target} (total {_fmt_secs(time.monotonic() - t0)})")


# --------------------------------------------------------------------------- etcd


def etcd_version(path: str | os.PathLike[str]) -> tuple[int, ...]:
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"etcd Version:\s*(\S+)", out)
    if not m:
        raise BuildError(f"cannot read the version of {path}: {out!r}")
    return _version_tuple(m.group(1))


def _find_etcd() -> str | None:
    env_bin = os.environ.get("ETCD_BIN")
    if env_bin:
        if not os.access(env_bin, os.X_OK):
            raise BuildError(f"ETCD_BIN={env_bin} is not an executable file")
        return env_bin
    found = shutil.which("etcd")
    if found:
        return found
    for cand in ("/usr/bin/etcd", "/usr/local/bin/etcd"):
        if os.access(cand, os.X_OK):
            return cand
    return None


def _apt_install_etcd(progress: Progress) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BuildError(
            "etcd is missing: install Debian's etcd-server package "
            "(`sudo apt-get install etcd-server`) or set ETCD_BIN=/path/to/etcd"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    progress("etcd missing: apt-get update ...")
    subprocess.run(["apt-get", "update", "-q"], env=env, check=True, stdout=sys.stderr)
    progress("apt-get install -y --no-install-recommends etcd-server ...")
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "etcd-server"],
        env=env,
        check=True,
        stdout=sys.stderr,
    )


def ensure_etcd(progress: Progress = default_progress, install: bool = True) -> Path:
    """Return the path of a usable etcd, installing Debian's etcd-server if allowed."""
    path = _find_etcd()
    if path is None:
        if not install:
            raise BuildError("etcd is missing (run `make cluster-bins` or set ETCD_BIN)")
        with _file_lock(cache_root() / ".apt-etcd.lock", progress):
            if _find_etcd() is None:
                _apt_install_etcd(progress)
        path = _find_etcd()
        if path is None:
            raise BuildError("etcd-server was installed but no etcd binary was found")
    ver = etcd_version(path)
    if ver < MIN_ETCD:
        raise BuildError(
            f"{path} is etcd {'.'.join(map(str, ver))}; need >= {'.'.join(map(str, MIN_ETCD))}"
        )
    return Path(path)


def ensure_all(progress: Progress = default_progress, install_etcd: bool = True) -> dict[str, Path]:
    etcd = ensure_etcd(progress, install=install_etcd)
    apiserver = ensure_kube_apiserver(progress)
    return {"etcd": etcd, "kube-apiserver": apiserver}


def binaries_ready() -> bool:
    """True when no build or install is needed (cheap check)."""
    try:
        if _find_etcd() is None:
            return False
        if os.environ.get("KUBE_APISERVER_BIN"):
            return True
        target = apiserver_path()
        stamp_file = target.with_name(target.name + ".stamp")
        return target.is_file() and stamp_file.is_file() and stamp_file.read_text().strip() == _stamp()
    except (OSError, BuildError):
        return False


if __name__ == "__main__":  # pragma: no cover - convenience
    print(json.dumps({k: str(v) for k, v in ensure_all().items()}))
