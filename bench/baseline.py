"""The original design (the Lambda + SQS pipeline this project replaces), rebuilt as one process.

Four Lambdas chained through SQS, run in order here, against the same moto server and under the
same latency/rate-limit model as our pipeline:

1. list-task-images: paginate `ListTaskDefinitions` (boto3's paginator, default parameters: every
   ACTIVE revision of every family), keep the ARNs whose family name contains the include string,
   take the latest revision of each family, `DescribeTaskDefinition` it, collect the container
   images, drop duplicates, send the list on (SQS).
2. inspector-scan: `StartImageScan` for each image, one every 5 seconds; send the list on through
   a queue that delays messages by 3 minutes "to wait for the scans".
3. scan-check: `DescribeImageScanFindings` for each image; when any finding is MEDIUM or above, put
   one S3 object `<scan date>/<repository>/<tag>.json`. Clean and failed images are only logged.
4. create-tickets: one Jira ticket per affected image, on every run (no dedup, no update):
   `POST /rest/api/2/issue` to the Jira test server when one is given, else only counted.

The 5 s gaps and the 3 min delay advance the simulated clock only (`Model.sleep`); nothing sleeps.
Choices in the baseline's favour, stated: images that are not private ECR references are skipped
without a call (the original would have tried and logged a failure); the scan step is treated as
if it could run past the Lambda 15-minute limit (the results flag when it could not).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from bench import fleet as fleetmod
from bench.model import DEFAULT_BUCKETS, DEFAULT_LATENCY, Model, parse_bucket
from bench.ours import point_at, rusage

SCAN_GAP_SECONDS = 5.0
QUEUE_DELAY_SECONDS = 180.0
LAMBDA_LIMIT_SECONDS = 900.0
BASELINE_PROJECT = "OPS"
QUEUES = ("task-images", "scan-requests", "scan-results")


def _ecr_repo_tag(image: str) -> tuple[str, str] | None:
    prefix = fleetmod.REGISTRY + "/"
    if not image.startswith(prefix):
        return None
    repo, _, tag = image[len(prefix) :].rpartition(":")
    return (repo, tag) if repo else (image[len(prefix) :], "latest")


def list_task_images(ecs: Any, include: str, log: list[str]) -> list[str]:
    """Lambda 1."""
    arns: list[str] = []
    for page in ecs.get_paginator("list_task_definitions").paginate():
        arns.extend(page["taskDefinitionArns"])
    latest: dict[str, tuple[int, str]] = {}
    for arn in arns:
        family, _, rev = arn.rsplit("/", 1)[-1].rpartition(":")
        if include in family and (family not in latest or int(rev) > latest[family][0]):
            latest[family] = (int(rev), arn)
    images: list[str] = []
    for _, arn in sorted(latest.values(), key=lambda x: x[1]):
        desc = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        images.extend(c["image"] for c in desc["containerDefinitions"])
    unique = sorted(set(images))
    log.append(f"list-task-images: {len(arns)} revisions, {len(latest)} families kept, {len(unique)} images")
    return unique


def inspector_scan(ecr: Any, model: Model, images: list[str], log: list[str]) -> float:
    """Lambda 2: returns the simulated seconds this step took."""
    t0 = model.now()
    first = True
    for image in images:
        ref = _ecr_repo_tag(image)
        if ref is None:
            log.append(f"inspector-scan: skip non-ECR image {image}")
            continue
        if not first:
            model.sleep(SCAN_GAP_SECONDS, "sleep: 5 s between scans")
        first = False
        try:
            ecr.start_image_scan(repositoryName=ref[0], imageId={"imageTag": ref[1]})
        except ClientError as exc:  # logged, as the original did
            log.append(f"inspector-scan: {image}: {exc}")
    return model.now() - t0


def scan_check(ecr: Any, s3: Any, images: list[str], scan_date: str, log: list[str]) -> list[dict[str, Any]]:
    """Lambda 3: the affected images (one S3 object each)."""
    affected = []
    for image in images:
        ref = _ecr_repo_tag(image)
        if ref is None:
            continue
        try:
            resp = ecr.describe_image_scan_findings(repositoryName=ref[0], imageId={"imageTag": ref[1]})
        except ClientError as exc:
            log.append(f"scan-check: {image}: {exc}")
            continue
        findings = resp.get("imageScanFindings", {}).get("findings", [])
        if not any(f.get("severity") in fleetmod.BASELINE_AFFECTING for f in findings):
            log.append(f"scan-check: {image}: nothing at MEDIUM or above")
            continue
        key = f"{scan_date}/{ref[0]}/{ref[1]}.json"
        body = json.dumps({"image": image, "findings": findings}, default=str).encode()
        s3.put_object(Bucket=fleetmod.REPORT_BUCKET, Key=key, Body=body)
        affected.append({"image": image, "key": key, "findings": len(findings)})
    return affected


def create_tickets(affected: list[dict[str, Any]], jira_url: str | None, scan_date: str) -> int:
    """Lambda 4: one new ticket per affected image, every run (POST /rest/api/2/issue). Returns requests."""
    if jira_url is None:
        return len(affected)  # counted only
    auth = base64.b64encode(f"{os.environ['JIRA_EMAIL']}:{os.environ['JIRA_API_TOKEN']}".encode()).decode()
    for item in affected:
        body = {
            "fields": {
                "project": {"key": BASELINE_PROJECT},
                "issuetype": {"name": "Bug"},
                "summary": f"[{scan_date}] vulnerabilities in {item['image']}"[:250],
                "description": f"Scan results: s3://{fleetmod.REPORT_BUCKET}/{item['key']}\n"
                "Remediation: update the base image and rebuild.",
            }
        }
        req = urllib.request.Request(  # noqa: S310 -- the local Jira test server
            f"{jira_url}/rest/api/2/issue",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Basic {auth}"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            resp.read()
    return len(affected)


def main(argv: list[str] | None = None) -> int:
    """Run the four steps once; write the measurements as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--fleet", choices=sorted(fleetmod.FLEETS), required=True)
    parser.add_argument("--latency", type=float, default=DEFAULT_LATENCY)
    parser.add_argument("--bucket", action="append", default=[])
    parser.add_argument("--jira-url", default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    wall0 = time.perf_counter()
    point_at(args.endpoint)
    import boto3

    model = Model(latency=args.latency, buckets=DEFAULT_BUCKETS + tuple(parse_bucket(b) for b in args.bucket))
    session = boto3.Session()

    def client(service: Any) -> Any:
        c = session.client(service, region_name=fleetmod.REGION)  # Lambda defaults: standard retries
        model.attach(c)
        return c

    # The queues exist before the run (the CDK stack made them): not part of a run's calls.
    setup = session.client("sqs", region_name=fleetmod.REGION)
    urls = {
        q: setup.create_queue(
            QueueName=f"bench-{q}", Attributes={"DelaySeconds": "180"} if q == "scan-requests" else {}
        )["QueueUrl"]
        for q in QUEUES
    }
    ecs, ecr, s3, sqs = client("ecs"), client("ecr"), client("s3"), client("sqs")
    log: list[str] = []
    before = rusage()
    scan_date = datetime.now(UTC).strftime("%Y-%m-%d")

    images = list_task_images(ecs, fleetmod.BASELINE_INCLUDE, log)
    sqs.send_message(QueueUrl=urls["task-images"], MessageBody=json.dumps(images))
    step2 = inspector_scan(ecr, model, images, log)
    sqs.send_message(QueueUrl=urls["scan-requests"], MessageBody=json.dumps(images))
    model.sleep(QUEUE_DELAY_SECONDS, "sleep: 3 min queue delay")
    affected = scan_check(ecr, s3, images, scan_date, log)
    sqs.send_message(QueueUrl=urls["scan-results"], MessageBody=json.dumps(affected))
    jira_requests = create_tickets(affected, args.jira_url, scan_date)

    after = rusage()
    by_family: dict[str, int] = defaultdict(int)
    for line in log:
        by_family[line.split(":", 1)[0]] += 1
    out = {
        "impl": "baseline",
        "fleet": args.fleet,
        "calls": model.calls(),
        "waited": model.waited(),
        "simulatedSeconds": round(model.now(), 3),
        "critical": {k: round(v, 3) for k, v in sorted(model.critical.items())},
        "scanStepSeconds": round(step2, 3),
        "exceedsLambdaLimit": step2 > LAMBDA_LIMIT_SECONDS,
        "cpuSeconds": round(after["cpu"], 3),
        "cpuRunSeconds": round(after["cpu"] - before["cpu"], 3),
        "maxrssMiB": round(after["maxrssMiB"], 1),
        "realSeconds": round(time.perf_counter() - wall0, 2),
        "images": len(images),
        "ecrImages": sum(1 for i in images if _ecr_repo_tag(i)),
        "affected": len(affected),
        "jira": {"requests": jira_requests, "writes": jira_requests, "creates": jira_requests},
        "logLines": dict(by_family),
    }
    Path(args.out).write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
