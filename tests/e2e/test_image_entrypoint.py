"""What the image does, without Docker: build the wheel, install it the way the Dockerfile does,
run the ENTRYPOINT against the local API server.

The Dockerfile's builder stage installs requirements/runtime.lock (binary wheels only) into a
fresh venv and then the project's wheel without dependencies; the final stage runs
`ecs-scan-operator operator` as uid 65532 with HOME=/tmp on a read-only root filesystem. Here
the same two installs go into a clean venv (from PyPI, so this needs the package index), and
the entrypoint runs with an empty HOME and the working directory made read-only, against the
local kube-apiserver, until kopf's liveness endpoint answers and a ScanPolicy gets a status.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.fixtures import Kubectl
from tests.cluster.localcluster import LocalCluster
from tests.support.processes import background_process

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ["ecs-scan-operator", "operator"]  # the Dockerfile's ENTRYPOINT (a unit test pins it there)


def _run(cmd: list[str], *, timeout: float = 600, **kw: Any) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    assert res.returncode == 0, (
        f"{shlex.join(cmd)} failed ({res.returncode}):\n{res.stderr[-4000:]}{res.stdout[-2000:]}"
    )
    return res


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean venv with exactly runtime.lock + the project's wheel, as the image's /opt/venv."""
    work = tmp_path_factory.mktemp("image")
    dist = work / "dist"
    # --no-isolation with the dev venv's pinned backend (setuptools, wheel), as the Dockerfile does.
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)])
    (wheel,) = dist.glob("ecs_scan_operator-*.whl")
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run(
        [*pip, "install", "--quiet", "--only-binary=:all:", "-r", str(ROOT / "requirements" / "runtime.lock")]
    )
    _run([*pip, "install", "--quiet", "--no-deps", str(wheel)])
    _run([*pip, "check"])
    return venv


def test_wheel_installs_with_only_the_runtime_pins(image_venv: Path) -> None:
    """Everything the package imports at runtime is in runtime.lock; no test or lint tool is."""
    python = str(image_venv / "bin" / "python")
    modules = [
        "ecs_scan_operator.cli",
        "ecs_scan_operator.controller",
        "ecs_scan_operator.settings",
        "ecs_scan_operator.bootstrap",
        "ecs_scan_operator.adapters.jira",
    ]
    code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)\nprint('ok')"
    assert _run([python, "-c", code, *modules]).stdout.strip() == "ok"
    frozen = _run([python, "-m", "pip", "freeze"]).stdout
    names = {
        re.split(r"[=@ ]", line, maxsplit=1)[0].lower().replace("_", "-") for line in frozen.splitlines()
    }
    assert "ecs-scan-operator" in names
    assert not names & {
        "pytest",
        "moto",
        "ruff",
        "mypy",
        "hypothesis",
        "kubernetes-validate",
        "setuptools",
    }, names


def test_console_script_help(image_venv: Path) -> None:
    """`ecs-scan-operator --help` and the entrypoint's own --help run from the clean venv."""
    exe = str(image_venv / "bin" / ENTRYPOINT[0])
    out = _run([exe, "--help"]).stdout
    assert "operator" in out and "validate" in out and "run" in out
    assert "usage" in _run([exe, *ENTRYPOINT[1:], "--help"]).stdout.lower()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, ""
    except OSError:
        return 0, ""


def _process(
    cmd: list[str], env: dict[str, str], cwd: Path, log: Path
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    return background_process(cmd, env, log, cwd=cwd)


def test_entrypoint_runs_against_the_api_server(
    image_venv: Path, kube_cluster: LocalCluster, kubectl: Kubectl, tmp_path: Path
) -> None:
    """The ENTRYPOINT starts, answers on kopf's liveness endpoint and gives a policy its status.

    As in the image: the venv's bin first on PATH, HOME=/tmp-like empty dir, no write access to
    the working directory, only ECS_SCAN_* settings (as the chart sets them) and a kubeconfig in
    place of the in-cluster ServiceAccount token.
    """
    kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "helm" / "ecs-scan-operator" / "crds")
    )
    kubectl("wait", "--for=condition=Established", "crd/scanpolicies.ecsscan.io", "--timeout=120s")
    ns = f"img-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", ns)
    policy = yaml.safe_load((ROOT / "examples" / "scanpolicy.yaml").read_text())
    policy["metadata"] = {"name": "from-the-image", "namespace": ns}
    policy["spec"]["schedule"] = "0 0 1 1 *"  # far away: this test makes no AWS call
    policy["spec"]["timeZone"] = "UTC"
    kubectl("apply", "-f", "-", input=yaml.safe_dump(policy))

    home = tmp_path / "home"
    home.mkdir()
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    health, metrics = _free_port(), _free_port()
    env = {
        "PATH": f"{image_venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(home),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "KUBECONFIG": kube_cluster.kubeconfig,
        "ECS_SCAN_WATCH_NAMESPACES": ns,
        "ECS_SCAN_HEALTH_PORT": str(health),
        "ECS_SCAN_METRICS_PORT": str(metrics),
        "ECS_SCAN_LOG_FORMAT": "json",
        "POD_NAME": "image-entrypoint-test",
        "POD_NAMESPACE": ns,
        "AWS_ACCESS_KEY_ID": "unused",
        "AWS_SECRET_ACCESS_KEY": "unused",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing may reach AWS in this test
    }
    log = tmp_path / "operator.log"
    try:
        with _process(ENTRYPOINT, env, readonly, log) as proc:
            deadline = time.monotonic() + 90
            status: dict[str, Any] = {}
            while time.monotonic() < deadline:
                assert proc.poll() is None, (
                    f"the entrypoint exited with {proc.returncode}:\n{log.read_text()[-4000:]}"
                )
                code, _ = _get(f"http://127.0.0.1:{health}/healthz")
                status = kubectl.json("get", "scanpolicy", "from-the-image", "-n", ns).get("status") or {}
                ready = [c for c in status.get("conditions", []) if c.get("type") == "Ready"]
                if code == 200 and ready:
                    break
                time.sleep(0.5)
            else:
                pytest.fail(
                    f"no liveness 200 and Ready condition within 90 s; status={status}\n"
                    + log.read_text()[-4000:]
                )
            assert ready[0]["reason"] == "Scheduled", ready
            assert status["nextScheduleTime"].endswith("-01-01T00:00:00Z"), status
            code, body = _get(f"http://127.0.0.1:{metrics}/metrics")
            assert code == 200 and "# TYPE" in body
            os.killpg(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, log.read_text()[-4000:]
    finally:
        readonly.chmod(0o755)
    text = log.read_text()
    assert "Traceback" not in text, text[-4000:]
    assert not list(readonly.iterdir()), "the operator wrote into its working directory"
