"""ECS ListTasks and DescribeTasks of a running fleet, emulated in the calling process (issue #12).

moto's tasks carry no `imageDigest` (ECS records it once a container has pulled its image), list
only a task's first container, and starting thousands of them through moto takes minutes; so, as
`bench/inspector_fake.py` does for Inspector, a `before-call` handler registered last on ECS
clients answers these two operations from a deterministic running fleet, inside botocore (the
latency model, registered first, has already accounted the call). Everything else (ListClusters,
DescribeTaskDefinition, ECR, S3) is moto. It is strict, like the Inspector emulation: the request
is checked against the operation's input shape (and the limits botocore does not check, e.g. at most
100 tasks per DescribeTasks, maxResults 1..100), the answer against the output shape; ListTasks
pages by `maxResults` with an opaque `nextToken` bound to the request.

The running fleet (`running_fleet`): `tasks` tasks spread over `clusters` clusters `bench-<k>`,
round-robin over every family of the fleet (all environments: include/exclude decide what is
kept), each task running the family's latest ACTIVE revision; 80% of the families are services
(`group: service:<family>`), the rest RunTask / scheduled (`family:<family>`). Containers carry the
digest of their image from the catalog; in every 10th family the app container still runs the digest
its tag pointed at before the last push (the digest of the next tag of the same repository): the
tag drifted. External images carry a made-up digest (never scanned).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from botocore.awsrequest import AWSResponse, HTTPHeaders

from bench.fleet import ACCOUNT, REGION, REGISTRY, Family, FleetSize, families, family, image
from bench.inspector_fake import strict_errors

DRIFT_EVERY = 10  # every 10th family: the app tag was pushed again, its tasks still run the old digest
SERVICE_SHARE = 0.8


def cluster_arn(k: int) -> str:
    """The ARN of benchmark cluster k."""
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/bench-{k}"


@dataclass(frozen=True)
class RunningTask:
    """One running task: where, which revision, which images with which digests."""

    arn: str
    cluster: int
    family: str
    td_arn: str
    group: str
    containers: tuple[tuple[str, str, str], ...]  # name, image, digest


def _external_digest(uri: str) -> str:
    return "sha256:" + hashlib.sha256(uri.encode()).hexdigest()


def _containers(fam: Family, size: FleetSize, seed: int) -> tuple[tuple[str, str, str], ...]:
    """(name, image, digest) of the containers a task of this family runs."""
    out = []
    for name, uri in zip(("app", "sidecar", "init"), fam.images(size, seed, size.revisions), strict=True):
        if not uri.startswith(REGISTRY + "/"):
            out.append((name, uri, _external_digest(uri)))
            continue
        repo, _, tag = uri[len(REGISTRY) + 1 :].rpartition(":")
        t = int(tag.split(".")[1])  # tag_of: 1.t.0, 2.t.0, 0.t.1
        if name == "app" and fam.index % DRIFT_EVERY == 0:
            # the tag moved on: the task runs what it pointed at before (the next tag's image)
            t = (t + 1) % size.tags_per_repo
        out.append((name, uri, image(repo, t, seed).digest))
    return tuple(out)


def task_of(size: FleetSize, seed: int, n: int, clusters: int, fam: Family | None = None) -> RunningTask:
    """Running task n of the fleet (tasks go round-robin over every family)."""
    fam = fam or family(size, seed, n % size.families)
    group = f"service:{fam.name}" if (fam.index % 10) < SERVICE_SHARE * 10 else f"family:{fam.name}"
    k = fam.index % clusters
    return RunningTask(
        arn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/bench-{k}/{n:032x}",
        cluster=k,
        family=fam.name,
        td_arn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{fam.name}:{size.revisions}",
        group=group,
        containers=_containers(fam, size, seed),
    )


def running_fleet(size: FleetSize, seed: int, tasks: int, clusters: int) -> list[RunningTask]:
    """The fleet's running tasks (pure, deterministic; for the bounds, in the driver's process)."""
    fams = list(families(size, seed))
    return [task_of(size, seed, n, clusters, fams[n % len(fams)]) for n in range(tasks)]


def bounds(tasks: list[RunningTask], clusters: int) -> dict[str, int]:
    """The ECS part of the lower bound: ListClusters, ListTasks pages and DescribeTasks by 100."""
    per_cluster = Counter(t.cluster for t in tasks)
    pages = sum(max(1, math.ceil(per_cluster.get(k, 0) / 100)) for k in range(clusters))
    return {
        "ecs:ListClusters": 1,
        "ecs:ListTasks": pages,
        "ecs:DescribeTasks": sum(math.ceil(n / 100) for n in per_cluster.values()),
    }


class EcsRunningFake:
    """Answers ListTasks / DescribeTasks of ECS clients from a running fleet, computing each task when
    it is asked for (the pipeline's process holds task numbers, not tasks: its memory is measured)."""

    def __init__(self, size: FleetSize, seed: int, tasks: int, clusters: int) -> None:
        self._size, self._seed, self._clusters = size, seed, clusters
        self._by_cluster: dict[str, list[int]] = defaultdict(list)
        for n in range(tasks):
            self._by_cluster[cluster_arn((n % size.families) % clusters)].append(n)
        self._tasks = tasks
        self._lock = threading.Lock()
        self.cpu_seconds = 0.0
        self.calls: Counter[str] = Counter()
        self.rejected: list[str] = []

    def attach(self, client: Any) -> None:
        """Answer ECS ListTasks / DescribeTasks of this client (registered last: accounted first)."""
        if client.meta.service_model.service_name == "ecs":
            client.meta.events.register_last("before-call.ecs.ListTasks", self._answer)
            client.meta.events.register_last("before-call.ecs.DescribeTasks", self._answer)

    def _answer(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        started = time.thread_time()
        try:
            raw = params.get("body") or b"{}"
            body = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            with self._lock:
                self.calls[model.name] += 1
            errors = strict_errors(body, model.input_shape) + self._limits(model.name, body)
            if errors:
                with self._lock:
                    self.rejected.append(f"{model.name}: {'; '.join(errors)}")
                return _error("InvalidParameterException", "; ".join(errors))
            out = self._list(body) if model.name == "ListTasks" else self._describe(body)
            errors = strict_errors(out, model.output_shape)
            if errors:  # a bug in this emulation, not in the caller
                raise AssertionError(f"emulated {model.name} answer breaks the model: {errors}")
            out["ResponseMetadata"] = {"HTTPStatusCode": 200, "HTTPHeaders": {}, "RetryAttempts": 0}
            return AWSResponse(f"https://ecs.{REGION}.amazonaws.com", 200, HTTPHeaders(), None), out
        finally:
            with self._lock:
                self.cpu_seconds += time.thread_time() - started

    @staticmethod
    def _limits(op: str, body: dict[str, Any]) -> list[str]:
        if op == "ListTasks" and not 1 <= int(body.get("maxResults", 100)) <= 100:
            return ["maxResults must be 1..100"]
        if op == "DescribeTasks" and not 1 <= len(body.get("tasks", [])) <= 100:
            return ["tasks: 1..100 task ARNs"]
        return []

    def _cluster(self, body: dict[str, Any]) -> list[int]:
        name = str(body.get("cluster", "default"))
        arn = name if name.startswith("arn:") else f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{name}"
        return self._by_cluster.get(arn, [])

    def _task(self, n: int) -> RunningTask:
        return task_of(self._size, self._seed, n, self._clusters)

    def _list(self, body: dict[str, Any]) -> dict[str, Any]:
        tasks = (
            [self._task(n) for n in self._cluster(body)] if body.get("serviceName") else self._cluster(body)
        )
        if body.get("desiredStatus", "RUNNING") != "RUNNING":
            tasks = []
        if body.get("serviceName"):
            tasks = [
                t for t in tasks if isinstance(t, RunningTask) and t.group == f"service:{body['serviceName']}"
            ]
        query = hashlib.sha256(
            json.dumps({k: v for k, v in body.items() if k != "nextToken"}).encode()
        ).hexdigest()
        start = 0
        if body.get("nextToken"):
            token = json.loads(base64.urlsafe_b64decode(str(body["nextToken"]).encode()))
            if token.get("q") != query:
                raise AssertionError("nextToken of another request")
            start = int(token["o"])
        size = int(body.get("maxResults", 100))
        page = [t if isinstance(t, RunningTask) else self._task(t) for t in tasks[start : start + size]]
        out: dict[str, Any] = {"taskArns": [t.arn for t in page]}
        if start + size < len(tasks):
            out["nextToken"] = base64.urlsafe_b64encode(
                json.dumps({"o": start + size, "q": query}).encode()
            ).decode()
        return out

    def _describe(self, body: dict[str, Any]) -> dict[str, Any]:
        found, failures = [], []
        for arn in body.get("tasks", []):
            tail = str(arn).rsplit("/", 1)[-1]
            n = int(tail, 16) if len(tail) == 32 and all(c in "0123456789abcdef" for c in tail) else -1
            t = self._task(n) if 0 <= n < self._tasks else None
            if t is None or t.arn != arn:
                failures.append({"arn": arn, "reason": "MISSING"})
                continue
            found.append(
                {
                    "taskArn": t.arn,
                    "clusterArn": cluster_arn(t.cluster),
                    "taskDefinitionArn": t.td_arn,
                    "group": t.group,
                    "launchType": "FARGATE",
                    "lastStatus": "RUNNING",
                    "desiredStatus": "RUNNING",
                    "containers": [
                        {"name": n, "image": i, "imageDigest": d, "lastStatus": "RUNNING", "taskArn": t.arn}
                        for n, i, d in t.containers
                    ],
                }
            )
        return {"tasks": found, "failures": failures}


def _error(code: str, message: str) -> tuple[AWSResponse, dict[str, Any]]:
    parsed = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 400, "HTTPHeaders": {}, "RetryAttempts": 0},
    }
    return AWSResponse(f"https://ecs.{REGION}.amazonaws.com", 400, HTTPHeaders(), None), parsed
