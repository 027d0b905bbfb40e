"""A real, local Kubernetes control plane for tests and demos (like envtest).

Starts ``etcd`` and the real ``kube-apiserver`` (built by ``tests/cluster/build.py``)
as local processes on free 127.0.0.1 ports: TLS with a throw-away CA, static
token authentication (an admin in ``system:masters`` plus named test
identities that only have ``system:authenticated``), RBAC authorization, the
service-account signing flags and the default admission plugins.  By default no
kubelet, no controller-manager, no scheduler, no containers.

With ``workloads=True`` ("workloads mode") it also runs the real
``kube-controller-manager`` (the controllers in :data:`WORKLOAD_CONTROLLERS`:
Job, CronJob, garbage collector, TTL-after-finished, ServiceAccount and token,
namespace, ResourceQuota, root-CA publisher, node lifecycle), the real
``kube-scheduler`` and the test-only
node agent (``tests/cluster/nodeagent.py``, the kubelet's stand-in: it registers
a Node and runs the Pods bound to it as local processes).  Jobs then create real
Pods, the scheduler binds them, ownerReferences cascade and TTLs delete.
``start_workloads()`` turns the mode on later, on a running cluster.

Python API::

    from tests.cluster.localcluster import LocalCluster

    with LocalCluster(users=["alice", "bob"]) as cluster:
        cluster.kubeconfig            # admin kubeconfig path
        cluster.kubeconfig_for("alice")
        cluster.server                # https://127.0.0.1:PORT
        # LocalCluster(workloads=True): cluster.node_name, cluster.pod_dir(ns, name), ...
        cluster.ca_file               # PEM of the cluster CA
        cluster.token_for("alice")
        status, body = cluster.request("GET", "/api/v1/namespaces", user="alice")

Everything lives in one temp dir that is removed on exit; both processes run in
their own process groups and are killed by PID (group) on exit, on an exception,
on SIGINT/SIGTERM, at interpreter exit, and (Linux ``PR_SET_PDEATHSIG``) when the
Python process itself dies.  Leftovers of a process killed with SIGKILL are
reaped by the next start.

CLI::

    python -m tests.cluster.localcluster build            # build/cache the binaries
    python -m tests.cluster.localcluster up [--dir .cluster] [--user alice ...]
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

try:  # run as `python -m tests.cluster.localcluster` or `python tests/cluster/localcluster.py`
    from tests.cluster import build
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.cluster import build

ADMIN = "admin"
DEFAULT_USERS: tuple[str, ...] = ("alice", "bob")
TMP_PREFIX = "ecs-localcluster-"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"  # allocation only: nothing routes there
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
CONTROLLER_MANAGER = "system:kube-controller-manager"  # the identities the default RBAC binds
SCHEDULER = "system:kube-scheduler"
NODE_NAME = "nodeagent-0"
# what a Job's life needs, and node-lifecycle: the TaintNodesByCondition admission plugin
# creates every Node with the not-ready taint, which that controller lifts once the Node is
# Ready (and it watches the node agent's Lease, as for a kubelet).  Left out: Services,
# endpoints, PVs, node IPAM, Deployments/ReplicaSets, certificates.
WORKLOAD_CONTROLLERS = (
    "node-lifecycle-controller",
    "job-controller",
    "garbage-collector-controller",
    "ttl-after-finished-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "namespace-controller",
    "resourcequota-controller",
    "root-ca-certificate-publisher-controller",
    "cronjob-controller",
)
WORKLOAD_PROCESSES = ("nodeagent", "kube-scheduler", "kube-controller-manager")
ROOT = Path(__file__).resolve().parents[2]


class ClusterError(RuntimeError):
    pass


# --------------------------------------------------------------------------- small helpers


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# loaded in the parent: the child only calls prctl between fork and exec
_LIBC: Any = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
PR_SET_PDEATHSIG = 1


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    # the child gets SIGKILL when the thread that started it dies (even by SIGKILL)
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _openssl(*args: str, cwd: Path) -> None:
    res = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise ClusterError(f"openssl {' '.join(args)} failed: {res.stderr.strip()}")


def _tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def reap_stale(tmp_root: str | None = None) -> list[str]:
    """Remove temp dirs (and kill processes) left by a LocalCluster whose owner died."""
    removed: list[str] = []
    root = Path(tmp_root or tempfile.gettempdir())
    roots = {root, Path("/dev/shm")}
    for r in roots:
        if not r.is_dir():
            continue
        for d in r.glob(TMP_PREFIX + "*"):
            owner_file = d / "owner.pid"
            try:
                owner = int(owner_file.read_text().strip())
            except (OSError, ValueError):
                # not yet written by a starting cluster, or not ours: leave young dirs alone
                try:
                    if time.time() - d.stat().st_mtime < 600:
                        continue
                except OSError:
                    continue
                owner = -1
            if owner > 0 and _pid_alive(owner):
                continue
            for pgfile in d.glob("*.pgid"):
                # normally long gone (PR_SET_PDEATHSIG); kill only if the PID still is
                # that process: its command line names this very directory
                with contextlib.suppress(OSError, ValueError):
                    pid = int(pgfile.read_text().strip())
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if str(d).encode() in cmdline:
                        os.killpg(pid, signal.SIGKILL)
            shutil.rmtree(d, ignore_errors=True)
            removed.append(str(d))
    return removed


# --------------------------------------------------------------------------- the cluster


class LocalCluster:
    """etcd + kube-apiserver on 127.0.0.1; a context manager.

    :param users: names of test identities (token auth, no groups besides
        ``system:authenticated``, so no permissions until RBAC grants some).
        :param auto_build: build the binaries if missing (a cold build takes minutes, once).
    :param extra_apiserver_args: appended to the kube-apiserver command line.
    :param startup_timeout: seconds to wait for /readyz.
    :param progress: callable for progress lines (default: print to stderr).
    :param workloads: also run kube-controller-manager, kube-scheduler and the node
        agent (one Node, :data:`NODE_NAME`), so Pods run; builds those binaries if needed.
    """

    def __init__(
        self,
        users: Iterable[str] = DEFAULT_USERS,
        *,
        auto_build: bool = True,
        extra_apiserver_args: Sequence[str] = (),
        startup_timeout: float = 180.0,
        progress: build.Progress | None = None,
        verbosity: int = 1,
        workloads: bool = False,
    ) -> None:
        self.users: list[str] = [u for u in users if u != ADMIN]
        self.workloads = workloads
        self.node_name = NODE_NAME
        self._auto_build = auto_build
        self._extra_args = list(extra_apiserver_args)
        self._timeout = startup_timeout
        self._progress = progress or (lambda m: print(f"[localcluster] {m}", file=sys.stderr, flush=True))
        self._verbosity = verbosity
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self._tokens: dict[str, str] = {}
        self._lock = threading.RLock()
        self._old_sigterm: Any = None
        self._atexit_registered = False
        self.workdir: Path | None = None
        self.server = ""
        self.port = 0
        self.etcd_url = ""
        self.startup_seconds = 0.0
        self.workloads_startup_seconds = 0.0

    # -- public API ---------------------------------------------------------------

    @property
    def ca_file(self) -> str:
        return str(self._dir / "pki" / "ca.crt")

    @property
    def kubeconfig(self) -> str:
        """Path of the admin kubeconfig (user ``admin`` in ``system:masters``)."""
        return self.kubeconfig_for(ADMIN)

    def kubeconfig_for(self, user: str) -> str:
        path = self._dir / "kubeconfigs" / f"{user}.yaml"
        if not path.exists():
            raise KeyError(f"no such identity: {user!r} (known: {[ADMIN, *self.users]})")
        return str(path)

    def token_for(self, user: str) -> str:
        return self._tokens[user]

    @property
    def apiserver_log(self) -> str:
        return str(self._dir / "kube-apiserver.log")

    @property
    def etcd_log(self) -> str:
        return str(self._dir / "etcd.log")

    @property
    def nodeagent_root(self) -> Path:
        """The node agent's directory: one sub-directory per Pod it ran (workloads mode)."""
        return self._dir / "nodeagent"

    def pod_dir(self, namespace: str, name: str) -> Path | None:
        """The node agent's directory of a Pod (its files and ``container.log``), if it ran it."""
        found = sorted(
            self.nodeagent_root.glob(f"pods/{namespace}_{name}_*"), key=lambda p: p.stat().st_mtime
        )
        return found[-1] if found else None

    def pod_log(self, namespace: str, name: str) -> str:
        """stdout+stderr of a Pod's container as the node agent captured it ('' if none)."""
        d = self.pod_dir(namespace, name)
        if d is None:
            return ""
        try:
            return (d / "container.log").read_text(errors="replace")
        except OSError:
            return ""

    def set_node_env(self, env: dict[str, str]) -> None:
        """Test-only: variables the node agent adds to every container it starts from now on.

        Like a mutating webhook would, for endpoints only the test knows (moto's URL);
        the Pod's own ``env`` wins on a clash.
        """
        path = self.nodeagent_root / "node-env.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(env))
        tmp.replace(path)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        user: str = ADMIN,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> tuple[int, Any]:
        """One HTTP request to the apiserver as ``user``; returns (status, decoded JSON or text)."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token_for(user)}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            with err:
                status, raw = err.code, err.read()
        text = raw.decode(errors="replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def write_kubeconfig(self, path: str | os.PathLike[str], user: str = ADMIN) -> str:
        """Write a self-contained kubeconfig (CA embedded) for ``user`` to ``path``."""
        ca_data = base64.b64encode(Path(self.ca_file).read_bytes()).decode()
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "ecs-local",
                    "cluster": {"server": self.server, "certificate-authority-data": ca_data},
                }
            ],
            "users": [{"name": user, "user": {"token": self.token_for(user)}}],
            "contexts": [
                {
                    "name": f"{user}@ecs-local",
                    "context": {"cluster": "ecs-local", "user": user, "namespace": "default"},
                }
            ],
            "current-context": f"{user}@ecs-local",
            "preferences": {},
        }
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            try:
                import yaml

                yaml.safe_dump(cfg, fh, sort_keys=False)
            except ImportError:  # JSON is valid YAML
                json.dump(cfg, fh, indent=2)
        return str(p)

    def running(self) -> bool:
        return bool(self._procs) and all(p.poll() is None for p in self._procs.values())

    # -- lifecycle ----------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalCluster:
        if self._procs:
            raise ClusterError("already started")
        t0 = time.monotonic()
        if not self._auto_build and not build.binaries_ready(workloads=self.workloads):
            raise ClusterError("the control-plane binaries are not built: run `make cluster-bins`")
        binaries = build.ensure_all(self._progress, workloads=self.workloads)
        self._install_signal_handlers()
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        reap_stale()
        last_err: Exception | None = None
        for attempt in range(3):  # a freshly picked free port can be taken by someone else
            try:
                self._start_once(binaries)
                self.startup_seconds = time.monotonic() - t0
                return self
            except ClusterError as err:
                logs = ""
                with contextlib.suppress(Exception):
                    logs = "".join(_tail(self._dir / f"{n}.log", 200) for n in list(self._procs))
                self.stop()
                last_err = err
                if "address already in use" not in logs.lower():
                    break
                self._progress(f"port clash, retrying ({attempt + 1}/3)")
        assert last_err is not None
        raise last_err

    def stop(self) -> None:
        """Kill all process groups and remove the temp dir. Idempotent."""
        with self._lock:
            # clients first (the node agent stops the Pods' processes), then apiserver, then etcd
            for name in (*WORKLOAD_PROCESSES, "kube-apiserver", "etcd"):
                proc = self._procs.pop(name, None)
                if proc is not None:
                    self._kill(proc)
            for fh in self._logs.values():
                with contextlib.suppress(OSError):
                    fh.close()
            self._logs.clear()
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
                self.workdir = None
            self._restore_signal_handlers()
            if self._atexit_registered:
                atexit.unregister(self.stop)
                self._atexit_registered = False

    # -- internals ----------------------------------------------------------------

    @property
    def _dir(self) -> Path:
        if self.workdir is None:
            raise ClusterError("the cluster is not running")
        return self.workdir

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        current = signal.getsignal(signal.SIGTERM)
        if current in (signal.SIG_DFL, None):

            def on_term(signum: int, frame: object) -> None:
                # turn SIGTERM into the same unwinding as Ctrl-C: finally/__exit__ run
                raise KeyboardInterrupt(f"signal {signum}")

            self._old_sigterm = current
            signal.signal(signal.SIGTERM, on_term)

    def _restore_signal_handlers(self) -> None:
        if self._old_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        try:
            pgid = os.getpgid(proc.pid)
        except ProcessLookupError:
            pgid = proc.pid
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        # anything else left in the group (none expected)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait()

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self._dir / f"{name}.log").open("wb")  # closed in stop()
        self._logs[name] = log
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self._dir,
            env=env,
            start_new_session=True,  # own process group: killed as a group by PID
            preexec_fn=_set_pdeathsig if sys.platform.startswith("linux") else None,  # noqa: PLW1509
        )
        self._procs[name] = proc
        (self._dir / f"{name}.pgid").write_text(f"{proc.pid}\n")
        return proc

    def _make_workdir(self) -> Path:
        # etcd fsyncs a lot; tmpfs makes that free (it's throw-away data anyway)
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        d = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=base))
        (d / "owner.pid").write_text(f"{os.getpid()}\n")
        return d

    def _make_pki(self) -> None:
        pki = self._dir / "pki"
        pki.mkdir()
        (pki / "server.ext").write_text(
            "basicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
            "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.0.0.1\n"
        )
        ec = ("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
        _openssl(*ec, "-out", "ca.key", cwd=pki)
        _openssl(
            "req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "3650",
            "-subj", "/CN=ecs-scan-operator local test CA", "-out", "ca.crt", cwd=pki,
        )  # fmt: skip
        _openssl(*ec, "-out", "server.key", cwd=pki)
        _openssl(
            "req", "-new", "-key", "server.key", "-subj", "/CN=kube-apiserver", "-out", "server.csr", cwd=pki
        )
        _openssl(
            "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-sha256", "-days", "365", "-extfile", "server.ext", "-out", "server.crt", cwd=pki,
        )  # fmt: skip
        _openssl(*ec, "-out", "sa.key", cwd=pki)
        _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
        for f in pki.iterdir():
            f.chmod(0o600)

    def _write_tokens(self) -> None:
        self._tokens = {ADMIN: secrets.token_hex(24)}
        lines = [f'{self._tokens[ADMIN]},{ADMIN},uid-{ADMIN},"system:masters"']
        # always: the workloads mode can be started later, on this apiserver (static tokens)
        for component in (CONTROLLER_MANAGER, SCHEDULER):
            self._tokens[component] = secrets.token_hex(24)
            lines.append(f"{self._tokens[component]},{component},uid-{component}")
        for user in self.users:
            if not user or any(c in user for c in ',"\n'):
                raise ValueError(f"bad user name {user!r}")
            self._tokens[user] = secrets.token_hex(24)
            lines.append(f"{self._tokens[user]},{user},uid-{user}")
        p = self._dir / "tokens.csv"
        p.write_text("\n".join(lines) + "\n")
        p.chmod(0o600)

    def _start_once(self, binaries: dict[str, Path]) -> None:
        self.workdir = self._make_workdir()
        self._make_pki()
        self._write_tokens()
        d = self._dir

        client_port, peer_port = _free_port(), _free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            [
                str(binaries["etcd"]),
                "--name=local",
                f"--data-dir={d / 'etcd-data'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=local={peer}",
                "--initial-cluster-state=new",
                "--logger=zap",
                "--log-outputs=stderr",
                "--log-level=warn",
                "--unsafe-no-fsync",  # throw-away data
            ],
            # etcd reads any ETCD_* variable as a flag: keep the caller's out
            env={k: v for k, v in os.environ.items() if not k.startswith("ETCD_")},
        )
        self._wait_etcd()

        self.port = _free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        pki = d / "pki"
        (d / "apiserver-certs").mkdir()
        cmd = [
            str(binaries["kube-apiserver"]),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--cert-dir={d / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'server.crt'}",
            f"--tls-private-key-file={pki / 'server.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={d / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            "--profiling=false",
            f"--v={self._verbosity}",
            *self._extra_args,
        ]
        (d / "kube-apiserver.cmdline").write_text(" \\\n  ".join(cmd) + "\n")
        self._spawn("kube-apiserver", cmd)
        for user in [ADMIN, *self.users]:
            self.write_kubeconfig(d / "kubeconfigs" / f"{user}.yaml", user)
        self._wait_ready()
        if self.workloads:
            self._start_workloads(binaries)

    @property
    def workloads_running(self) -> bool:
        """True when kube-controller-manager, kube-scheduler and the node agent run."""
        return "nodeagent" in self._procs

    def start_workloads(self) -> LocalCluster:
        """Start the workloads mode on this running cluster (idempotent); builds what is missing."""
        with self._lock:
            if self.workloads_running:
                return self
            if not self._procs:
                raise ClusterError("the cluster is not running")
            if not self._auto_build and not build.binaries_ready(workloads=True):
                raise ClusterError("the workload binaries are not built: run `make cluster-bins`")
            t0 = time.monotonic()
            try:
                self._start_workloads(build.ensure_all(self._progress, workloads=True))
            except BaseException:
                for name in WORKLOAD_PROCESSES:
                    proc = self._procs.pop(name, None)
                    if proc is not None:
                        self._kill(proc)
                raise
            self.workloads = True
            self.workloads_startup_seconds = time.monotonic() - t0
            return self

    def _start_workloads(self, binaries: dict[str, Path]) -> None:
        d = self._dir
        pki = d / "pki"
        kcfg = {
            c: self.write_kubeconfig(d / "kubeconfigs" / f"{c}.yaml", c)
            for c in (CONTROLLER_MANAGER, SCHEDULER)
        }
        common = [
            "--leader-elect=true",  # a fresh lease is taken at once; it doubles as the "started" signal
            "--leader-elect-lease-duration=15s",
            "--leader-elect-renew-deadline=10s",
            "--leader-elect-retry-period=2s",
            "--secure-port=0",  # no HTTPS endpoint: no port to clash with other clusters
            "--kube-api-qps=100",
            "--kube-api-burst=200",
            f"--v={self._verbosity}",
        ]
        self._spawn(
            "kube-controller-manager",
            [
                str(binaries["kube-controller-manager"]),
                f"--kubeconfig={kcfg[CONTROLLER_MANAGER]}",
                f"--controllers={','.join(WORKLOAD_CONTROLLERS)}",
                "--use-service-account-credentials=true",  # each controller as its own SA, as in kubeadm
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--concurrent-job-syncs=10",
                *common,
            ],
        )
        self._spawn(
            "kube-scheduler", [str(binaries["kube-scheduler"]), f"--kubeconfig={kcfg[SCHEDULER]}", *common]
        )
        self.nodeagent_root.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        self._spawn(
            "nodeagent",
            [
                sys.executable,
                "-m",
                "tests.cluster.nodeagent",
                f"--kubeconfig={self.kubeconfig}",
                f"--node-name={self.node_name}",
                f"--root={self.nodeagent_root}",
            ],
            env=env,
        )
        self._wait_workloads()

    def _wait_workloads(self) -> None:
        """Both leases taken, the `default` ServiceAccount made, the Node Ready."""
        deadline = time.monotonic() + self._timeout
        leases = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"
        checks = {
            "kube-controller-manager's lease": f"{leases}/kube-controller-manager",
            "kube-scheduler's lease": f"{leases}/kube-scheduler",
            "the default ServiceAccount": "/api/v1/namespaces/default/serviceaccounts/default",
            f"Node {self.node_name} Ready and untainted": f"/api/v1/nodes/{self.node_name}",
        }
        for what, path in checks.items():
            while True:
                self._check_alive()
                status, body = self.request("GET", path, timeout=5)
                if status == 200 and _workload_check_ok(body):
                    break
                if time.monotonic() > deadline:
                    logs = "\n".join(f"--- {n}:\n{_tail(self._dir / f'{n}.log', 30)}" for n in self._procs)
                    raise ClusterError(f"{what}: not there after {self._timeout:.0f} s ({status});\n{logs}")
                time.sleep(0.2)

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise ClusterError(
                    f"{name} exited with code {proc.returncode} during start-up; last log lines:\n"
                    + _tail(self._dir / f"{name}.log")
                )

    def _wait_etcd(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            self._check_alive()
            try:
                with urllib.request.urlopen(self.etcd_url + "/health", timeout=2) as r:
                    if json.loads(r.read()).get("health") in ("true", True):
                        return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise ClusterError("etcd did not become healthy in 30 s:\n" + _tail(self._dir / "etcd.log"))
            time.sleep(0.1)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._timeout
        last = ""
        while True:
            self._check_alive()
            try:
                status, body = self.request("GET", "/readyz", timeout=5)
                if status == 200:
                    # the 'default' namespace is created by a bootstrap controller after readyz
                    status, body = self.request("GET", "/api/v1/namespaces/default", timeout=5)
                    if status == 200:
                        return
                last = f"{status}: {str(body)[:2000]}"
            except (OSError, ssl.SSLError) as err:
                last = repr(err)
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"kube-apiserver not ready after {self._timeout:.0f} s (last answer: {last});\n"
                    + _tail(self._dir / "kube-apiserver.log")
                )
            time.sleep(0.2)


def _workload_check_ok(body: Any) -> bool:
    if not isinstance(body, dict):
        return False
    if body.get("kind") == "Lease":
        return bool((body.get("spec") or {}).get("holderIdentity"))
    if body.get("kind") == "Node":  # Ready, and the not-ready taint lifted: Pods can be scheduled
        conditions = (body.get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        return ready and not (body.get("spec") or {}).get("taints")
    return True


# --------------------------------------------------------------------------- CLI


def _cmd_build(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    try:
        paths = build.ensure_all(build.default_progress, force=args.force, workloads=True)
    except build.BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}: {path}")
    print(f"done in {time.monotonic() - t0:.1f} s")
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    out_dir = Path(args.dir).resolve()
    written: list[Path] = []
    try:
        with LocalCluster(users=args.user or DEFAULT_USERS, workloads=args.workloads) as cluster:
            written.append(Path(cluster.write_kubeconfig(out_dir / "kubeconfig")))
            for user in cluster.users:
                written.append(Path(cluster.write_kubeconfig(out_dir / f"kubeconfig-{user}", user)))
            kubectl = Path(".tools/bin/kubectl")
            kubectl_hint = str(kubectl) if kubectl.exists() else "kubectl"
            print(
                f"\nkube-apiserver {build.kubernetes_version()} is up at {cluster.server}"
                f" (started in {cluster.startup_seconds:.1f} s)\n\n"
                f"  export KUBECONFIG={written[0]}\n"
                f"  {kubectl_hint} get namespaces\n\n"
                f"test identities (no RBAC permissions yet): "
                + ", ".join(f"{u} -> {out_dir / f'kubeconfig-{u}'}" for u in cluster.users)
                + f"\nlogs: {cluster.apiserver_log}, {cluster.etcd_log}\n"
                "Press Ctrl-C to stop (everything is removed).\n",
                flush=True,
            )
            while cluster.running():
                time.sleep(1)
            print("error: a control-plane process exited unexpectedly:", file=sys.stderr)
            print(_tail(Path(cluster.apiserver_log)), file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("\nstopping ...", file=sys.stderr)
        return 0
    except (ClusterError, build.BuildError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        for p in written:
            with contextlib.suppress(OSError):
                p.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.cluster.localcluster", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_build = sub.add_parser(
        "build",
        help="build (or reuse the cached) etcd, kube-apiserver, kube-controller-manager and kube-scheduler",
    )
    p_build.add_argument(
        "--force", action="store_true", help="rebuild even if the cached binaries are current"
    )
    p_build.set_defaults(func=_cmd_build)
    p_up = sub.add_parser("up", help="start a cluster in the foreground until Ctrl-C")
    p_up.add_argument("--dir", default=".cluster", help="where to write kubeconfig files (default: .cluster)")
    p_up.add_argument("--user", action="append", help="test identity (repeatable; default: alice, bob)")
    p_up.add_argument(
        "--workloads",
        action="store_true",
        help="also run kube-controller-manager, kube-scheduler and the test node agent (Pods run)",
    )
    p_up.set_defaults(func=_cmd_up)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
