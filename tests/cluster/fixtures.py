"""pytest plugin: a real local kube-apiserver for e2e tests.

Registered in tests/conftest.py with ``pytest_plugins = ["tests.cluster.fixtures"]``.

Fixtures
--------
``kube_cluster`` (session)  the running :class:`~tests.cluster.localcluster.LocalCluster`
                            with test identities ``alice`` and ``bob`` (no RBAC rights).
``kubectl`` (session)       a :class:`Kubectl` helper: ``kubectl("get", "ns")`` runs
                            ``.tools/bin/kubectl`` against the cluster as admin,
                            ``kubectl(..., user="alice")`` as a test identity.
``kube_namespace``          a fresh namespace per test (its name); once the workloads run, it
                            also waits for the namespace's ``default`` ServiceAccount.
``kube_workloads`` (session) the same cluster as ``kube_cluster``, with kube-controller-manager,
                            kube-scheduler and the node agent started on it (lazily, at the
                            first test that asks; about 5 s): Jobs run, Pods run as local
                            processes (see ``tests/cluster/nodeagent.py``).

Binaries: when the collected tests use ``kube_cluster``, missing binaries
(kube-apiserver and etcd builds, kubectl; kube-controller-manager and
kube-scheduler when a test uses ``kube_workloads``) are provided once after
collection, outside any per-test timeout, with progress on the terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster import build, get_tools
from tests.cluster.localcluster import ADMIN, LocalCluster

TEST_USERS = ("alice", "bob")

_build_error_key = pytest.StashKey[str]()
_startup_key = pytest.StashKey[str]()


def _uses_cluster(item: pytest.Item) -> bool:
    return "kube_cluster" in getattr(item, "fixturenames", ())


def _uses_workloads(item: pytest.Item) -> bool:
    return "kube_workloads" in getattr(item, "fixturenames", ())


@contextlib.contextmanager
def _uncaptured(config: pytest.Config) -> Iterator[None]:
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        yield
    else:
        with capman.global_and_fixture_disabled():
            yield


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or not any(_uses_cluster(i) for i in session.items):
        return
    workloads = any(_uses_workloads(i) for i in session.items)
    if build.binaries_ready(workloads=workloads) and get_tools.installed():
        return
    reporter = session.config.pluginmanager.getplugin("terminalreporter")

    def progress(msg: str) -> None:
        line = f"[cluster-bins] {msg}"
        if reporter is not None:
            reporter.write_line(line)
        else:
            print(line, flush=True)

    with _uncaptured(session.config):
        try:
            t0 = time.monotonic()
            build.ensure_all(progress, workloads=workloads)
            get_tools.install()
            progress(f"binaries ready in {time.monotonic() - t0:.0f} s")
        except Exception as err:
            session.config.stash[_build_error_key] = f"{type(err).__name__}: {err}"


@pytest.fixture(scope="session")
def kube_cluster(pytestconfig: pytest.Config) -> Iterator[LocalCluster]:
    """A real kube-apiserver + etcd for the whole session (torn down at its end)."""
    err = pytestconfig.stash.get(_build_error_key, None)
    if err:
        pytest.fail(f"the local cluster's binaries could not be provided: {err}", pytrace=False)

    def progress(msg: str) -> None:
        with _uncaptured(pytestconfig):
            print(f"[localcluster] {msg}", flush=True)

    cluster = LocalCluster(users=TEST_USERS, progress=progress)
    try:
        cluster.start()
    except Exception as exc:
        pytest.fail(f"the local cluster did not start: {exc}", pytrace=False)
    pytestconfig.stash[_startup_key] = (
        f"local kube-apiserver {build.kubernetes_version()} at {cluster.server}: "
        f"started in {cluster.startup_seconds:.1f} s"
    )
    try:
        yield cluster
    finally:
        cluster.stop()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    line = config.stash.get(_startup_key, None)
    if line:
        terminalreporter.write_line(line)


class KubectlError(AssertionError):
    pass


class Kubectl:
    """Runs kubectl against a LocalCluster with the kubeconfig of one identity."""

    def __init__(self, binary: str, cluster: LocalCluster) -> None:
        self.binary = binary
        self.cluster = cluster

    def __call__(
        self,
        *args: str,
        user: str = ADMIN,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [
            self.binary,
            f"--kubeconfig={self.cluster.kubeconfig_for(user)}",
            f"--cache-dir={self.cluster.workdir}/kubectl-cache",
            *args,
        ]
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        res = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
        if check and res.returncode != 0:
            raise KubectlError(
                f"kubectl {' '.join(args)} (as {user}) failed with {res.returncode}:\n"
                f"{res.stderr}{res.stdout}"
            )
        return res

    def json(self, *args: str, user: str = ADMIN) -> Any:
        """Run with ``-o json`` and decode the output."""
        return json.loads(self(*args, "-o", "json", user=user).stdout)


@pytest.fixture(scope="session")
def kubectl(kube_cluster: LocalCluster) -> Kubectl:
    paths = get_tools.install()
    return Kubectl(str(paths["kubectl"]), kube_cluster)


@pytest.fixture
def kube_namespace(kube_cluster: LocalCluster) -> str:
    """A fresh namespace for one test (not deleted: tests may look at it after a failure)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    status, body = kube_cluster.request(
        "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    assert status == 201, body
    if kube_cluster.workloads_running:
        # the ServiceAccount admission plugin refuses Pods until the controller made `default`
        deadline = time.monotonic() + 60
        while kube_cluster.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")[0] != 200:
            assert time.monotonic() < deadline, f"no default ServiceAccount in {name} after 60 s"
            time.sleep(0.1)
    return name


@pytest.fixture(scope="session")
def kube_workloads(kube_cluster: LocalCluster, pytestconfig: pytest.Config) -> LocalCluster:
    """``kube_cluster`` with controller-manager, scheduler and the node agent running (started once).

    Session-scoped, so pytest sets it up before any ``kube_namespace`` of the same test, which
    then waits for the namespace's ``default`` ServiceAccount (Pods need it).
    """
    if not kube_cluster.workloads_running:
        try:
            kube_cluster.start_workloads()
        except Exception as exc:
            pytest.fail(f"the workloads mode did not start: {exc}", pytrace=False)
        line = pytestconfig.stash.get(_startup_key, "")
        pytestconfig.stash[_startup_key] = (
            f"{line}; workloads (controller-manager, scheduler, node agent) started in "
            f"{kube_cluster.workloads_startup_seconds:.1f} s"
        )
    return kube_cluster
