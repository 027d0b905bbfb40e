"""A moto server for the benchmark: moto's ECS listing made to behave like AWS, then a fleet seeded.

Run as a subprocess (`python -m bench.server --fleet M`); it prints one JSON line
`{"endpoint": ..., "seedSeconds": ...}` when ready and serves until its stdin closes.

What is changed in moto, in this process only, and why (moto 5.2.5):
- `ListTaskDefinitions`: moto ignores `maxResults`, `nextToken` and `sort`, and lists in insertion
  order. Here it pages like AWS (100 by default, 1-100 allowed, opaque `nextToken`) and sorts like
  AWS (family name, then revision; `sort=DESC` reverses both). Without this, a listing of 10,000
  revisions would be one call instead of 100 and the call counts would mean nothing.
- `ListTaskDefinitionFamilies`: moto ignores `status` and pagination. Here `status=ACTIVE` lists the
  families with an ACTIVE revision, `INACTIVE` those without, no status lists all; sorted, paged.
- `DescribeTaskDefinition` of a bare family: moto answers the newest revision even when it is
  INACTIVE; AWS answers the latest ACTIVE revision. Here it does what AWS does.
- `StartImageScan`: moto refuses a second scan of an image on the same calendar day; each
  benchmark run stands for a different day (a daily schedule), so the check is reset per call.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import sys
import threading
import time
from typing import Any

from bench import fleet as fleetmod

_GENERATION = [0]  # bumped on every register/deregister: invalidates the sorted listings
_CACHE: dict[tuple[Any, ...], list[Any]] = {}
_LOCK = threading.Lock()


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _offset(token: str | None) -> int:
    if not token:
        return 0
    return int(json.loads(base64.urlsafe_b64decode(token.encode()))["o"])


def _page_size(value: Any) -> int:
    from moto.ecs.exceptions import InvalidParameterException

    if value is None:
        return 100
    n = int(value)
    if not 1 <= n <= 100:
        raise InvalidParameterException("maxResults must be between 1 and 100")
    return n


def patch_moto() -> None:  # noqa: C901, PLR0915 - one patch per moto behaviour, each explained above it
    """Apply the AWS-like behaviours described in the module docstring."""
    from moto.core.responses import ActionResult
    from moto.ecr.models import ECRBackend
    from moto.ecs.models import EC2ContainerServiceBackend
    from moto.ecs.responses import EC2ContainerServiceResponse

    orig_register = EC2ContainerServiceBackend.register_task_definition
    orig_deregister = EC2ContainerServiceBackend.deregister_task_definition
    orig_describe = EC2ContainerServiceBackend.describe_task_definition

    def register(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            _GENERATION[0] += 1
        return orig_register(self, *args, **kwargs)

    def deregister(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            _GENERATION[0] += 1
        return orig_deregister(self, *args, **kwargs)

    def describe(self: Any, task_definition_str: str) -> Any:
        name = task_definition_str.rsplit("/", maxsplit=1)[-1]
        if ":" not in name:
            revisions = self.task_definitions.get(name) or {}
            active = [r for r, td in revisions.items() if td.status == "ACTIVE"]
            if active:
                return revisions[max(active)]
        return orig_describe(self, task_definition_str)

    def sorted_arns(backend: Any, prefix: str | None, status: str, desc: bool) -> list[str]:
        key = ("tds", id(backend), prefix, status, desc, _GENERATION[0])
        with _LOCK:
            hit = _CACHE.get(key)
        if hit is not None:
            return hit
        rows = [
            (fam, rev, td.arn)
            for fam, revs in backend.task_definitions.items()
            if prefix is None or fam == prefix
            for rev, td in revs.items()
            if td.status == status
        ]
        rows.sort(reverse=desc)
        arns = [arn for _, _, arn in rows]
        with _LOCK:
            _CACHE.clear()
            _CACHE[key] = arns
        return arns

    def sorted_families(backend: Any, prefix: str | None, status: str | None) -> list[str]:
        key = ("fams", id(backend), prefix, status, _GENERATION[0])
        with _LOCK:
            hit = _CACHE.get(key)
        if hit is not None:
            return hit
        out = []
        for fam, revs in backend.task_definitions.items():
            if prefix and not fam.startswith(prefix):
                continue
            has_active = any(td.status == "ACTIVE" for td in revs.values())
            if status == "ACTIVE" and not has_active:
                continue
            if status == "INACTIVE" and has_active:
                continue
            out.append(fam)
        out.sort()
        with _LOCK:
            _CACHE[key] = out
        return out

    def list_task_definitions(self: Any) -> Any:
        size = _page_size(self._get_param("maxResults"))
        start = _offset(self._get_param("nextToken"))
        arns = sorted_arns(
            self.ecs_backend,
            self._get_param("familyPrefix"),
            self._get_param("status", "ACTIVE"),
            self._get_param("sort", "ASC") == "DESC",
        )
        body: dict[str, Any] = {"taskDefinitionArns": arns[start : start + size]}
        if start + size < len(arns):
            body["nextToken"] = _token(start + size)
        return ActionResult(body)

    def list_task_definition_families(self: Any) -> Any:
        size = _page_size(self._get_param("maxResults"))
        start = _offset(self._get_param("nextToken"))
        names = sorted_families(self.ecs_backend, self._get_param("familyPrefix"), self._get_param("status"))
        body: dict[str, Any] = {"families": names[start : start + size]}
        if start + size < len(names):
            body["nextToken"] = _token(start + size)
        return ActionResult(body)

    orig_start = ECRBackend.start_image_scan

    def start_image_scan(self: Any, registry_id: str, repository_name: str, image_id: dict[str, str]) -> Any:
        repo = self._get_repository(repository_name, registry_id)
        repo._get_image(image_id.get("imageTag"), image_id.get("imageDigest")).last_scan = None
        return orig_start(self, registry_id, repository_name, image_id)

    EC2ContainerServiceBackend.register_task_definition = register  # type: ignore[method-assign]
    EC2ContainerServiceBackend.deregister_task_definition = deregister  # type: ignore[method-assign]
    EC2ContainerServiceBackend.describe_task_definition = describe  # type: ignore[method-assign]
    EC2ContainerServiceResponse.list_task_definitions = list_task_definitions  # type: ignore[method-assign]
    EC2ContainerServiceResponse.list_task_definition_families = list_task_definition_families  # type: ignore[method-assign]
    ECRBackend.start_image_scan = start_image_scan  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    """Start, seed, announce, serve until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fleet", choices=sorted(fleetmod.FLEETS), default="S")
    parser.add_argument("--seed", type=int, default=fleetmod.DEFAULT_SEED)
    parser.add_argument("--seed-via", choices=["backend", "http"], default="backend")
    parser.add_argument("--scan-type", choices=["ENHANCED", "BASIC"], default="ENHANCED")
    args = parser.parse_args(argv)

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    patch_moto()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    size = fleetmod.FLEETS[args.fleet]
    started = time.perf_counter()
    if args.seed_via == "http":
        seeded = fleetmod.seed_http(endpoint, size, args.seed, scan_type=args.scan_type)
    else:
        seeded = fleetmod.seed_backend(size, args.seed, scan_type=args.scan_type)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {"endpoint": endpoint, "seedSeconds": round(seconds, 2), "seedVia": args.seed_via, **seeded}
        ),
        flush=True,
    )
    sys.stdin.read()  # serve until the parent closes our stdin (or exits)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
