"""Fleet XL (issue 16): one ScanPolicy over an AWS Organization, 50 accounts x 2 regions x 400 families.

`python -m bench.org` (`make bench-org`) runs the real pipeline (`run_policy` with the real adapters
and `build_ports`) once per scenario, each in a fresh process (peak RSS is that run's own), and
writes bench/results/org-xl.json and the "Fleet XL" section of bench/RESULTS.md.

AWS is emulated in the pipeline process, as `bench/inspector_fake.py` emulates Inspector: a
`before-call` handler registered last on every client answers with the parsed response, so no
HTTP request is made, and `bench/model.py` (registered first) accounts each call's latency and
rate limit on per-thread virtual clocks (nothing sleeps). Here the model's token buckets are per
(account, region) - each is its own AWS rate-limit domain - and the account of a call is the one
its credentials belong to: the emulated STS hands out access keys that name the role's account,
as AWS's do (the key identifies the account). What is emulated, each request checked against the
service model with botocore's ParamValidator plus the limits it leaves to the server
(`inspector_fake.strict_errors`), each answer against the output shape:

- sts AssumeRole (the account's role; the denying account's role is refused with 403 AccessDenied);
- organizations ListAccounts (pages of 20) through the organization role;
- per (account, region): ecs ListTaskDefinitionFamilies (pages of 100) and DescribeTaskDefinition,
  ecr GetRegistryScanningConfiguration (ENHANCED) and DescribeImages;
- inspector2 ListCoverage and ListFindings in the delegated administrator's account only (a call
  from a member role is counted as a fault), filters evaluated as AWS documents them;
  SearchVulnerabilities (KEV data, one CVE a call) as bench/inspector_fake.py answers it;
- s3 PutObject / GetObject / DeleteObject with If-Match / If-None-Match (run lease, state, report).

The fleet is a pure function of (account, region, family): account i has families svc-000..399
in each region, family n runs `<account>.dkr.ecr.<region>.amazonaws.com/app-<n mod 20>:v<n div 20
mod 2>` (40 ECR images per (account, region), 4,000 in all, each used by 10 families) plus one
public sidecar image; about 80% of the images have 1-4 findings.

The bound: max over the (account, region) pairs of that pair's own rate-limit bound (ECS
task-definition reads, burst 50, 20/s: (calls - 50) / 20 + one latency); the sum over pairs is
what a run reading the pairs one after the other could not beat.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.awsrequest import AWSResponse, HTTPHeaders

from bench.inspector_fake import (
    CVE_ID,
    FakeValidationError,
    _matches,
    _offset,
    _query_hash,
    _token,
    strict_errors,
    vulnerability,
)
from bench.model import (
    DEFAULT_BUCKETS,
    DEFAULT_LATENCY,
    Bucket,
    BucketSpec,
    Model,
    install_executor_accounting,
)
from bench.ours import RssProbe, rusage
from bench.run import _git_commit

ROOT = Path(__file__).resolve().parents[1]
RESULTS_JSON = ROOT / "bench" / "results" / "org-xl.json"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
SECTION = "## Fleet XL: one policy over an AWS Organization (issue 16)"

ACCOUNTS = 50
REGIONS = ("us-east-1", "eu-west-1")
FAMILIES = 400
REPOS = 20
TAGS = 2
ORG_ACCOUNT = "100000000001"
ADMIN_ACCOUNT = "100000000002"
OPERATOR = "operator"  # the operator's own identity (S3 reports)
PATTERN = "arn:aws:iam::{account}:role/ecs-scan-read"
ORG_ROLE = f"arn:aws:iam::{ORG_ACCOUNT}:role/ecs-scan-org-read"
ADMIN_ROLE = f"arn:aws:iam::{ADMIN_ACCOUNT}:role/ecs-scan-inspector-read"
BUCKET = "org-reports"
SIDECAR = "public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0"
DENY_INDEX = 17
KEY_PREFIX = "ASIAFAKE"
FIRST_SEEN = datetime(2026, 10, 1, 4, 0, tzinfo=UTC)
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW")
FINDINGS_PAGE_CAP = 25
ECS_BUCKET = next(b for b in DEFAULT_BUCKETS if b.name == "ecs-task-definition-read")


def account_id(i: int) -> str:
    """The i-th member account."""
    return f"{200000000000 + i:012d}"


def digest_of(account: str, region: str, repo: str, tag: str) -> str:
    """The image digest of a tag (deterministic)."""
    return "sha256:" + hashlib.sha256(f"{account}/{region}/{repo}:{tag}".encode()).hexdigest()


def family_image(account: str, region: str, n: int) -> tuple[str, str]:
    """(repository, tag) of family n's app container."""
    return f"app-{n % REPOS}", f"v{(n // REPOS) % TAGS}"


def findings_count(digest: str) -> int:
    """0 to 4 findings; 0 for about a fifth of the images."""
    return int(digest[-2:], 16) % 5


# --------------------------------------------------------------------------- the scoped model


def scope_of(request_signer: Any) -> tuple[str, str]:
    """(account, region) of a call: the account its credentials belong to (the emulated keys say)."""
    creds = request_signer._credentials.get_frozen_credentials()
    key = str(creds.access_key)
    account = key[len(KEY_PREFIX) :] if key.startswith(KEY_PREFIX) else OPERATOR
    return account, str(request_signer.region_name)


class ScopedModel(Model):
    """bench/model.py's Model with one set of buckets per (account, region)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._spec_by_op: dict[str, BucketSpec] = {op: b for b in self.buckets for op in b.operations}
        self.scoped: dict[tuple[str, str, str], Bucket] = {}
        self.scope_calls: dict[tuple[str, str], Counter[str]] = {}

    def _before_call(self, model: Any, request_signer: Any = None, **_: Any) -> None:
        op = f"{model.service_model.service_name}:{model.name}"
        self.call_in(op, scope_of(request_signer) if request_signer is not None else (OPERATOR, ""))

    def call_in(self, op: str, scope: tuple[str, str]) -> None:
        """Account one call of `op` in the rate-limit domain `scope`."""
        start = self.now()
        spec = self._spec_by_op.get(op)
        with self._lock:
            self.scope_calls.setdefault(scope, Counter())[op] += 1
            bucket = None
            if spec is not None:
                bucket = self.scoped.get((spec.name, *scope))
                if bucket is None:
                    bucket = self.scoped[(spec.name, *scope)] = Bucket(spec)
        grant = bucket.take(start) if bucket else start
        with self._lock:
            stats = self.ops[op]
            stats.calls += 1
            stats.waited += grant - start
            pool = getattr(self._local, "pool", None)
            if pool is not None:
                self._pool_services.setdefault(pool, Counter())[op.split(":", 1)[0]] += 1
        self._advance(op.split(":", 1)[0], grant + self.latency_by_op.get(op, self.latency))

    def pair_bounds(self) -> dict[tuple[str, str], float]:
        """Each (account, region)'s own rate-limit bound on its calls (the ECS bucket binds)."""
        out = {}
        for scope, calls in self.scope_calls.items():
            worst = 0.0
            for b in self.buckets:
                n = sum(calls.get(op, 0) for op in b.operations)
                worst = max(worst, (n - b.burst) / b.rate)
            # Member accounts' regional pairs only (STS is global; the operator, organization and
            # Inspector administrator accounts are not (account, region) pairs of the fleet).
            if scope[0] not in (OPERATOR, ADMIN_ACCOUNT, ORG_ACCOUNT) and scope[1] in REGIONS:
                out[scope] = worst + self.latency
        return out


# --------------------------------------------------------------------------- the emulation


def _ok(parsed: dict[str, Any], status: int = 200) -> tuple[AWSResponse, dict[str, Any]]:
    parsed["ResponseMetadata"] = {"HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0}
    return AWSResponse("https://emulated.invalid", status, HTTPHeaders(), None), parsed


def _error(status: int, code: str, message: str) -> tuple[AWSResponse, dict[str, Any]]:
    return _ok({"Error": {"Code": code, "Message": message}}, status)


@dataclass
class _Object:
    etag: str
    body: bytes  # kept for the state and lease objects only (report objects: b"")


class OrgFake:
    """The AWS of Fleet XL, answering inside botocore (see the module docstring)."""

    def __init__(self, model: ScopedModel, *, deny: str | None) -> None:
        self._model = model
        self._deny = deny
        self._lock = threading.Lock()
        self._local = threading.local()
        self._objects: dict[str, _Object] = {}
        self.cpu_seconds = 0.0
        self.rejected: list[str] = []
        self.faults: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def attach(self, client: Any) -> None:
        """Answer this client's calls (registered last: the model has accounted the call)."""
        client.meta.events.register("before-parameter-build.*.*", self._params)
        client.meta.events.register_last("before-call.*.*", self._answer)

    def attach_session(self, session: Any) -> None:
        """The base session: its STS clients (botocore's assume-role fetcher) get the handlers too."""
        session.register("before-parameter-build.sts.*", self._params)
        session.get_component("event_emitter").register_last("before-call.sts.*", self._answer)

    def _params(self, params: dict[str, Any], **_: Any) -> None:
        self._local.params = dict(params)

    def _answer(
        self, model: Any, params: dict[str, Any], request_signer: Any = None, **_: Any
    ) -> tuple[AWSResponse, dict[str, Any]]:
        started = time.thread_time()
        try:
            return self._dispatch(model, params, request_signer)
        finally:
            with self._lock:
                self.cpu_seconds += time.thread_time() - started

    def _dispatch(  # noqa: PLR0911 - one return per kind of answer
        self, model: Any, params: dict[str, Any], request_signer: Any
    ) -> tuple[AWSResponse, dict[str, Any]]:
        service, op = model.service_model.service_name, model.name
        with self._lock:
            self.calls[f"{service}:{op}"] += 1
        if service == "sts":
            return self._assume_role(self._local.params)
        scope = scope_of(request_signer)
        if service == "s3":
            return self._s3(op, self._local.params)
        raw = params.get("body") or b"{}"
        body = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        errors = strict_errors(body, model.input_shape)
        if errors:
            with self._lock:
                self.rejected.append(f"{op}: {'; '.join(errors)}")
            return _error(400, "ValidationException", "; ".join(errors))
        handler = getattr(self, f"_{service}_{op}", None)
        if handler is None:
            return _error(400, "ValidationException", f"{service}:{op} is not emulated by the benchmark")
        try:
            out = handler(body, *scope)
        except FakeValidationError as exc:
            with self._lock:
                self.rejected.append(f"{op}: {exc}")
            return _error(400, "ValidationException", str(exc))
        if isinstance(out, tuple):
            return out
        errors = strict_errors(out, model.output_shape)
        if errors:  # a bug in this emulation, not in the caller
            raise AssertionError(f"emulated {op} answer breaks the model: {errors}")
        return _ok(out)

    # --- sts

    def _assume_role(self, params: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
        role = str(params["RoleArn"])
        account = role.split(":")[4]
        self._model.call_in("sts:AssumeRole", (account, "sts"))
        if account == self._deny:
            return _error(
                403, "AccessDenied", f"not authorized to perform: sts:AssumeRole on resource: {role}"
            )
        expires = datetime.now(UTC) + timedelta(hours=1)
        return _ok(
            {
                "Credentials": {
                    "AccessKeyId": KEY_PREFIX + account,
                    "SecretAccessKey": "emulated",
                    "SessionToken": "emulated",
                    "Expiration": expires,
                },
                "AssumedRoleUser": {"AssumedRoleId": "AROAEMULATED:s", "Arn": role},
            }
        )

    # --- organizations

    def _organizations_ListAccounts(self, body: dict[str, Any], account: str, region: str) -> dict[str, Any]:
        if account != ORG_ACCOUNT:
            raise FakeValidationError(f"ListAccounts from {account}, not the organization account")
        query = _query_hash({k: v for k, v in body.items() if k not in ("NextToken", "MaxResults")})
        start = _offset(body.get("NextToken"), query)
        size = int(body.get("MaxResults") or 20)
        ids = [account_id(i) for i in range(ACCOUNTS)]
        out: dict[str, Any] = {
            "Accounts": [
                {
                    "Id": a,
                    "Arn": f"arn:aws:organizations::{ORG_ACCOUNT}:account/o-emulated/{a}",
                    "Email": f"aws+{a}@example.com",
                    "Name": f"team-{int(a) % 1000:03d}",
                    "Status": "ACTIVE",
                    "State": "ACTIVE",
                    "JoinedMethod": "CREATED",
                    "JoinedTimestamp": FIRST_SEEN,
                }
                for a in ids[start : start + size]
            ]
        }
        if start + size < len(ids):
            out["NextToken"] = _token(start + size, query)
        return out

    # --- ecs

    def _ecs_ListTaskDefinitionFamilies(
        self, body: dict[str, Any], account: str, region: str
    ) -> dict[str, Any]:
        query = _query_hash(body)
        start = _offset(body.get("nextToken"), query)
        size = int(body.get("maxResults") or 100)
        names = [
            f"svc-{n:03d}" for n in range(FAMILIES) if f"svc-{n:03d}".startswith(body.get("familyPrefix", ""))
        ]
        out: dict[str, Any] = {"families": names[start : start + size]}
        if start + size < len(names):
            out["nextToken"] = _token(start + size, query)
        return out

    def _ecs_DescribeTaskDefinition(self, body: dict[str, Any], account: str, region: str) -> Any:
        family = str(body["taskDefinition"])
        if not family.startswith("svc-") or int(family[4:]) >= FAMILIES:
            return _error(400, "ClientException", "Unable to describe task definition.")
        n = int(family[4:])
        repo, tag = family_image(account, region, n)
        return {
            "taskDefinition": {
                "taskDefinitionArn": f"arn:aws:ecs:{region}:{account}:task-definition/{family}:3",
                "family": family,
                "revision": 3,
                "status": "ACTIVE",
                "containerDefinitions": [
                    {"name": "app", "image": f"{account}.dkr.ecr.{region}.amazonaws.com/{repo}:{tag}"},
                    {"name": "otel", "image": SIDECAR},
                ],
            },
            "tags": [],
        }

    # --- ecr

    def _ecr_GetRegistryScanningConfiguration(
        self, body: dict[str, Any], account: str, region: str
    ) -> dict[str, Any]:
        return {"registryId": account, "scanningConfiguration": {"scanType": "ENHANCED", "rules": []}}

    def _ecr_DescribeImages(self, body: dict[str, Any], account: str, region: str) -> Any:
        if body.get("registryId") != account:
            raise FakeValidationError(f"registry {body.get('registryId')} read with the role of {account}")
        repo = str(body["repositoryName"])
        tags = [str(i["imageTag"]) for i in body.get("imageIds", [])]
        if any(t not in {f"v{k}" for k in range(TAGS)} for t in tags):
            return _error(400, "ImageNotFoundException", "image not found")
        return {
            "imageDetails": [
                {
                    "registryId": account,
                    "repositoryName": repo,
                    "imageDigest": digest_of(account, region, repo, t),
                    "imageTags": [t],
                }
                for t in tags
            ]
        }

    # --- inspector2 (the delegated administrator)

    def _admin(self, account: str) -> None:
        if account != ADMIN_ACCOUNT:
            with self._lock:
                self.faults["inspector2 called with a member role"] += 1
            raise FakeValidationError(f"inspector2 called from {account}, not the delegated administrator")

    def _inspector2_ListCoverage(self, body: dict[str, Any], account: str, region: str) -> dict[str, Any]:
        self._admin(account)
        criteria = body.get("filterCriteria", {})
        if "accountId" not in criteria:
            raise FakeValidationError("ListCoverage in the administrator account without an accountId filter")
        ids = [f["value"] for f in criteria.get("resourceId", []) if f["comparison"] == "EQUALS"]
        rows = []
        for arn in ids:
            member = arn.split(":")[4]
            fields = {"accountId": member, "resourceType": "AWS_ECR_CONTAINER_IMAGE", "resourceId": arn}
            if all(_matches(criteria.get(k, []), v) for k, v in fields.items()):
                rows.append(
                    {
                        "accountId": member,
                        "resourceId": arn,
                        "resourceType": "AWS_ECR_CONTAINER_IMAGE",
                        "scanType": "PACKAGE",
                        "scanStatus": {"statusCode": "ACTIVE", "reason": "SUCCESSFUL"},
                    }
                )
        return {"coveredResources": rows}

    def _inspector2_SearchVulnerabilities(
        self, body: dict[str, Any], account: str, region: str
    ) -> dict[str, Any]:
        """KEV data per CVE (one a call, the model's limit), as bench/inspector_fake.py answers it."""
        ids = body["filterCriteria"]["vulnerabilityIds"]
        bad = [v for v in ids if not CVE_ID.fullmatch(v)]
        if bad:  # the model's pattern, which botocore's validator does not check
            raise FakeValidationError(f"vulnerabilityIds: {bad[0]!r} is not a CVE id")
        if body.get("nextToken"):
            _offset(body["nextToken"], _query_hash(body))
            return {"vulnerabilities": []}
        return {"vulnerabilities": [vulnerability(v) for v in ids]}

    def _inspector2_ListFindings(self, body: dict[str, Any], account: str, region: str) -> dict[str, Any]:
        self._admin(account)
        criteria = body.get("filterCriteria", {})
        members = [f["value"] for f in criteria.get("awsAccountId", []) if f["comparison"] == "EQUALS"]
        digests = [f["value"] for f in criteria.get("ecrImageHash", []) if f["comparison"] == "EQUALS"]
        if len(members) != 1 or not digests:
            raise FakeValidationError(
                "ListFindings in the administrator account: one awsAccountId and digests"
            )
        member = members[0]
        rows = []
        for repo_n in range(REPOS):
            for t in range(TAGS):
                repo, tag = f"app-{repo_n}", f"v{t}"
                digest = digest_of(member, region, repo, tag)
                if digest not in digests:
                    continue
                for k in range(findings_count(digest)):
                    sev = SEVERITIES[(int(digest[-4:-2], 16) + k) % len(SEVERITIES)]
                    fields = {
                        "severity": sev,
                        "findingStatus": "ACTIVE",
                        "resourceType": "AWS_ECR_CONTAINER_IMAGE",
                    }
                    if all(_matches(criteria.get(name, []), v) for name, v in fields.items()):
                        rows.append(self._finding(member, region, repo, tag, digest, k, sev))
        query = _query_hash(body)
        start = _offset(body.get("nextToken"), query)
        size = min(int(body.get("maxResults") or 100), FINDINGS_PAGE_CAP)
        out: dict[str, Any] = {"findings": rows[start : start + size]}
        if start + size < len(rows):
            out["nextToken"] = _token(start + size, query)
        return out

    @staticmethod
    def _finding(
        account: str, region: str, repo: str, tag: str, digest: str, k: int, sev: str
    ) -> dict[str, Any]:
        vid = f"CVE-2026-{int(digest[-6:], 16) % 9000 + 1000 + k}"
        arn = f"arn:aws:ecr:{region}:{account}:repository/{repo}/{digest}"
        return {
            "findingArn": f"arn:aws:inspector2:{region}:{account}:finding/{digest[-32:]}{k}",
            "awsAccountId": account,
            "type": "PACKAGE_VULNERABILITY",
            "title": f"{vid} - openssl",
            "description": f"{vid} in openssl",
            "remediation": {"recommendation": {"text": "Upgrade openssl."}},
            "severity": sev,
            "firstObservedAt": FIRST_SEEN,
            "lastObservedAt": FIRST_SEEN,
            "status": "ACTIVE",
            "resources": [
                {
                    "type": "AWS_ECR_CONTAINER_IMAGE",
                    "id": arn,
                    "details": {
                        "awsEcrContainerImage": {
                            "repositoryName": repo,
                            "imageHash": digest,
                            "registry": account,
                            "imageTags": [tag],
                        }
                    },
                }
            ],
            "packageVulnerabilityDetails": {
                "vulnerabilityId": vid,
                "source": "NVD",
                "vulnerablePackages": [{"name": "openssl", "version": "3.0.11", "fixedInVersion": "3.0.14"}],
            },
        }

    # --- s3

    def _s3(  # noqa: PLR0911 - one return per S3 answer
        self, op: str, params: Mapping[str, Any]
    ) -> tuple[AWSResponse, dict[str, Any]]:
        key = f"{params.get('Bucket')}/{params.get('Key')}"
        if params.get("Bucket") != BUCKET:
            return _error(404, "NoSuchBucket", "The specified bucket does not exist")
        with self._lock:
            found = self._objects.get(key)
            if op == "GetObject":
                if found is None:
                    return _error(404, "NoSuchKey", "The specified key does not exist.")
                return _ok({"Body": io.BytesIO(found.body), "ETag": found.etag})
            if op == "DeleteObject":
                if found is not None and params.get("IfMatch") not in (None, found.etag):
                    return _error(
                        412,
                        "PreconditionFailed",
                        "At least one of the pre-conditions you specified did not hold",
                    )
                self._objects.pop(key, None)
                return _ok({}, 204)
            if op == "PutObject":
                if params.get("IfNoneMatch") == "*" and found is not None:
                    return _error(
                        412,
                        "PreconditionFailed",
                        "At least one of the pre-conditions you specified did not hold",
                    )
                if "IfMatch" in params and (found is None or found.etag != params["IfMatch"]):
                    return _error(
                        412,
                        "PreconditionFailed",
                        "At least one of the pre-conditions you specified did not hold",
                    )
                body = params.get("Body") or b""
                data = body if isinstance(body, bytes) else str(body).encode()
                etag = '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'
                keep = data if "/state/" in key else b""  # the report objects are not read back
                self._objects[key] = _Object(etag, keep)
                return _ok({"ETag": etag})
        return _error(400, "InvalidRequest", f"s3:{op} is not emulated by the benchmark")


# --------------------------------------------------------------------------- one run


def policy_document() -> dict[str, Any]:
    """The ScanPolicy: the whole organization, two regions, findings through Inspector's administrator."""
    return {
        "schedule": "0 5 * * *",
        "runDeadlineSeconds": 86400,
        "aws": {
            "regions": list(REGIONS),
            "roleArnPattern": PATTERN,
            "organization": {"roleArn": ORG_ROLE},
            "inspectorAdminRoleArn": ADMIN_ROLE,
        },
        "severityThreshold": "MEDIUM",
        "report": {"s3": {"bucket": BUCKET}},
    }


class _Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def run_once(deny: str | None, latency: float, max_concurrency: int, per_pair: int) -> dict[str, Any]:
    """One first run of the XL fleet in this process; the measurements."""
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": REGIONS[0],
            "ECS_SCAN_AWS_MAX_CONCURRENCY": str(max_concurrency),
            "ECS_SCAN_AWS_WORKERS_PER_ACCOUNT_REGION": str(per_pair),
        }
    )
    for key in (
        "AWS_ENDPOINT_URL",
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        os.environ.pop(key, None)
    import boto3

    from ecs_scan_operator.adapters.aws_session import AwsClients, core_session
    from ecs_scan_operator.bootstrap import build_ports, client_cap
    from ecs_scan_operator.core.grants import role_session
    from ecs_scan_operator.core.policy import PolicyRef, parse_spec
    from ecs_scan_operator.pipeline import run_policy

    model = ScopedModel(latency=latency, buckets=DEFAULT_BUCKETS)
    undo = install_executor_accounting(model)
    fake = OrgFake(model, deny=deny)
    base = boto3.Session(botocore_session=core_session())
    fake.attach_session(base._session)
    policy = PolicyRef(namespace="platform", name="org-xl")
    spec = parse_spec(policy_document())
    session = role_session(policy)
    clients = AwsClients(
        base_session=base,
        session_name=session.name,
        role_arn_pattern=spec.aws.role_arn_pattern,
        inspector_admin_role_arn=spec.aws.inspector_admin_role_arn,
        hooks=[model.attach, fake.attach],
        max_clients=client_cap(spec),  # as bootstrap.aws_clients sizes it
    )
    ports = build_ports(policy, spec, clients=clients)
    probe = RssProbe()
    probe.wrap(ports)
    probe.start()
    before = rusage()
    wall0 = time.perf_counter()
    result = run_policy(policy, spec, ports, _Clock())
    real = time.perf_counter() - wall0
    probe.stop()
    after = rusage()
    undo()
    pairs = model.pair_bounds()
    slowest = max(pairs.items(), key=lambda kv: kv[1])
    return {
        "deny": deny,
        "latency": latency,
        "maxConcurrency": max_concurrency,
        "workersPerAccountRegion": per_pair,
        "simulatedSeconds": round(model.now(), 3),
        "critical": {k: round(v, 3) for k, v in sorted(model.critical.items())},
        "pairs": len(pairs),
        "slowestPair": {
            "account": slowest[0][0],
            "region": slowest[0][1],
            "boundSeconds": round(slowest[1], 3),
        },
        "sumOfPairBounds": round(sum(pairs.values()), 1),
        "calls": model.calls(),
        "callsCounted": dict(sorted(clients.counter.calls.items())),
        "cpuRunSeconds": round(after["cpu"] - before["cpu"], 2),
        "fakeCpuSeconds": round(fake.cpu_seconds, 2),
        "maxrssMiB": round(after["maxrssMiB"], 1),
        "rssByStageMiB": probe.peaks(),
        "realRunSeconds": round(real, 1),
        "accounts": ACCOUNTS,
        "families": FAMILIES,
        "threadsAtEnd": threading.active_count(),
        "rejected": fake.rejected[:5],
        "faults": dict(fake.faults),
        "result": result.to_dict(),
    }


# --------------------------------------------------------------------------- driver and report


def _child(scenario: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "bench.org", "--child", scenario, "--out", str(out),
        "--latency", str(args.latency), "--max-concurrency", str(args.max_concurrency),
        "--workers-per-pair", str(args.workers_per_pair), "--accounts", str(args.accounts),
        "--families", str(args.families),
    ]  # fmt: skip
    # As the image runs the operator (Dockerfile): two malloc arenas however many threads run.
    env = dict(os.environ, MALLOC_ARENA_MAX="2", PYTHONPATH=str(ROOT))
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)  # noqa: S603 -- our own module, fixed arguments
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return data


def render_section(data: Mapping[str, Any]) -> str:
    """The Fleet XL section of RESULTS.md."""
    full, deny = data["runs"]["all"], data["runs"]["deny"]
    bound = full["slowestPair"]["boundSeconds"]
    ratio = full["simulatedSeconds"] / bound
    share = deny["simulatedSeconds"] / full["simulatedSeconds"]
    denied = str(deny["deny"])
    accounts, families = full["accounts"], full["families"]
    rows = [
        (
            "first run: simulated wall time within 1.3x of the slowest (account, region)'s own "
            "rate-limit bound",
            f"{full['simulatedSeconds']:.1f} s vs {bound:.1f} s = {ratio:.2f}x "
            f"(the {full['pairs']} pairs' bounds summed: {full['sumOfPairBounds']:,.0f} s)",
            ratio <= 1.3,
        ),
        (
            "peak RSS of the pipeline process under 250 MiB",
            f"{full['maxrssMiB']:.0f} MiB",
            full["maxrssMiB"] < 250,
        ),
        (
            "one account that denies everything costs only its own share of the time",
            f"{deny['simulatedSeconds']:.1f} s with account {denied} denying vs "
            f"{full['simulatedSeconds']:.1f} s "
            f"without = {share:.2f}x; result {deny['result']['result']}, stage failures "
            + ", ".join(sorted(deny["result"]["stageFailures"])),
            share <= 1.05 and all(denied in k for k in deny["result"]["stageFailures"]),
        ),
        (
            "Inspector read only through the delegated administrator",
            f"{full['faults'].get('inspector2 called with a member role', 0)} member-role Inspector calls; "
            f"{full['calls'].get('inspector2:ListCoverage', 0)} ListCoverage + "
            f"{full['calls'].get('inspector2:ListFindings', 0)} ListFindings in the administrator account",
            not full["faults"],
        ),
    ]
    lines = [
        SECTION,
        "",
        f"`{data['command']}` - {data['date']}, commit {data['commit']}; "
        f"latency {full['latency'] * 1000:.0f} ms per call; "
        f"ECS_SCAN_AWS_MAX_CONCURRENCY={full['maxConcurrency']}, "
        f"ECS_SCAN_AWS_WORKERS_PER_ACCOUNT_REGION={full['workersPerAccountRegion']}, MALLOC_ARENA_MAX=2 "
        "(as the image sets it). Written by `bench/org.py`; "
        "the method (AWS emulated in-process, per-(account, region) token buckets) is in its docstring.",
        "",
        f"{accounts} accounts (AWS Organizations, ListAccounts) x {len(REGIONS)} regions x "
        f"{families} families = {accounts * len(REGIONS) * families:,} families; "
        f"{accounts * len(REGIONS) * REPOS * TAGS:,} ECR images "
        "(+1 public sidecar), ENHANCED scanning read through Inspector's delegated administrator; policy "
        "`organization` with `roleArnPattern`, threshold MEDIUM.",
        "",
        "| target | measured | result |",
        "|---|---|---|",
        *[f"| {a} | {b} | **{'PASS' if ok else 'FAIL'}** |" for a, b, ok in rows],
        "",
        f"| | all accounts | account {denied} denying |",
        "|---|---|---|",
    ]
    for label, fn in (
        ("simulated wall time (s)", lambda r: f"{r['simulatedSeconds']:.1f}"),
        ("slowest pair's own bound (s)", lambda r: f"{r['slowestPair']['boundSeconds']:.1f}"),
        ("result", lambda r: r["result"]["result"]),
        ("task definitions read", lambda r: f"{r['result']['taskDefinitions']:,}"),
        ("images (affected)", lambda r: f"{r['result']['images']:,} ({r['result']['affectedImages']:,})"),
        ("findings at the threshold", lambda r: f"{r['result']['findings']:,}"),
        ("peak RSS (MiB)", lambda r: f"{r['maxrssMiB']:.0f}"),
        (
            "CPU of the run, without the emulation (s)",
            lambda r: f"{r['cpuRunSeconds'] - r['fakeCpuSeconds']:.1f}",
        ),
        ("CPU of the emulation (s)", lambda r: f"{r['fakeCpuSeconds']:.1f}"),
        ("real time of the run (s)", lambda r: f"{r['realRunSeconds']:.1f}"),
    ):
        lines.append(f"| {label} | {fn(full)} | {fn(deny)} |")
    lines += ["", f"| AWS calls | all accounts | account {denied} denying |", "|---|---|---|"]
    for op in sorted(set(full["calls"]) | set(deny["calls"])):
        lines.append(f"| {op} | {full['calls'].get(op, 0):,} | {deny['calls'].get(op, 0):,} |")
    crit = ", ".join(
        f"{k} {v:.1f} s" for k, v in sorted(full["critical"].items(), key=lambda kv: -kv[1]) if v >= 0.05
    )
    stages = ", ".join(f"{k} {v:.0f}" for k, v in full["rssByStageMiB"].items())
    lines += [
        "",
        f"Where the first run's simulated time goes (the service whose calls moved the pipeline's clock; "
        f"'concurrent' = a pool joined): {crit}.",
        "",
        f"Peak RSS by stage (MiB): {stages}.",
        "",
    ]
    return "\n".join(lines)


def write_section(text: str, path: Path = RESULTS_MD) -> None:
    """Replace the Fleet XL section (from its heading to the next `## ` or the end), or append it."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text + (old[nxt + 1 :] if nxt >= 0 else "")
    path.write_text(new.rstrip("\n") + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Both scenarios in fresh processes, then the JSON and the RESULTS.md section."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", choices=["all", "deny"])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--latency", type=float, default=DEFAULT_LATENCY)
    parser.add_argument("--max-concurrency", type=int, default=256)
    parser.add_argument("--workers-per-pair", type=int, default=2)
    parser.add_argument("--accounts", type=int, default=50, help="smaller fleets for the smoke test")
    parser.add_argument("--families", type=int, default=400)
    parser.add_argument("--results-json", type=Path, default=RESULTS_JSON)
    parser.add_argument("--results-md", type=Path, default=RESULTS_MD)
    args = parser.parse_args(argv)
    global ACCOUNTS, FAMILIES
    ACCOUNTS, FAMILIES = args.accounts, args.families
    if args.child:
        deny = account_id(min(DENY_INDEX, ACCOUNTS - 1)) if args.child == "deny" else None
        out = run_once(deny, args.latency, args.max_concurrency, args.workers_per_pair)
        args.out.write_text(json.dumps(out, indent=2, default=str), encoding="utf-8")
        return 0
    tmp = args.results_json.parent
    tmp.mkdir(parents=True, exist_ok=True)
    runs = {s: _child(s, args, tmp / f"org-xl-{s}.tmp.json") for s in ("all", "deny")}
    for s in runs:
        (tmp / f"org-xl-{s}.tmp.json").unlink()
    data = {
        "command": os.environ.get("BENCH_COMMAND", "python -m bench.org"),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git_commit(),
        "runs": runs,
    }
    args.results_json.write_text(json.dumps(data, indent=2), encoding="utf-8")
    write_section(render_section(data), args.results_md)
    print(render_section(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
