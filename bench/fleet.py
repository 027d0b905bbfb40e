"""Benchmark fleets S, M and L: deterministic from a seed, seeded into a moto server.

A fleet is a pure function of (size, seed): task-definition families with their revisions and
containers, an ECR image catalog, and each image's scan profile (Inspector coverage and findings).
Nothing is stored that can be recomputed, so the Inspector emulation in the pipeline process
(`bench/inspector_fake.py`) needs only the image catalog, and the fleet's "truth" (what an ideal
run must read: kept families, images, digests, matching findings) is computed here for the bounds.

Shape (M; S and L scale the counts):
- 2,000 families x 5 ACTIVE revisions; ~10% have a 6th, newest revision that is INACTIVE
  (registered, then deregistered), so "the latest revision" and "the latest ACTIVE revision" differ;
- families are named `<env>-<team>-<service>-<n>`: env prod ~50%, staging ~30%, dev ~20%; ~6% of the
  prod ones end in `-sandbox` or `-canary`; the policy includes `prod-*` and excludes those, so
  about half the families are kept;
- 3 containers per revision: app (the family's own ECR repository, its tag moves with the
  revision), sidecar (a shared platform image in ECR, or ~15% external: public ECR, Docker Hub,
  GHCR), init (a shared platform image in ECR, or ~20% Docker Hub);
- 150 ECR repositories x 4 tags = 600 images (130 app repositories, 10 sidecar, 10 init);
- per image: ~94% covered by Inspector (ACTIVE/SUCCESSFUL), the rest pending, expired,
  unsupported or not covered; of the covered ones ~75% have 14-26 findings of every severity, the
  others 0-4 LOW/INFORMATIONAL findings.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, cast

if TYPE_CHECKING:
    from mypy_boto3_ecr.type_defs import RegistryScanningRuleTypeDef

from ecs_scan_operator.core.selection import family_selected

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
REPORT_BUCKET = "bench-reports"
REPORT_PREFIX = "ecs-scan"
DEFAULT_SEED = 7

INCLUDE = ("prod-*",)
EXCLUDE = ("*-sandbox", "*-canary")
LITERAL_PREFIX = "prod-"
BASELINE_INCLUDE = "prod-"  # the original design's include_pattern: a substring of the name
THRESHOLD = "MEDIUM"
# severities_at_or_above(MEDIUM, include_untriaged=True): what our ListFindings filter asks for
MATCHING = frozenset({"CRITICAL", "HIGH", "MEDIUM", "UNTRIAGED"})
# the original design: "any finding MEDIUM or above" (ECR BASIC names; UNDEFINED is not ranked)
BASELINE_AFFECTING = frozenset({"CRITICAL", "HIGH", "MEDIUM"})

TEAMS = ("payments", "orders", "identity", "search", "ml", "platform", "growth", "data", "mobile", "support")
SERVICES = ("api", "worker", "web", "scheduler", "consumer", "gateway", "batch", "sync")
EXTERNAL_SIDECARS = (
    "public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0",
    "datadog/agent:7",
    "ghcr.io/acme/envoy-proxy:1.29.4",
)
EXTERNAL_INITS = ("busybox:1.36", "docker.io/library/alpine:3.19")
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNTRIAGED")
SEVERITY_WEIGHTS = (10, 25, 30, 20, 10, 5)
CVE_POOL = 4000
PACKAGES = (
    ("openssl", "3.0.11-1", "3.0.14-1"),
    ("glibc", "2.36-9", "2.36-9+deb12u7"),
    ("curl", "7.88.1-10", "7.88.1-10+deb12u6"),
    ("zlib", "1:1.2.13", ""),
    ("libxml2", "2.9.14", "2.9.14+dfsg-1.3~deb12u1"),
    ("nghttp2", "1.52.0-1", "1.52.0-1+deb12u2"),
    ("expat", "2.5.0-1", "2.5.0-1+deb12u1"),
    ("openssh-server", "1:9.2p1-2", "1:9.2p1-2+deb12u3"),
    ("log4j-core", "2.14.1", "2.17.1"),
    ("spring-web", "6.1.4", "6.1.5"),
    ("requests", "2.31.0", "2.32.0"),
    ("golang.org/x/net", "0.17.0", "0.23.0"),
    ("nodejs", "20.11.0", "20.12.1"),
    ("busybox", "1.35.0", "1.36.1"),
    ("perl", "5.36.0-7", "5.36.0-7+deb12u1"),
    ("systemd", "252.22-1", ""),
)
SCAN_COMPLETED_AT = "2026-11-27T03:00:00Z"


@dataclass(frozen=True)
class FleetSize:
    """How big a fleet is."""

    name: str
    families: int
    app_repos: int
    sidecar_repos: int
    init_repos: int
    revisions: int = 5
    tags_per_repo: int = 4

    @property
    def repositories(self) -> int:
        """ECR repositories."""
        return self.app_repos + self.sidecar_repos + self.init_repos

    @property
    def images(self) -> int:
        """ECR images (repository x tag)."""
        return self.repositories * self.tags_per_repo


FLEETS = {
    "S": FleetSize("S", 200, 13, 1, 1),
    "M": FleetSize("M", 2000, 130, 10, 10),
    "L": FleetSize("L", 10000, 650, 50, 50),
}


# --- the ECR image catalog ---


@dataclass(frozen=True)
class Image:
    """One ECR image (repository:tag) and its digest."""

    repo: str
    tag: str
    digest: str

    @property
    def uri(self) -> str:
        """The reference a task definition names."""
        return f"{REGISTRY}/{self.repo}:{self.tag}"

    @property
    def arn(self) -> str:
        """The resource id Inspector uses."""
        return f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{self.repo}/{self.digest}"


def app_repo(k: int) -> str:
    """Name of app repository k."""
    return f"{TEAMS[k % len(TEAMS)]}/{SERVICES[(k // len(TEAMS)) % len(SERVICES)]}-{k}"


def repositories(size: FleetSize) -> list[str]:
    """Every ECR repository of the fleet."""
    return (
        [app_repo(k) for k in range(size.app_repos)]
        + [f"platform/sidecar-{k}" for k in range(size.sidecar_repos)]
        + [f"platform/init-{k}" for k in range(size.init_repos)]
    )


def tag_of(repo: str, t: int) -> str:
    """Tag t of a repository (app 1.t.0, sidecar 2.t.0, init 0.t.1)."""
    if repo.startswith("platform/sidecar-"):
        return f"2.{t}.0"
    if repo.startswith("platform/init-"):
        return f"0.{t}.1"
    return f"1.{t}.0"


def image(repo: str, t: int, seed: int) -> Image:
    """Image t of a repository (the digest depends on the seed)."""
    tag = tag_of(repo, t)
    return Image(repo, tag, "sha256:" + hashlib.sha256(f"{seed}/{repo}:{tag}".encode()).hexdigest())


def catalog(size: FleetSize, seed: int) -> list[Image]:
    """Every ECR image of the fleet."""
    return [image(repo, t, seed) for repo in repositories(size) for t in range(size.tags_per_repo)]


# --- scan profiles: coverage and findings of each image, derived from its digest ---


@dataclass(frozen=True)
class Cve:
    """One synthetic vulnerability."""

    vid: str
    severity: str
    package: str
    installed: str
    fixed: str
    score: float


@lru_cache(maxsize=4)
def cve_pool(seed: int) -> tuple[Cve, ...]:
    """The fleet's vulnerabilities (images share them, as real images do)."""
    rng = random.Random(f"{seed}:cves")  # noqa: S311 -- reproducible test data
    out = []
    for k in range(CVE_POOL):
        sev = rng.choices(SEVERITIES, SEVERITY_WEIGHTS)[0]
        name, installed, fixed = PACKAGES[rng.randrange(len(PACKAGES))]
        score = {"CRITICAL": 9.5, "HIGH": 7.8, "MEDIUM": 5.3, "LOW": 2.4, "INFORMATIONAL": 0.0}.get(sev, 0.0)
        out.append(Cve(f"CVE-{2019 + k % 7}-{10000 + k}", sev, name, installed, fixed, score))
    return tuple(out)


@lru_cache(maxsize=4)
def _low_cves(seed: int) -> tuple[int, ...]:
    return tuple(i for i, c in enumerate(cve_pool(seed)) if c.severity in ("LOW", "INFORMATIONAL"))


@dataclass(frozen=True)
class Profile:
    """What Inspector knows of one image: coverage status and reason (None: no coverage entry), findings."""

    status: str | None
    reason: str
    cves: tuple[int, ...] = ()

    @property
    def covered(self) -> bool:
        """Scanned and current (ListCoverage ACTIVE/SUCCESSFUL)."""
        return self.status == "ACTIVE" and self.reason == "SUCCESSFUL"


def profile(digest: str, seed: int) -> Profile:
    """The scan profile of a digest (deterministic)."""
    rng = random.Random(f"{seed}:{digest}")  # noqa: S311 -- reproducible test data
    u = rng.random()
    if u < 0.01:
        return Profile(None, "")  # the repository matches no scan filter: no coverage entry
    if u < 0.03:
        return Profile("ACTIVE", "PENDING_INITIAL_SCAN")
    if u < 0.05:
        return Profile("INACTIVE", "SCAN_ELIGIBILITY_EXPIRED")
    if u < 0.06:
        return Profile("INACTIVE", "UNSUPPORTED_OS")
    if rng.random() < 0.75:
        cves = rng.sample(range(CVE_POOL), rng.randint(14, 26))
    else:
        low = _low_cves(seed)
        cves = [low[i] for i in rng.sample(range(len(low)), rng.randint(0, 4))]
    return Profile("ACTIVE", "SUCCESSFUL", tuple(sorted(cves)))


_WORDS = [
    "a",
    "crafted",
    "request",
    "allows",
    "remote",
    "attackers",
    "to",
    "cause",
    "a",
    "denial",
    "of",
    "service",
    "via",
    "memory",
    "corruption",
    "in",
    "the",
    "parser",
    "when",
    "handling",
    "malformed",
    "input",
    "which",
    "may",
    "lead",
    "to",
    "arbitrary",
    "code",
    "execution",
    "or",
    "information",
    "disclosure",
    "because",
    "a",
    "length",
    "check",
    "is",
    "missing",
    "before",
    "copying",
    "data",
    "into",
    "a",
    "fixed",
    "size",
    "buffer",
    "in",
    "the",
    "affected",
    "component",
    "an",
    "out",
    "of",
    "bounds",
    "read",
    "occurs",
    "in",
    "certain",
    "configurations",
    "that",
    "use",
    "the",
    "default",
    "settings",
    "of",
    "the",
    "library",
]


def cve_description(cve: Cve) -> str:
    """An NVD-like description (150-700 characters), made on demand so that nothing large is kept."""
    rng = random.Random(cve.vid)  # noqa: S311 -- reproducible test data
    target = rng.randint(150, 700)
    words = [f"{cve.vid}: in {cve.package} before {cve.fixed or 'the latest release'},"]
    while sum(len(w) + 1 for w in words) < target:
        words.append(_WORDS[rng.randrange(len(_WORDS))])
    return " ".join(words)[:target].rstrip() + "."


def findings_of(digest: str, seed: int) -> list[Cve]:
    """The ACTIVE findings of a digest (empty unless covered)."""
    prof = profile(digest, seed)
    pool = cve_pool(seed)
    return [pool[k] for k in prof.cves] if prof.covered else []


def basic_scan_result(img: Image, seed: int, image_id: dict[str, str]) -> dict[str, Any]:
    """The ECR BASIC `DescribeImageScanFindings` answer for an image (moto returns it as seeded)."""
    prof = profile(img.digest, seed)
    base: dict[str, Any] = {"registryId": ACCOUNT, "repositoryName": img.repo, "imageId": image_id}
    if not prof.covered:
        return base | {
            "imageScanStatus": {"status": "UNSUPPORTED_IMAGE", "description": prof.reason or "not scanned"},
            "imageScanFindings": {"findings": [], "findingSeverityCounts": {}},
        }
    findings, counts = [], dict[str, int]()
    for c in findings_of(img.digest, seed):
        sev = "UNDEFINED" if c.severity == "UNTRIAGED" else c.severity
        counts[sev] = counts.get(sev, 0) + 1
        findings.append(
            {
                "name": c.vid,
                "description": cve_description(c),
                "uri": f"https://nvd.nist.gov/vuln/detail/{c.vid}",
                "severity": sev,
                "attributes": [
                    {"key": "package_name", "value": c.package},
                    {"key": "package_version", "value": c.installed},
                ],
            }
        )
    return base | {
        "imageScanStatus": {"status": "COMPLETE", "description": "The scan was completed successfully."},
        "imageScanFindings": {
            "imageScanCompletedAt": SCAN_COMPLETED_AT,
            "findings": findings,
            "findingSeverityCounts": counts,
        },
    }


# --- task-definition families ---


@dataclass(frozen=True)
class Family:
    """One task-definition family and how its revisions' containers are chosen."""

    index: int
    name: str
    team: str
    env: str
    app: int  # app repository index
    app_base: int
    sidecar: int  # sidecar repository index, or -1 - external index
    sidecar_base: int
    init: int  # init repository index, or -1 - external index
    inactive_newest: bool  # a 6th revision registered and then deregistered

    def images(self, size: FleetSize, seed: int, revision: int) -> tuple[str, str, str]:
        """(app, sidecar, init) image references of one revision."""
        tags = size.tags_per_repo
        app = image(app_repo(self.app), (self.app_base + revision) % tags, seed).uri
        if self.sidecar >= 0:
            repo = f"platform/sidecar-{self.sidecar}"
            sidecar = image(repo, (self.sidecar_base + revision // 3) % tags, seed).uri
        else:
            sidecar = EXTERNAL_SIDECARS[-1 - self.sidecar]
        if self.init >= 0:
            init = image(f"platform/init-{self.init}", self.sidecar_base % tags, seed).uri
        else:
            init = EXTERNAL_INITS[-1 - self.init]
        return app, sidecar, init

    def container_definitions(self, size: FleetSize, seed: int, revision: int) -> list[dict[str, Any]]:
        """The containerDefinitions of one revision."""
        app, sidecar, init = self.images(size, seed, revision)
        return [
            {"name": "app", "image": app, "essential": True, "memory": 512},
            {"name": "sidecar", "image": sidecar, "essential": False, "memory": 128},
            {"name": "init", "image": init, "essential": False, "memory": 64},
        ]

    @property
    def tags(self) -> list[dict[str, str]]:
        """Task-definition tags."""
        return [{"key": "team", "value": self.team}, {"key": "env", "value": self.env}]


def family(size: FleetSize, seed: int, i: int) -> Family:
    """Family i of a fleet."""
    rng = random.Random(f"{seed}:family:{i}")  # noqa: S311 -- reproducible test data
    u = rng.random()
    env = "prod" if u < 0.5 else "staging" if u < 0.8 else "dev"
    team, svc = TEAMS[rng.randrange(len(TEAMS))], SERVICES[rng.randrange(len(SERVICES))]
    suffix = ""
    if env == "prod" and rng.random() < 0.06:
        suffix = rng.choice(("-sandbox", "-canary"))
    sidecar = rng.randrange(size.sidecar_repos) if rng.random() < 0.85 else -1 - rng.randrange(3)
    init = rng.randrange(size.init_repos) if rng.random() < 0.8 else -1 - rng.randrange(2)
    return Family(
        index=i,
        name=f"{env}-{team}-{svc}-{i:05d}{suffix}",
        team=team,
        env=env,
        app=rng.randrange(size.app_repos),
        app_base=rng.randrange(size.tags_per_repo),
        sidecar=sidecar,
        sidecar_base=rng.randrange(size.tags_per_repo),
        init=init,
        inactive_newest=rng.random() < 0.1,
    )


def families(size: FleetSize, seed: int) -> Iterator[Family]:
    """Every family, lazily."""
    for i in range(size.families):
        yield family(size, seed, i)


# --- what an ideal run must read: the inputs of the lower bounds ---


@dataclass
class Truth:
    """Counts derived from the fleet that the bounds and the checks use."""

    fleet: str
    seed: int
    families: int
    active_revisions: int
    inactive_revisions: int
    repositories: int
    images: int
    prefix_families: int  # families whose name starts with the include globs' literal prefix
    kept_families: int
    ecr_refs: int  # distinct ECR repository:tag used by the kept families' latest ACTIVE revisions
    external_refs: int
    repos_used: int
    describe_images_min: int
    covered: int
    not_covered: int
    matching_findings: int  # ACTIVE findings at the policy's severities over the covered digests
    affected: int
    ours_list_findings: int  # what our chunking (10 sorted digests per call, 25 per page) costs
    # distinct CVEs of those findings: SearchVulnerabilities takes one per call (KEV lookups, #13)
    distinct_cves: int
    baseline_kept: int  # families whose name contains BASELINE_INCLUDE
    baseline_ecr_images: int
    baseline_affected: int

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return dict(self.__dict__)


def _ecr_ref(uri: str) -> tuple[str, str] | None:
    if not uri.startswith(REGISTRY + "/"):
        return None
    repo, _, tag = uri[len(REGISTRY) + 1 :].rpartition(":")
    return repo, tag


def truth(size: FleetSize, seed: int, *, findings_page: int = 25, filter_max: int = 10) -> Truth:
    """The fleet's counts for the bounds (pure; a few seconds for L)."""
    prefix = kept = base_kept = active = inactive = 0
    ours: set[tuple[str, str]] = set()
    external: set[str] = set()
    base: set[tuple[str, str]] = set()
    for fam in families(size, seed):
        active += size.revisions
        inactive += int(fam.inactive_newest)
        prefix += int(fam.name.startswith(LITERAL_PREFIX))
        refs = fam.images(size, seed, size.revisions)  # the latest ACTIVE revision
        if family_selected(fam.name, INCLUDE, EXCLUDE):
            kept += 1
            for uri in refs:
                ref = _ecr_ref(uri)
                if ref:
                    ours.add(ref)
                else:
                    external.add(uri)
        if BASELINE_INCLUDE in fam.name:
            base_kept += 1
            base.update(r for r in map(_ecr_ref, refs) if r)
    by_repo: dict[str, int] = defaultdict(int)
    for repo, _ in ours:
        by_repo[repo] += 1
    digest_of = {(i.repo, i.tag): i.digest for i in catalog(size, seed)}
    covered = matching = affected = 0
    per_digest: dict[str, int] = {}
    cves: set[str] = set()
    for ref in ours:
        d = digest_of[ref]
        prof = profile(d, seed)
        if prof.covered:
            covered += 1
            cves.update(c.vid for c in findings_of(d, seed) if c.severity in MATCHING)
            n = sum(1 for c in findings_of(d, seed) if c.severity in MATCHING)
            per_digest[d] = n
            matching += n
            affected += int(n > 0)
    digests = sorted(per_digest)
    ours_lf = sum(
        max(1, math.ceil(sum(per_digest[d] for d in digests[i : i + filter_max]) / findings_page))
        for i in range(0, len(digests), filter_max)
    )
    base_affected = 0
    for ref in base:
        if any(c.severity in BASELINE_AFFECTING for c in findings_of(digest_of[ref], seed)):
            base_affected += 1
    return Truth(
        fleet=size.name,
        seed=seed,
        families=size.families,
        active_revisions=active,
        inactive_revisions=inactive,
        repositories=size.repositories,
        images=size.images,
        prefix_families=prefix,
        kept_families=kept,
        ecr_refs=len(ours),
        external_refs=len(external),
        repos_used=len(by_repo),
        describe_images_min=sum(math.ceil(n / 100) for n in by_repo.values()),
        covered=covered,
        not_covered=len(ours) - covered,
        matching_findings=matching,
        affected=affected,
        ours_list_findings=ours_lf,
        distinct_cves=len(cves),
        baseline_kept=base_kept,
        baseline_ecr_images=len(base),
        baseline_affected=base_affected,
    )


# --- seeding into moto ---


def _manifest(img: Image) -> str:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"digest": img.digest},
            "layers": [],
        }
    )


ScanTypeName = Literal["BASIC", "ENHANCED"]
MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
SCAN_RULES: list[RegistryScanningRuleTypeDef] = [
    {"scanFrequency": "CONTINUOUS_SCAN", "repositoryFilters": [{"filter": "*", "filterType": "WILDCARD"}]}
]


def seed_backend(size: FleetSize, seed: int, *, scan_type: ScanTypeName = "ENHANCED") -> dict[str, int]:
    """Seed through moto's backends in this process (the process that serves moto)."""
    from datetime import datetime

    from moto.ecr.models import ecr_backends
    from moto.ecs.models import ecs_backends
    from moto.s3.models import s3_backends

    s3_backends[ACCOUNT]["aws"].create_bucket(REPORT_BUCKET, REGION)
    ecr = ecr_backends[ACCOUNT][REGION]
    # moto's backend takes the same rules as plain dicts
    ecr.put_registry_scanning_configuration(scan_type, cast("list[dict[str, Any]]", SCAN_RULES))
    long_ago = datetime(2026, 1, 5)
    for repo in repositories(size):
        ecr.create_repository(
            repository_name=repo,
            registry_id=None,
            encryption_config={"encryptionType": "AES256"},
            image_scan_config={"scanOnPush": True},
            image_tag_mutability="MUTABLE",
            tags=[{"Key": "team", "Value": repo.split("/", 1)[0]}],
        )
        for t in range(size.tags_per_repo):
            img = image(repo, t, seed)
            stored = ecr.put_image(repo, _manifest(img), img.tag, MEDIA_TYPE, img.digest)
            stored.last_scan = long_ago  # scanned on push, long ago: StartImageScan is allowed today
            for image_id in ({"imageTag": img.tag}, {"imageDigest": img.digest}):
                stored.scan_finding_results[json.dumps(image_id)] = basic_scan_result(img, seed, image_id)
    ecs = ecs_backends[ACCOUNT][REGION]
    n = 0
    for fam in families(size, seed):
        for rev in range(1, size.revisions + 2 if fam.inactive_newest else size.revisions + 1):
            td = ecs.register_task_definition(
                family=fam.name,
                container_definitions=fam.container_definitions(size, seed, rev),
                tags=fam.tags,
            )
            n += 1
        if fam.inactive_newest:
            ecs.deregister_task_definition(td.arn)
    return {"taskDefinitions": n, "images": size.images}


def seed_http(
    endpoint: str, size: FleetSize, seed: int, *, scan_type: ScanTypeName = "ENHANCED"
) -> dict[str, int]:
    """Seed over moto's HTTP API with boto3, plus its `/moto-api/static/ecr/scan-finding-results`."""
    import urllib.request

    import boto3

    kw: dict[str, Any] = {
        "endpoint_url": endpoint,
        "region_name": REGION,
        "aws_access_key_id": "bench",
        "aws_secret_access_key": "bench",
    }
    s3, ecr, ecs = boto3.client("s3", **kw), boto3.client("ecr", **kw), boto3.client("ecs", **kw)
    s3.create_bucket(Bucket=REPORT_BUCKET)
    ecr.put_registry_scanning_configuration(scanType=scan_type, rules=SCAN_RULES)
    results = []
    for repo in repositories(size):
        ecr.create_repository(repositoryName=repo, tags=[{"Key": "team", "Value": repo.split("/", 1)[0]}])
        for t in range(size.tags_per_repo):
            img = image(repo, t, seed)
            ecr.put_image(
                repositoryName=repo,
                imageManifest=_manifest(img),
                imageTag=img.tag,
                imageDigest=img.digest,
                imageManifestMediaType=MEDIA_TYPE,
            )
            ecr.start_image_scan(repositoryName=repo, imageId={"imageDigest": img.digest})
            for image_id in ({"imageTag": img.tag}, {"imageDigest": img.digest}):
                results.append(basic_scan_result(img, seed, image_id))
    body = json.dumps({"results": results, "region": REGION}).encode()
    req = urllib.request.Request(  # noqa: S310 -- the local emulator's admin endpoint
        f"{endpoint}/moto-api/static/ecr/scan-finding-results",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310
        resp.read()
    n = 0
    for fam in families(size, seed):
        arn = ""
        for rev in range(1, size.revisions + 2 if fam.inactive_newest else size.revisions + 1):
            out = ecs.register_task_definition(
                family=fam.name,
                containerDefinitions=fam.container_definitions(size, seed, rev),  # type: ignore[arg-type]
                tags=fam.tags,  # type: ignore[arg-type]
            )
            arn = out["taskDefinition"]["taskDefinitionArn"]
            n += 1
        if fam.inactive_newest:
            ecs.deregister_task_definition(taskDefinition=arn)
    return {"taskDefinitions": n, "images": size.images}
