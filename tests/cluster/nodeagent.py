"""The node agent: the kubelet's stand-in for the local test cluster (test-only).

There is no kubelet and no container runtime on the machines the tests run on.
This agent plays the kubelet's part of a Pod's life, just far enough for the
real Job controller, scheduler, garbage collector and TTL controller to do theirs:

* it registers one Node (Ready, capacity 32 CPU / 64 Gi / 250 Pods, no taints) and
  renews its Lease in ``kube-node-lease`` every 10 s;
* it watches the Pods bound to that Node (``spec.nodeName``) and runs the container's
  ``command`` + ``args`` as a **local process**.  The image is ignored: the process runs
  on this machine, from ``PATH`` with the agent's Python environment (its ``bin``
  directory) first, so ``python -c ...`` or ``ecs-scan-operator ...`` run the
  project's venv.  Only single-container Pods with a ``command`` are supported (an
  image's entrypoint is unknown here); anything else fails the Pod with reason
  ``NodeAgentUnsupported`` and a message saying why;
* the process gets the Pod's environment only (plus ``PATH``, ``HOME``, ``LANG``,
  ``TMPDIR`` and ``HOSTNAME``): ``env`` (``value`` with ``$(VAR)`` expansion,
  ``secretKeyRef``, ``configMapKeyRef``, ``fieldRef``), ``envFrom``; a missing
  Secret/ConfigMap keeps the Pod ``Pending`` with ``CreateContainerConfigError``
  until it appears, as a kubelet does;
* **paths**: volumes (``secret``, ``configMap``, ``projected``, ``downwardAPI``,
  ``emptyDir``) are written under the Pod's directory
  ``<root>/pods/<ns>_<name>_<uid>/volumes/<volume>/``, and the termination message file
  is ``.../termination-log``.  A process cannot see them at their ``mountPath``
  (no mount namespace), so the agent **rewrites every occurrence of a mountPath or
  of ``terminationMessagePath`` in the command, args and env values** to the real
  location (``--out=/dev/termination-log`` becomes ``--out=<pod dir>/termination-log``).
  A program must therefore receive its file paths through args or env, not
  hard-coded.  ``NODEAGENT_POD_DIR`` names the Pod's directory;
* the ServiceAccount token: the ``kube-api-access-*`` volume the admission plugin
  adds (and any ``serviceAccountToken`` projection) gets a real bound token from the
  TokenRequest API (not renewed; default 1 h).  When the Pod mounts one at
  ``/var/run/secrets/kubernetes.io/serviceaccount``, ``KUBECONFIG`` points to a
  kubeconfig using that token file, so the Kubernetes client libraries (kopf, the
  ``kubernetes`` package) talk to the apiserver **as that ServiceAccount**.
  ``KUBERNETES_SERVICE_HOST`` is not set: in-cluster login is not possible without
  the fixed path, clients fall back to ``KUBECONFIG``;
* status: ``Pending`` -> ``Running`` -> ``Succeeded``/``Failed`` with the exit code and
  reason (``Completed``, ``Error``, ``OOMKilled``, ``StartError``), the content of the
  termination message file (first 4096 bytes; ``FallbackToLogsOnError`` uses the log
  tail) as ``state.terminated.message``; ``restartPolicy`` ``OnFailure``/``Always``
  restart the process in place (``restartCount``, 1 s back-off instead of 10 s+);
* ``activeDeadlineSeconds`` of the Pod: SIGTERM, then SIGKILL after the grace period,
  Pod ``Failed`` with reason ``DeadlineExceeded``;
* deletion: on a graceful delete it sends SIGTERM to the process group, SIGKILL after
  the grace period, writes the terminal status and deletes the Pod with grace 0 (as
  a kubelet does); the Job controller's deadline and the garbage collector go through
  this path;
* test-only fault injection: the annotation ``nodeagent.test.ecs-scan.io/oom-kill-after-seconds``
  (on the Pod template, or added to a running Pod) makes the agent SIGKILL the process
  that many seconds after it started and report ``OOMKilled`` / exit code 137.

Not done: no images, no containers, no cgroups or resource limits, no probes, no
init or sidecar containers, no logs API (``kubectl logs``; read
``<pod dir>/container.log``), no exec/port-forward, no Pod networking (every Pod
has IP 127.0.0.1), no token renewal, no hostPath/PVC volumes, no node status
beyond Ready, one Node.

Run by ``LocalCluster(workloads=True)``; by hand::

    python -m tests.cluster.nodeagent --kubeconfig KCFG --node-name N --root DIR

``<root>/node-env.json`` (``{"NAME": "value"}``, re-read for each container start)
adds variables to every container: test-only, for endpoints only the test knows.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime as dt
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ANNOTATION_PREFIX = "nodeagent.test.ecs-scan.io/"
OOM_KILL_AFTER = ANNOTATION_PREFIX + "oom-kill-after-seconds"
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
MAX_MESSAGE = 4096  # the kubelet's per-container termination message limit
FALLBACK_LOG_BYTES, FALLBACK_LOG_LINES = 2048, 80
LEASE_SECONDS = 40
RENEW_SECONDS = 10
RESTART_BACKOFF_SECONDS = 1.0
DEFAULT_GRACE = 30
UNSUPPORTED = "NodeAgentUnsupported"
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"  # the kubelet's

_LIBC: Any = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _pdeathsig() -> None:  # in the child between fork and exec: die with the agent
    _LIBC.prctl(1, signal.SIGKILL)


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def log(msg: str) -> None:
    print(f"{now_micro()} nodeagent: {msg}", flush=True)


class Unsupported(Exception):
    """The Pod asks for something the node agent cannot do: it fails, with this message."""


class ConfigMissing(Exception):
    """A Secret/ConfigMap (key) the container needs does not exist (yet): retried."""


class Api:
    """A minimal Kubernetes API client (token + CA from a kubeconfig), stdlib only."""

    def __init__(self, kubeconfig: str) -> None:
        cfg = yaml.safe_load(Path(kubeconfig).read_text())
        ctx_name = cfg["current-context"]
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        self.server: str = cluster["server"]
        self.ca_pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
        self._token: str = user["token"]
        self._ssl = ssl.create_default_context(cadata=self.ca_pem)

    def _open(self, method: str, path: str, body: Any, content_type: str, timeout: float) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self._token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        return urllib.request.urlopen(req, context=self._ssl, timeout=timeout)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> tuple[int, Any]:
        try:
            with self._open(method, path, body, content_type, timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            with err:
                status, raw = err.code, err.read()
        try:
            return status, json.loads(raw or b"{}")
        except ValueError:
            return status, raw.decode(errors="replace")

    def watch(self, path: str, timeout_seconds: int = 60) -> Iterator[dict[str, Any]]:
        sep = "&" if "?" in path else "?"
        full = f"{path}{sep}watch=1&allowWatchBookmarks=true&timeoutSeconds={timeout_seconds}"
        with self._open("GET", full, None, "", timeout_seconds + 30) as resp:
            for line in resp:
                if line.strip():
                    yield json.loads(line)


# --------------------------------------------------------------------------- the Node


def node_manifest(name: str) -> dict[str, Any]:
    resources = {"cpu": "32", "memory": "64Gi", "pods": "250", "ephemeral-storage": "100Gi"}
    ts = now_rfc3339()

    def cond(type_: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": ts,
            "lastTransitionTime": ts,
        }

    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.ecs-scan.test/agent": "nodeagent",
            },
            "annotations": {"node.ecs-scan.test/what": "tests/cluster/nodeagent.py, the kubelet's stand-in"},
        },
        "spec": {},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "node agent"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "node agent"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "node agent"),
                cond(
                    "Ready", "True", "KubeletReady", "the test node agent is running Pods as local processes"
                ),
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "machineID": "nodeagent",
                "systemUUID": "nodeagent",
                "bootID": "nodeagent",
                "kernelVersion": os.uname().release,
                "osImage": "local processes (tests/cluster/nodeagent.py)",
                "containerRuntimeVersion": "nodeagent://0",
                "kubeletVersion": "v0.0.0-nodeagent",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


# --------------------------------------------------------------------------- one Pod


def _get(obj: Any, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if not isinstance(obj, dict) or k not in obj:
            return default
        obj = obj[k]
    return obj


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names are replaced, $$ escapes, the rest stays."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _VAR_REF.sub(sub, value)


def rewrite_paths(value: str, mapping: dict[str, str]) -> str:
    """Replace each mount path (as a whole path or a path prefix) in value by its real location.

    One pass, longest mount path first: a replacement is never rewritten again.
    """
    if not mapping:
        return value
    by_path = {m.rstrip("/") or "/": real for m, real in mapping.items()}
    alternatives = "|".join(re.escape(m) for m in sorted(by_path, key=len, reverse=True))
    pattern = re.compile(r"(?<![\w.\-/])(" + alternatives + r")(?=/|$|[^\w.\-])")
    return pattern.sub(lambda m: by_path[m.group(1)], value)


class PodWorker:
    """Runs one Pod in a thread of its own: its files and env, the process, the status."""

    def __init__(self, agent: NodeAgent, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        self.thread = threading.Thread(
            target=self.run, name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True
        )
        self.agent = agent
        self.api = agent.api
        self.pod = pod
        self.ns: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.changed = threading.Event()
        self.gone = False  # removed from the API (forced delete)
        self.dir = agent.root / "pods" / f"{self.ns}_{self.name}_{self.uid}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.conditions: list[dict[str, Any]] = list(_get(pod, "status", "conditions", default=[]))
        self.start_time = now_rfc3339()
        self.started_mono = time.monotonic()

    # -- events from the watch
    def update(self, pod: dict[str, Any]) -> None:
        self.pod = pod
        self.changed.set()

    def mark_gone(self) -> None:
        self.gone = True
        self.changed.set()

    @property
    def deleting(self) -> bool:
        return bool(self.pod["metadata"].get("deletionTimestamp"))

    # -- status
    def _condition(self, type_: str, status: str, reason: str | None = None) -> None:
        ts = now_rfc3339()
        for c in self.conditions:
            if c.get("type") == type_:
                if c.get("status") != status:
                    c["lastTransitionTime"] = ts
                c["status"] = status
                if reason:
                    c["reason"] = reason
                else:
                    c.pop("reason", None)
                return
        cond: dict[str, Any] = {"type": type_, "status": status, "lastTransitionTime": ts}
        if reason:
            cond["reason"] = reason
        self.conditions.append(cond)

    def _patch_status(self, status: dict[str, Any]) -> bool:
        if self.gone:
            return False
        full = {
            "startTime": self.start_time,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "conditions": self.conditions,
            **status,
        }
        code, body = self.api.call(
            "PATCH",
            f"/api/v1/namespaces/{self.ns}/pods/{self.name}/status",
            {"metadata": {"uid": self.uid}, "status": full},
            "application/merge-patch+json",
        )
        if code == 404 or code == 409:  # gone, or a new Pod of the same name
            self.gone = True
            return False
        if code != 200:
            log(f"{self.ns}/{self.name}: status update answered {code}: {str(body)[:500]}")
            return False
        return True

    def _container_status(
        self, state: dict[str, Any], ready: bool, restarts: int, last: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        c = self.pod["spec"]["containers"][0]
        status: dict[str, Any] = {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "",
            "ready": ready,
            "started": "running" in state,
            "restartCount": restarts,
            "state": state,
            "lastState": last or {},
        }
        if self.proc is not None:
            status["containerID"] = f"nodeagent://{self.uid}-{self.proc.pid}"
        return [status]

    # -- the Pod's life
    def run(self) -> None:
        try:
            self._run()
        except Exception:  # a bug here must not kill the agent; the Pod's status says so
            log(f"{self.ns}/{self.name}: crashed:\n{traceback.format_exc()}")
            self._kill_now()
            with contextlib.suppress(Exception):
                self._patch_status(
                    {
                        "phase": "Failed",
                        "reason": "NodeAgentError",
                        "message": "node agent error, see its log",
                    }
                )
        finally:
            self.agent.done(self.uid)

    def _run(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._condition("PodReadyToStartContainers", "True")
        self._condition("Initialized", "True")
        self._condition("ContainersReady", "False", "ContainersNotReady")
        self._condition("Ready", "False", "ContainersNotReady")
        waiting = {"waiting": {"reason": "ContainerCreating"}}
        self._patch_status(
            {"phase": "Pending", "containerStatuses": self._container_status(waiting, False, 0)}
        )
        try:
            self._check_supported()
        except Unsupported as err:
            return self._fail(UNSUPPORTED, str(err))
        while True:  # volumes and env, until the Secrets/ConfigMaps exist
            if self.gone:
                return None
            if self.deleting:
                return self._finish_deleted(None)
            try:
                argv, env, cwd = self._prepare()
                break
            except ConfigMissing as err:
                if self._past_deadline():
                    return self._fail("DeadlineExceeded", DEADLINE_MESSAGE)
                waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": str(err)}}
                self._patch_status(
                    {"phase": "Pending", "containerStatuses": self._container_status(waiting, False, 0)}
                )
                self.changed.wait(1.0)
                self.changed.clear()
            except Unsupported as err:
                return self._fail(UNSUPPORTED, str(err))
        restarts = 0
        last: dict[str, Any] | None = None
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while True:
            terminated, why = self._run_once(argv, env, cwd, restarts, last)
            if self.gone:
                return None
            if why == "deleted":
                return self._finish_deleted(terminated)
            if why == "deadline":
                return self._finish(terminated, restarts, last, "DeadlineExceeded", deadline=True)
            failed = terminated["exitCode"] != 0
            if policy == "Always" or (policy == "OnFailure" and failed):
                restarts += 1
                last = {"terminated": terminated}
                waiting = {"waiting": {"reason": "CrashLoopBackOff" if failed else "Completed"}}
                self._patch_status(
                    {
                        "phase": "Running",
                        "containerStatuses": self._container_status(waiting, False, restarts, last),
                    }
                )
                self.changed.wait(RESTART_BACKOFF_SECONDS)
                self.changed.clear()
                if self.deleting or self.gone:
                    return self._finish_deleted(terminated)
                continue
            return self._finish(terminated, restarts, last, None)

    def _past_deadline(self) -> bool:
        """The Pod's activeDeadlineSeconds, counted from when the agent took it (its startTime)."""
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        return deadline is not None and time.monotonic() - self.started_mono >= int(deadline)

    def _check_supported(self) -> None:
        spec = self.pod["spec"]
        if spec.get("initContainers"):
            raise Unsupported("init containers are not run by the node agent")
        if len(spec["containers"]) != 1:
            raise Unsupported("the node agent runs single-container Pods only")
        if not spec["containers"][0].get("command"):
            raise Unsupported(
                "the container has no command (the node agent cannot read an image's entrypoint)"
            )

    # -- files and env
    def _read(self, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
        code, body = self.api.call("GET", f"/api/v1/namespaces/{self.ns}/{kind}s/{name}")
        if code == 404:
            if optional:
                return None
            raise ConfigMissing(f'{kind} "{name}" not found')
        if code != 200:
            raise ConfigMissing(f'{kind} "{name}": HTTP {code}')
        out: dict[str, bytes] = {}
        if kind == "secret":
            for k, v in (body.get("data") or {}).items():
                out[k] = base64.b64decode(v)
        else:
            for k, v in (body.get("data") or {}).items():
                out[k] = v.encode()
            for k, v in (body.get("binaryData") or {}).items():
                out[k] = base64.b64decode(v)
        return out

    def _field(self, path: str) -> str:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        simple: dict[str, str] = {
            "metadata.name": self.name,
            "metadata.namespace": self.ns,
            "metadata.uid": self.uid,
            "spec.nodeName": str(spec.get("nodeName", "")),
            "spec.serviceAccountName": str(spec.get("serviceAccountName", "")),
            "status.hostIP": "127.0.0.1",
            "status.hostIPs": "127.0.0.1",
            "status.podIP": "127.0.0.1",
            "status.podIPs": "127.0.0.1",
        }
        if path in simple:
            return simple[path]
        m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
        if m:
            return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
        if path in ("metadata.labels", "metadata.annotations"):
            items = meta.get(path.split(".")[1]) or {}
            return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
        raise Unsupported(f"fieldRef {path!r} is not supported by the node agent")

    def _write_items(
        self, target: Path, data: dict[str, bytes], items: list[dict[str, Any]] | None, mode: int
    ) -> None:
        chosen = (
            [(i["key"], i["path"], i.get("mode", mode)) for i in items]
            if items
            else [(k, k, mode) for k in data]
        )
        for key, rel, file_mode in chosen:
            if key not in data:
                raise ConfigMissing(f"key {key!r} not found")
            self._write_file(target / rel, data[key], file_mode)

    def _write_file(self, path: Path, content: bytes, mode: int = 0o644) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)

    def _token(self, audience: str | None, seconds: int | None) -> bytes:
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": seconds or 3600,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid},
            },
        }
        code, resp = self.api.call("POST", f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token", body)
        if code != 201:
            raise ConfigMissing(f'token of ServiceAccount "{sa}": HTTP {code}: {str(resp)[:300]}')
        return str(resp["status"]["token"]).encode()

    def _volume(self, vol: dict[str, Any], target: Path) -> None:
        mode = 0o644
        if "emptyDir" in vol:
            target.mkdir(parents=True, exist_ok=True)
        elif "secret" in vol:
            src = vol["secret"]
            data = self._read("secret", src["secretName"], bool(src.get("optional")))
            target.mkdir(parents=True, exist_ok=True)
            if data is not None:
                self._write_items(target, data, src.get("items"), src.get("defaultMode", mode))
        elif "configMap" in vol:
            src = vol["configMap"]
            data = self._read("configmap", src["name"], bool(src.get("optional")))
            target.mkdir(parents=True, exist_ok=True)
            if data is not None:
                self._write_items(target, data, src.get("items"), src.get("defaultMode", mode))
        elif "downwardAPI" in vol:
            target.mkdir(parents=True, exist_ok=True)
            for item in vol["downwardAPI"].get("items") or []:
                self._downward(target, item, mode)
        elif "projected" in vol:
            target.mkdir(parents=True, exist_ok=True)
            default_mode = vol["projected"].get("defaultMode", mode)
            for src in vol["projected"].get("sources") or []:
                if "serviceAccountToken" in src:
                    t = src["serviceAccountToken"]
                    token = self._token(t.get("audience"), t.get("expirationSeconds"))
                    self._write_file(target / t["path"], token, 0o600)
                elif "secret" in src:
                    s = src["secret"]
                    data = self._read("secret", s["name"], bool(s.get("optional")))
                    if data is not None:
                        self._write_items(target, data, s.get("items"), default_mode)
                elif "configMap" in src:
                    s = src["configMap"]
                    data = self._read("configmap", s["name"], bool(s.get("optional")))
                    if data is not None:
                        self._write_items(target, data, s.get("items"), default_mode)
                elif "downwardAPI" in src:
                    for item in src["downwardAPI"].get("items") or []:
                        self._downward(target, item, default_mode)
                else:
                    raise Unsupported(f"projected source {sorted(src)} is not supported by the node agent")
        else:
            kinds = sorted(k for k in vol if k != "name")
            raise Unsupported(f"volume {vol['name']!r} of type {kinds} is not supported by the node agent")

    def _downward(self, target: Path, item: dict[str, Any], mode: int) -> None:
        if "fieldRef" not in item:
            raise Unsupported("downwardAPI items other than fieldRef are not supported by the node agent")
        self._write_file(
            target / item["path"], self._field(item["fieldRef"]["fieldPath"]).encode(), item.get("mode", mode)
        )

    def _prepare(self) -> tuple[list[str], dict[str, str], str]:
        spec = self.pod["spec"]
        c = spec["containers"][0]
        vol_dir = self.dir / "volumes"
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        mapping: dict[str, str] = {}
        for mount in c.get("volumeMounts") or []:
            vol = volumes.get(mount["name"])
            if vol is None:
                raise Unsupported(f"volumeMount {mount['name']!r} names no volume")
            target = vol_dir / vol["name"]
            self._volume(vol, target)
            real = target / mount["subPath"] if mount.get("subPath") else target
            mapping[mount["mountPath"]] = str(real)
        message_path = c.get("terminationMessagePath") or "/dev/termination-log"
        message_file = self.dir / "termination-log"
        message_file.write_bytes(b"")
        mapping[message_path] = str(message_file)

        env: dict[str, str] = {}
        for src in c.get("envFrom") or []:
            prefix = src.get("prefix", "")
            if "secretRef" in src:
                data = self._read("secret", src["secretRef"]["name"], bool(src["secretRef"].get("optional")))
            elif "configMapRef" in src:
                data = self._read(
                    "configmap", src["configMapRef"]["name"], bool(src["configMapRef"].get("optional"))
                )
            else:
                raise Unsupported(f"envFrom {sorted(src)} is not supported by the node agent")
            for k, v in (data or {}).items():
                env[prefix + k] = v.decode(errors="replace")
        for var in c.get("env") or []:
            name = var["name"]
            if "valueFrom" not in var:
                env[name] = expand(var.get("value", ""), env)
                continue
            vf = var["valueFrom"]
            if "secretKeyRef" in vf or "configMapKeyRef" in vf:
                kind, ref = (
                    ("secret", vf["secretKeyRef"])
                    if "secretKeyRef" in vf
                    else ("configmap", vf["configMapKeyRef"])
                )
                data = self._read(kind, ref["name"], bool(ref.get("optional")))
                if data is None or ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    raise ConfigMissing(f'key {ref["key"]!r} not found in {kind} "{ref["name"]}"')
                env[name] = data[ref["key"]].decode(errors="replace")
            elif "fieldRef" in vf:
                env[name] = self._field(vf["fieldRef"]["fieldPath"])
            else:
                raise Unsupported(f"env {name!r}: valueFrom {sorted(vf)} is not supported by the node agent")
        env = {k: rewrite_paths(v, mapping) for k, v in env.items()}

        if SA_MOUNT in mapping and "KUBECONFIG" not in env:
            sa_dir = Path(mapping[SA_MOUNT])
            kubeconfig = self.dir / "kubeconfig"
            ca_file = sa_dir / "ca.crt" if (sa_dir / "ca.crt").exists() else self.dir / "ca.crt"
            if not ca_file.exists():
                ca_file.write_text(self.api.ca_pem)
            cfg = {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {"server": self.api.server, "certificate-authority": str(ca_file)},
                    }
                ],
                "users": [{"name": "sa", "user": {"tokenFile": str(sa_dir / "token")}}],
                "contexts": [
                    {"name": "sa", "context": {"cluster": "local", "user": "sa", "namespace": self.ns}}
                ],
                "current-context": "sa",
            }
            kubeconfig.write_text(yaml.safe_dump(cfg))
            env["KUBECONFIG"] = str(kubeconfig)

        base = {k: os.environ[k] for k in ("HOME", "LANG", "LC_ALL", "TZ") if k in os.environ}
        base["PATH"] = os.pathsep.join(
            [str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]
        )
        tmp = self.dir / "tmp"
        tmp.mkdir(exist_ok=True)
        base["TMPDIR"] = str(tmp)
        base["HOSTNAME"] = self.name
        base["NODEAGENT_POD_DIR"] = str(self.dir)
        full = {**base, **self.agent.node_env(), **env}
        argv = [rewrite_paths(expand(a, full), mapping) for a in [*c["command"], *(c.get("args") or [])]]
        cwd = c.get("workingDir")
        if cwd:
            cwd = rewrite_paths(cwd, mapping)
            if not Path(cwd).is_dir():
                cwd = str(self.dir)
        return argv, full, cwd or str(self.dir)

    # -- the process
    def _run_once(
        self, argv: list[str], env: dict[str, str], cwd: str, restarts: int, last: dict[str, Any] | None
    ) -> tuple[dict[str, Any], str | None]:
        started = now_rfc3339()
        (self.dir / "termination-log").write_bytes(b"")
        log_path = self.dir / "container.log"
        try:
            with log_path.open("ab") as out:
                self.proc = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: killed as one
                    preexec_fn=_pdeathsig if _LIBC is not None else None,  # noqa: PLW1509
                )
        except OSError as err:
            start_error: dict[str, Any] = {"exitCode": 128, "reason": "StartError"}
            start_error.update(message=str(err)[:MAX_MESSAGE], startedAt=started, finishedAt=now_rfc3339())
            return start_error, None
        log(f"{self.ns}/{self.name}: started pid {self.proc.pid}: {argv[:3]}...")
        self._condition("ContainersReady", "True")
        self._condition("Ready", "True")
        running = {"running": {"startedAt": started}}
        self._patch_status(
            {"phase": "Running", "containerStatuses": self._container_status(running, True, restarts, last)}
        )
        started_mono = time.monotonic()
        why: str | None = None
        reason: str | None = None
        while self.proc.poll() is None:
            self.changed.wait(0.2)
            self.changed.clear()
            if self.gone:
                self._kill_now()
                why = "deleted"
                break
            if self.deleting:
                grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
                self._terminate(DEFAULT_GRACE if grace is None else int(grace))
                why = "deleted"
                break
            if self._past_deadline():
                self._terminate(int(self.pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE)))
                why = "deadline"
                break
            oom = (self.pod["metadata"].get("annotations") or {}).get(OOM_KILL_AFTER)
            if oom is not None and time.monotonic() - started_mono >= _seconds(oom):
                self._kill_now()
                reason = "OOMKilled"
                break
        code = self.proc.wait()
        exit_code = 128 - code if code < 0 else code
        if reason is None:
            reason = "Completed" if exit_code == 0 else "Error"
        term: dict[str, Any] = {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": now_rfc3339(),
            "containerID": f"nodeagent://{self.uid}-{self.proc.pid}",
        }
        message = self._message(exit_code)
        if message:
            term["message"] = message
        log(f"{self.ns}/{self.name}: pid {self.proc.pid}: exit {exit_code} ({reason}, {why or 'exited'})")
        return term, why

    def _message(self, exit_code: int) -> str:
        c = self.pod["spec"]["containers"][0]
        try:
            with (self.dir / "termination-log").open("rb") as fh:
                raw = fh.read(MAX_MESSAGE)
        except OSError:
            raw = b""
        if not raw and exit_code != 0 and c.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            try:
                data = (self.dir / "container.log").read_bytes()
            except OSError:
                data = b""
            raw = b"\n".join(data.splitlines()[-FALLBACK_LOG_LINES:])[-FALLBACK_LOG_BYTES:]
        return raw.decode("utf-8", errors="replace")

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def _kill_now(self) -> None:
        self._signal(signal.SIGKILL)

    def _terminate(self, grace: int) -> None:
        """SIGTERM to the process group, SIGKILL when the grace period is over."""
        assert self.proc is not None
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=max(grace, 0))
        except subprocess.TimeoutExpired:
            self._kill_now()

    # -- endings
    def _fail(self, reason: str, message: str) -> None:
        log(f"{self.ns}/{self.name}: failed: {reason}: {message}")
        term = {
            "terminated": {
                "exitCode": 128,
                "reason": reason,
                "message": message[:MAX_MESSAGE],
                "finishedAt": now_rfc3339(),
            }
        }
        self._condition("ContainersReady", "False", "PodFailed")
        self._condition("Ready", "False", "PodFailed")
        self._patch_status(
            {
                "phase": "Failed",
                "reason": reason,
                "message": message,
                "containerStatuses": self._container_status(term, False, 0),
            }
        )
        if self.deleting:
            self._delete()

    def _finish(
        self,
        terminated: dict[str, Any],
        restarts: int,
        last: dict[str, Any] | None,
        reason: str | None,
        deadline: bool = False,
    ) -> None:
        ok = terminated["exitCode"] == 0 and not deadline
        phase = "Succeeded" if ok else "Failed"
        self._condition("ContainersReady", "False", "PodCompleted" if ok else "PodFailed")
        self._condition("Ready", "False", "PodCompleted" if ok else "PodFailed")
        status: dict[str, Any] = {
            "phase": phase,
            "containerStatuses": self._container_status({"terminated": terminated}, False, restarts, last),
        }
        if reason:
            status["reason"] = reason
            status["message"] = DEADLINE_MESSAGE
        self._patch_status(status)
        if self.deleting:
            self._delete()

    def _finish_deleted(self, terminated: dict[str, Any] | None) -> None:
        if terminated is not None:
            self._finish(terminated, 0, None, None)
        else:
            self._fail("Terminated", "deleted before its container started")
        self._delete()

    def _delete(self) -> None:
        if self.gone:
            return
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        code, resp = self.api.call("DELETE", f"/api/v1/namespaces/{self.ns}/pods/{self.name}", body)
        if code not in (200, 202, 404, 409):
            log(f"{self.ns}/{self.name}: delete answered {code}: {str(resp)[:300]}")
        self.gone = True


def _seconds(value: str) -> float:
    try:
        return max(float(value), 0.0)
    except ValueError:
        return 0.0


# --------------------------------------------------------------------------- the agent


class NodeAgent:
    """Registers the Node, keeps its Lease, runs the Pods bound to it."""

    def __init__(self, api: Api, node_name: str, root: Path) -> None:
        self.api = api
        self.node = node_name
        self.root = root
        self.stopping = threading.Event()
        self._workers: dict[str, PodWorker] = {}
        self._finished: set[str] = set()
        self._lock = threading.Lock()

    def node_env(self) -> dict[str, str]:
        try:
            data = json.loads((self.root / "node-env.json").read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def register(self) -> None:
        manifest = node_manifest(self.node)
        code, body = self.api.call("POST", "/api/v1/nodes", manifest)
        if code not in (201, 409):
            raise RuntimeError(f"cannot register Node {self.node}: {code} {body}")
        # the status of a created Node is kept, but a re-registration must refresh it
        self.api.call(
            "PATCH",
            f"/api/v1/nodes/{self.node}/status",
            {"status": manifest["status"]},
            "application/merge-patch+json",
        )
        self._renew_lease()
        log(f"registered Node {self.node}")

    def _renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node}"
        spec = {"holderIdentity": self.node, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now_micro()}
        code, _ = self.api.call("PATCH", path, {"spec": spec}, "application/merge-patch+json")
        if code == 404:
            _, node = self.api.call("GET", f"/api/v1/nodes/{self.node}")
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.node, "uid": node["metadata"]["uid"]}
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.node, "namespace": "kube-node-lease", "ownerReferences": [owner]},
                "spec": spec,
            }
            self.api.call("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease)

    def _lease_loop(self) -> None:
        while not self.stopping.wait(RENEW_SECONDS):
            try:
                self._renew_lease()
            except Exception as err:  # the apiserver may be going away at the end
                log(f"lease renewal failed: {err!r}")

    def done(self, uid: str) -> None:
        with self._lock:
            self._workers.pop(uid, None)
            self._finished.add(uid)

    def _observe(self, event: str, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            worker = self._workers.get(uid)
            if event == "DELETED":
                if worker is not None:
                    worker.mark_gone()
                self._finished.discard(uid)
                return
            if worker is not None:
                worker.update(pod)
                return
            if uid in self._finished or _get(pod, "status", "phase") in ("Succeeded", "Failed"):
                return
            worker = PodWorker(self, pod)
            self._workers[uid] = worker
        worker.thread.start()

    def run(self) -> None:
        self.register()
        threading.Thread(target=self._lease_loop, name="lease", daemon=True).start()
        selector = urllib.parse.quote(f"spec.nodeName={self.node}")
        base = f"/api/v1/pods?fieldSelector={selector}"
        while not self.stopping.is_set():
            try:
                code, body = self.api.call("GET", base)
                if code != 200:
                    raise RuntimeError(f"list pods: {code} {body}")
                rv = body["metadata"]["resourceVersion"]
                for pod in body.get("items") or []:
                    self._observe("MODIFIED", pod)
                while not self.stopping.is_set():
                    for ev in self.api.watch(f"{base}&resourceVersion={rv}"):
                        kind, obj = ev.get("type"), ev.get("object") or {}
                        if kind == "ERROR":
                            raise RuntimeError(f"watch error: {obj.get('message')}")
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if kind in ("ADDED", "MODIFIED", "DELETED"):
                            self._observe(kind, obj)
            except Exception as err:
                if self.stopping.is_set():
                    break
                log(f"pod watch restarts after: {err!r}")
                time.sleep(0.5)

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:
            workers = list(self._workers.values())
        for w in workers:
            w._kill_now()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.cluster.nodeagent", description=__doc__.split("\n")[0])
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--node-name", required=True)
    ap.add_argument("--root", default=None, help="where Pods' files go (default: a new temp dir)")
    args = ap.parse_args(argv)
    root = Path(args.root or tempfile.mkdtemp(prefix="nodeagent-"))
    agent = NodeAgent(Api(args.kubeconfig), args.node_name, root)

    def on_term(signum: int, frame: object) -> None:
        agent.stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        agent.run()
    finally:
        agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
