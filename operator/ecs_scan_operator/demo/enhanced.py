"""The demo fleet's ENHANCED part: a second region whose registry scans with Amazon Inspector.

Its findings carry what BASIC scanning lacks: EPSS, exploit availability, fixed versions and
package managers, CISA KEV entries (through SearchVulnerabilities), and `firstObservedAt`, so the
report shows signals and a remediation plan. One finding was first observed long ago, so it is
past any due date a policy sets (it shows as overdue once the policy prioritises findings).
moto holds the ECR images and ECS task definitions; inspector2 is emulated (`demo/inspector.py`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from ecs_scan_operator.demo.inspector import DemoCve, DemoImage, InspectorEmulator, Kev

# Real CVEs with their published signals (EPSS rounded; KEV dates as CISA lists them).
LOONEY = DemoCve(
    "CVE-2023-4911", "libc6", "OS", "2.36-9+deb12u1", "2.36-9+deb12u3", "HIGH", 7.8, 0.71,
    exploit=True, last_exploit=datetime(2024, 10, 2, tzinfo=UTC),
    kev=Kev(date(2023, 11, 21), date(2023, 12, 12)),
)  # fmt: skip
ICONV = DemoCve(
    "CVE-2024-2961", "libc6", "OS", "2.36-9+deb12u1", "2.36-9+deb12u7", "HIGH", 7.3, 0.9, exploit=True
)
OPENSSL = [
    DemoCve("CVE-2023-5363", "libssl3", "OS", "3.0.11-1~deb12u1", "3.0.13-1~deb12u1", "HIGH", 7.5, 0.0021),
    DemoCve("CVE-2024-0727", "libssl3", "OS", "3.0.11-1~deb12u1", "3.0.13-1~deb12u1", "MEDIUM", 5.5, 0.0009),
    DemoCve("CVE-2024-5535", "libssl3", "OS", "3.0.11-1~deb12u1", "3.0.14-1~deb12u1", "MEDIUM", 5.9, 0.0011),
]
ZLIB = DemoCve("CVE-2023-45853", "zlib1g", "OS", "1:1.2.13.dfsg-1", "", "CRITICAL", 9.8, 0.0102)
PYTHON = [
    DemoCve("CVE-2024-6345", "setuptools", "PIP", "65.5.0", "70.0.0", "HIGH", 8.8, 0.0012),
    DemoCve("CVE-2024-35195", "requests", "PIP", "2.31.0", "2.32.0", "MEDIUM", 5.6, 0.0004),
]
LOG4SHELL = DemoCve(
    "CVE-2021-44228", "log4j-core", "JAR", "2.14.1", "2.15.0", "CRITICAL", 10.0, 0.944,
    exploit=True, last_exploit=datetime(2025, 6, 30, tzinfo=UTC),
    kev=Kev(date(2021, 12, 10), date(2021, 12, 24)),
)  # fmt: skip
LOG4J_DOS = DemoCve(
    "CVE-2021-45046", "log4j-core", "JAR", "2.14.1", "2.16.0", "CRITICAL", 9.0, 0.9737,
    exploit=True, kev=Kev(date(2023, 5, 1), date(2023, 5, 22)),
)  # fmt: skip
SPRING4SHELL = DemoCve(
    "CVE-2022-22965", "spring-beans", "JAR", "5.3.17", "5.3.18", "CRITICAL", 9.8, 0.9745,
    exploit=True, kev=Kev(date(2022, 4, 4), date(2022, 4, 25)),
)  # fmt: skip
SPRING_WEB = DemoCve("CVE-2024-22259", "spring-web", "JAR", "6.1.4", "6.1.5", "HIGH", 8.1, 0.0005)
NODE = DemoCve("CVE-2024-27983", "node", "NODEPKG", "20.11.1", "20.12.1", "HIGH", 8.2, 0.0013)
NODE_LOW = DemoCve("CVE-2024-22025", "node", "NODEPKG", "20.11.1", "20.12.1", "LOW", 3.7, 0.0004)

#: family -> (repository, tag, [(cve, days since first observed)], running tasks per Inspector)
SERVICES: dict[str, tuple[str, str, list[tuple[DemoCve, int]], int]] = {
    # Most findings in OS packages: the plan suggests a newer base image. LOONEY has been open for
    # 400 days, past any SLA: overdue.
    "orders-checkout": (
        "checkout/api", "v2.4.0",
        [(LOONEY, 400), (ICONV, 40), *[(c, 12) for c in OPENSSL], (ZLIB, 90), *[(c, 5) for c in PYTHON]], 6,
    ),
    # Language packages, known-exploited: upgrade log4j first.
    "payments-gateway": (
        "checkout/payments-gateway", "v1.9.2",
        [(LOG4SHELL, 30), (LOG4J_DOS, 30), (SPRING4SHELL, 8), (SPRING_WEB, 8)], 4,
    ),
    "orders-checkout-worker": ("checkout/worker", "v3.1.0", [(NODE, 3), (NODE_LOW, 3)], 2),
    "platform-cron": ("checkout/cron", "v1.0.0", [], 1),  # covered, no findings
}  # fmt: skip


def seed_enhanced(kw: dict[str, Any], account: str, region: str, digest_of: Any) -> InspectorEmulator:
    """Seed the ENHANCED region into moto (`kw`: boto3 client arguments); the emulator for its Inspector."""
    import boto3  # the demo extra, as in demo/fleet.py

    ecr = boto3.client("ecr", **(kw | {"region_name": region}))
    ecs = boto3.client("ecs", **(kw | {"region_name": region}))
    ecr.put_registry_scanning_configuration(
        scanType="ENHANCED",
        rules=[
            {
                "scanFrequency": "CONTINUOUS_SCAN",
                "repositoryFilters": [{"filter": "*", "filterType": "WILDCARD"}],
            }
        ],
    )
    now = datetime.now(UTC).replace(microsecond=0)
    images = []
    for family, (repo, tag, cves, tasks) in SERVICES.items():
        ecr.create_repository(repositoryName=repo, tags=[{"Key": "team", "Value": family.split("-", 1)[0]}])
        digest = digest_of(f"{region}/{repo}:{tag}")
        ecr.put_image(
            repositoryName=repo,
            imageManifest=(
                '{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", '
                f'"config": {{"digest": "{digest}"}}, "layers": []}}'
            ),
            imageTag=tag,
            imageDigest=digest,
            imageManifestMediaType="application/vnd.docker.distribution.manifest.v2+json",
        )
        images.append(
            DemoImage(
                account, region, repo, tag, digest,
                tuple((cve, now - timedelta(days=days)) for cve, days in cves), in_use=tasks,
            )
        )  # fmt: skip
        ecs.register_task_definition(
            family=family,
            containerDefinitions=[
                {
                    "name": "app",
                    "image": f"{account}.dkr.ecr.{region}.amazonaws.com/{repo}:{tag}",
                    "essential": True,
                    "memory": 512,
                }
            ],
            tags=[
                {"key": "team", "value": family.split("-", 1)[0]},
                {"key": "scanning", "value": "enhanced"},
            ],
        )
    return InspectorEmulator(images)
