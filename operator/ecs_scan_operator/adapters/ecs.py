"""Amazon ECS: the task definitions a policy selects and their containers' images.

Costs are what matter at scale (one shared token bucket of 20 calls/s for every task-definition
read): families are filtered by name before any describe, each revision is described at most
once ever (revisions are immutable, cached by ARN), and on a warm cache the latest revisions come
from `ListTaskDefinitions(status=ACTIVE)` pages when that is cheaper than one describe per family.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ecs_scan_operator.adapters.aws_session import AwsClients, map_aws_error
from ecs_scan_operator.core.model import (
    ContainerImage,
    TaskDefinitionImages,
    TaskDefinitionListing,
    declared_containers,
)
from ecs_scan_operator.core.policy import TaskDefinitionSource, TaskDefinitionsSpec
from ecs_scan_operator.core.selection import exact_family, family_selected, literal_prefix, select_families
from ecs_scan_operator.core.state import RevisionCache
from ecs_scan_operator.errors import NotFoundError, ScanError

Found = Callable[[TaskDefinitionImages], None]  # told each revision as it is read

log = logging.getLogger(__name__)
PAGE = 100  # the API's maximum page size for the list calls used here
DESCRIBE_SERVICES_BATCH = 10
DESCRIBE_TASKS_BATCH = 100  # DescribeTasks takes at most 100 task ARNs
DESCRIBE_REVISIONS_BATCH = 20  # DescribeServiceRevisions takes at most 20 service revision ARNs


def parse_td_arn(arn: str) -> tuple[str, int]:
    """(family, revision) of `arn:aws:ecs:<region>:<acct>:task-definition/<family>:<rev>`."""
    tail = arn.rsplit("/", 1)[-1]
    family, _, rev = tail.rpartition(":")
    return family, int(rev)


def _td_from_description(
    desc: dict[str, Any], tags: list[dict[str, str]], region: str
) -> TaskDefinitionImages:
    # Shared: thousands of revisions name the same few container lists and families.
    containers = declared_containers(
        tuple((str(c.get("name", "")), str(c.get("image", ""))) for c in desc.get("containerDefinitions", []))
    )
    return TaskDefinitionImages(
        arn=str(desc["taskDefinitionArn"]),
        family=sys.intern(str(desc["family"])),
        revision=int(desc["revision"]),
        containers=containers,
        region=region,
        tags=tuple(sorted((str(t["key"]), str(t["value"])) for t in tags)),
    )


class RunningGroups:
    """DescribeTasks answers folded, batch by batch, into one count per (revision, cluster, service,
    launch type, container digests): memory holds the groups, never the tasks (15,000 tasks of
    about 3 KB each would be 45 MB).

    The family comes from the task's taskDefinitionArn and include/exclude apply to it; the images and
    digests come from the task itself (`containers[].image`, `.imageDigest`), so no
    DescribeTaskDefinition is needed. A container without a digest (still PENDING) keeps digest None.
    """

    def __init__(self, selection: TaskDefinitionsSpec, region: str) -> None:
        self._selection = selection
        self._region = region
        self._counts: dict[tuple[str, str, str, str, tuple[ContainerImage, ...]], int] = {}

    def add(self, tasks: Sequence[dict[str, Any]]) -> None:
        """Count a batch of DescribeTasks `tasks[]`."""
        for task in tasks:
            arn = str(task.get("taskDefinitionArn", ""))
            family, _ = parse_td_arn(arn)
            if not family_selected(family, self._selection.include, self._selection.exclude):
                continue
            group = str(task.get("group", ""))
            service = group.removeprefix("service:") if group.startswith("service:") else ""
            containers = tuple(
                sorted(
                    (
                        ContainerImage(
                            name=sys.intern(str(c.get("name", ""))),
                            image=sys.intern(str(c.get("image", ""))),
                            digest=sys.intern(str(c["imageDigest"])) if c.get("imageDigest") else None,
                        )
                        for c in task.get("containers", [])
                    ),
                    key=lambda c: (c.name, c.image, c.digest or ""),
                )
            )
            cluster = str(task.get("clusterArn", "")).rsplit("/", 1)[-1]
            key = (sys.intern(arn), cluster, service, str(task.get("launchType", "")), containers)
            self._counts[key] = self._counts.get(key, 0) + 1

    def result(self) -> list[TaskDefinitionImages]:
        """One record per group, in a stable order."""
        return [
            TaskDefinitionImages(
                arn=arn,
                family=parse_td_arn(arn)[0],
                revision=parse_td_arn(arn)[1],
                containers=containers,
                region=self._region,
                service=service,
                launch_type=launch_type,
                tasks=n,
                cluster=cluster,
            )
            for (arn, cluster, service, launch_type, containers), n in sorted(
                self._counts.items(), key=lambda kv: kv[0][:4]
            )
        ]


def running_task_definitions(
    tasks: list[dict[str, Any]], selection: TaskDefinitionsSpec, region: str
) -> list[TaskDefinitionImages]:
    """DescribeTasks answers -> one record per (revision, cluster, service, launch type, digests)."""
    groups = RunningGroups(selection, region)
    groups.add(tasks)
    return groups.result()


class EcsImageSource:
    """ImageSource over the ECS API."""

    def __init__(self, clients: AwsClients, *, concurrency: int = 8) -> None:
        self._clients = clients
        self._concurrency = concurrency

    # Listings go through botocore's paginators: `nextToken` is followed to the last page on AWS
    # (moto never paginates these calls; test_aws_stubbed.py proves the pages are followed).

    def _families(self, ecs: Any, selection: TaskDefinitionsSpec) -> tuple[list[str], int]:
        only = exact_family(selection.include)
        if only is not None:
            return [only], 0
        prefix = literal_prefix(selection.include)
        kwargs: dict[str, Any] = {"status": "ACTIVE", "maxResults": PAGE}
        if prefix:
            kwargs["familyPrefix"] = prefix
        names: list[str] = []
        for page in ecs.get_paginator("list_task_definition_families").paginate(**kwargs):
            names.extend(page.get("families", []))
        return select_families(names, selection.include, selection.exclude), len(names)

    def _active_revisions(self, ecs: Any, selection: TaskDefinitionsSpec) -> tuple[dict[str, str], int]:
        """Latest ACTIVE revision ARN of each selected family, from ListTaskDefinitions pages."""
        kwargs: dict[str, Any] = {"status": "ACTIVE", "sort": "DESC", "maxResults": PAGE}
        only = exact_family(selection.include)
        if only is not None:
            kwargs["familyPrefix"] = only  # an exact family name for this call
        latest: dict[str, tuple[int, str]] = {}
        total = 0
        for page in ecs.get_paginator("list_task_definitions").paginate(**kwargs):
            for arn in page.get("taskDefinitionArns", []):
                total += 1
                family, rev = parse_td_arn(arn)
                if not family_selected(family, selection.include, selection.exclude):
                    continue
                if family not in latest or rev > latest[family][0]:
                    latest[family] = (rev, arn)
        return {f: arn for f, (_, arn) in latest.items()}, total

    def _describe(self, ecs: Any, name: str, region: str) -> TaskDefinitionImages:
        try:
            out = ecs.describe_task_definition(taskDefinition=name, include=["TAGS"])
            desc = out["taskDefinition"]
            if desc.get("status") == "INACTIVE" and ":" not in name and not name.startswith("arn:"):
                # AWS resolves a bare family to its latest ACTIVE revision; an INACTIVE answer means the
                # newest revision was deregistered in between (or an emulator that ignores status).
                latest = self._latest_active_arn(ecs, name)
                if latest is None:
                    raise NotFoundError(f"family {name} has no ACTIVE revision")
                out = ecs.describe_task_definition(taskDefinition=latest, include=["TAGS"])
                desc = out["taskDefinition"]
        except (ClientError, BotoCoreError) as exc:
            raise map_aws_error(exc, f"ecs:DescribeTaskDefinition {name}") from exc
        return _td_from_description(desc, out.get("tags", []), region)

    def _latest_active_arn(self, ecs: Any, family: str) -> str | None:
        best: tuple[int, str] | None = None
        pages = ecs.get_paginator("list_task_definitions").paginate(
            familyPrefix=family, status="ACTIVE", sort="DESC"
        )
        for page in pages:
            for arn in page.get("taskDefinitionArns", []):
                fam, rev = parse_td_arn(arn)
                if fam == family and (best is None or rev > best[0]):
                    best = (rev, arn)
            if best is not None:
                break  # DESC order: the first page holds the newest revision
        return best[1] if best else None

    def _describe_all(
        self,
        ecs: Any,
        names: list[str],
        region: str,
        listing: TaskDefinitionListing,
        cache: RevisionCache,
        found: Found | None = None,
    ) -> None:
        def one(name: str) -> TaskDefinitionImages | ScanError:
            try:
                td = self._describe(ecs, name, region)
            except ScanError as exc:
                return exc
            if found is not None:
                found(td)  # in the worker: the pipeline may start on its images (Prefetch)
            return td

        with ThreadPoolExecutor(max_workers=self._concurrency) as pool:
            for name, outcome in zip(names, pool.map(one, names), strict=True):
                if isinstance(outcome, ScanError):
                    listing.errors.append(f"{name}: {outcome}")
                else:
                    cache.put(outcome)
                    listing.task_definitions.append(outcome)

    # --- the ports ---

    def revision_tags(
        self, arns: Sequence[str], cache: RevisionCache, now: datetime
    ) -> tuple[dict[str, tuple[tuple[str, str], ...]], list[str]]:
        """Tags of running revisions (DescribeTaskDefinition include=TAGS), each read once per TD_TAGS_TTL.

        A revision is immutable but its tags are not: the cache in the state object keeps them
        for TD_TAGS_TTL (24 h), so a tag changed on a revision reaches ticket routing within that
        time plus one run, and a rerun with nothing redeployed asks nothing. Returns the tags and
        the errors (a revision whose tags could not be read is left out).
        """
        out: dict[str, tuple[tuple[str, str], ...]] = {}
        todo = []
        for arn in sorted(set(arns)):
            cached = cache.fresh_tags(arn, now)
            if cached is None:
                todo.append(arn)
            else:
                out[arn] = cached

        def one(arn: str) -> TaskDefinitionImages | ScanError:
            try:
                return self._describe(
                    self._clients.workload("ecs", arn.split(":")[3]), arn, arn.split(":")[3]
                )
            except (ScanError, IndexError) as exc:
                return (
                    exc if isinstance(exc, ScanError) else ScanError(f"unreadable task definition ARN {arn}")
                )

        errors = []
        with ThreadPoolExecutor(max_workers=self._concurrency) as pool:
            for arn, got in zip(todo, pool.map(one, todo), strict=True):
                if isinstance(got, ScanError):
                    errors.append(f"{arn}: tags not read: {got}")
                    continue
                cache.put_tags(arn, got.tags, now)
                out[arn] = got.tags
        return out, errors

    def task_definitions(
        self,
        selection: TaskDefinitionsSpec,
        region: str,
        cache: RevisionCache,
        account: str = "",
        found: Found | None = None,
    ) -> TaskDefinitionListing:
        """The selected revisions of one region (of `account`); never raises for one bad family.

        `found` hears each revision of the declared view (latestRevision) as soon as it is described
        (not those taken from the revision cache, which are known at once); the running sources
        never call it.
        """
        ecs = self._clients.workload("ecs", region, account)
        where = f"{account}/{region}" if account else region
        try:
            if selection.source is TaskDefinitionSource.SERVICES:
                return self._from_services(ecs, selection, region, cache)
            if selection.source is TaskDefinitionSource.RUNNING:
                return self._from_running(ecs, selection, region)
            listing = self._latest(ecs, selection, region, cache, where, found)
            if selection.clusters:  # the running view beside the declared one (issue #12)
                running = self._from_running(ecs, selection, region)
                listing.task_definitions.extend(running.task_definitions)
                listing.errors.extend(running.errors)
            return listing
        except (ClientError, BotoCoreError) as exc:
            err = map_aws_error(exc, f"ecs listing in {where}")
            if account and err.cause is not None:
                err.cause = dataclasses.replace(err.cause, account=account)
            raise err from exc

    def _latest(
        self,
        ecs: Any,
        selection: TaskDefinitionsSpec,
        region: str,
        cache: RevisionCache,
        where: str,
        found: Found | None,
    ) -> TaskDefinitionListing:
        listing = TaskDefinitionListing()
        # `where`: the region, or account/region: each account's listing costs are its own.
        seen = cache.listing.get(where, {})
        warm = bool(cache.by_arn) and "activeRevisions" in seen and "families" in seen
        if warm:
            # Revisions pages cost ceil(active/100) and then only new revisions are described;
            # families pages cost ceil(families/100) plus one describe per selected family.
            cost_revisions = math.ceil(seen["activeRevisions"] / PAGE)
            cost_families = math.ceil(seen["families"] / PAGE) + seen.get("selected", 0)
            warm = cost_revisions < cost_families
        if warm:
            latest, total = self._active_revisions(ecs, selection)
            listing.families_matched = len(latest)
            to_describe = []
            for family in sorted(latest):
                td = cache.get(latest[family])
                if td is None:
                    to_describe.append(latest[family])
                else:
                    listing.task_definitions.append(td)
            self._describe_all(ecs, to_describe, region, listing, cache, found)
            cache.listing[where] = dict(seen, activeRevisions=total, selected=len(latest))
            return listing
        families, listed = self._families(ecs, selection)
        listing.families_matched = len(families)
        self._describe_all(ecs, families, region, listing, cache, found)
        # Estimate the account's active revisions from the selected families' revision numbers
        # (an upper bound: some old revisions are inactive); a warm run measures the real count.
        revisions = sum(td.revision for td in listing.task_definitions)
        total_families = listed or len(families)
        estimate = math.ceil(revisions * total_families / max(len(listing.task_definitions), 1))
        cache.listing[where] = {
            "families": total_families,
            "selected": len(families),
            "activeRevisions": max(estimate, total_families),
        }
        return listing

    def _clusters(self, ecs: Any, selection: TaskDefinitionsSpec) -> list[str]:
        return [
            arn
            for page in ecs.get_paginator("list_clusters").paginate(maxResults=PAGE)
            for arn in page.get("clusterArns", [])
            if not selection.clusters
            or any(fnmatchcase(arn.rsplit("/", 1)[-1], g) for g in selection.clusters)
        ]

    def _running_tasks(
        self, ecs: Any, cluster: str, listing: TaskDefinitionListing, groups: RunningGroups, service: str = ""
    ) -> None:
        """A cluster's RUNNING tasks (of one service when named) into `groups`, DescribeTasks 100 a call."""
        kwargs: dict[str, Any] = {"cluster": cluster, "desiredStatus": "RUNNING", "maxResults": PAGE}
        if service:
            kwargs["serviceName"] = service
        arns = [
            t for page in ecs.get_paginator("list_tasks").paginate(**kwargs) for t in page.get("taskArns", [])
        ]
        for i in range(0, len(arns), DESCRIBE_TASKS_BATCH):
            tasks: list[dict[str, Any]] = []
            out = ecs.describe_tasks(cluster=cluster, tasks=arns[i : i + DESCRIBE_TASKS_BATCH])
            for failure in out.get("failures", []):
                # A task that stopped between the two calls is MISSING: it no longer runs.
                if failure.get("reason") != "MISSING":
                    listing.errors.append(f"task {failure.get('arn')}: {failure.get('reason')}")
            for t in out.get("tasks", []):
                try:
                    parse_td_arn(str(t.get("taskDefinitionArn", "")))
                except ValueError:
                    # Reported, never dropped silently, and one odd answer fails no other task.
                    listing.errors.append(f"task {t.get('taskArn')}: unreadable taskDefinitionArn")
                    continue
                tasks.append(t)
            groups.add(tasks)

    def _from_running(self, ecs: Any, selection: TaskDefinitionsSpec, region: str) -> TaskDefinitionListing:
        """The digests RUNNING tasks run: ListClusters, ListTasks pages, DescribeTasks by 100."""
        listing = TaskDefinitionListing()
        groups = RunningGroups(selection, region)
        for cluster in self._clusters(ecs, selection):
            self._running_tasks(ecs, cluster, listing, groups)
        listing.task_definitions = groups.result()
        listing.families_matched = len({td.family for td in listing.task_definitions})
        return listing

    def _revisions(
        self, ecs: Any, current: list[tuple[str, str, dict[str, Any]]]
    ) -> tuple[list[tuple[str, str, dict[str, Any], dict[str, Any]]], set[tuple[str, str]]]:
        """DescribeServiceRevisions, 20 a call, for (cluster, service, currentServiceRevisions[] entry).

        Returns (cluster, service, summary, revision) for each revision read, and the (cluster,
        service) pairs whose revisions could not be read (they fall back to their tasks).
        """
        by_arn = {str(summary["arn"]): (cluster, service, summary) for cluster, service, summary in current}
        arns = sorted(by_arn)
        read: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []
        fallback: set[tuple[str, str]] = set()
        for i in range(0, len(arns), DESCRIBE_REVISIONS_BATCH):
            batch = arns[i : i + DESCRIBE_REVISIONS_BATCH]
            try:
                out = ecs.describe_service_revisions(serviceRevisionArns=batch)
            except (ClientError, BotoCoreError) as exc:
                # Not granted (an older IAM policy), not offered (a partition or emulator without
                # it) or failing: the tasks of these services say what runs.
                log.info(
                    "%s: reading their tasks instead", map_aws_error(exc, "ecs:DescribeServiceRevisions")
                )
                fallback |= {by_arn[a][:2] for a in batch}
                continue
            seen = set()
            for rev in out.get("serviceRevisions", []):
                arn = str(rev.get("serviceRevisionArn", ""))
                if arn in by_arn and rev.get("containerImages") is not None:
                    cluster, service, summary = by_arn[arn]
                    read.append((cluster, service, summary, rev))
                    seen.add(arn)
            fallback |= {by_arn[a][:2] for a in batch if a not in seen}  # failures[] and odd answers
        return read, fallback

    def _service_running_view(
        self,
        ecs: Any,
        services: list[tuple[str, dict[str, Any]]],
        selection: TaskDefinitionsSpec,
        region: str,
        listing: TaskDefinitionListing,
    ) -> list[TaskDefinitionImages]:
        """What services run, from their current service revisions; from their tasks where those are unknown.

        A service revision (created since October 2024) records the digest of every container
        image (`containerImages[].imageDigest`) and DescribeServices gives each current revision's
        running task count, so no task is listed. Services deployed before that, or whose revisions
        cannot be read, fall back to ListTasks(serviceName) + DescribeTasks. A service running no
        task needs neither.
        """
        current: list[tuple[str, str, dict[str, Any]]] = []
        fallback: set[tuple[str, str]] = set()
        for cluster, svc in services:
            name = str(svc.get("serviceName") or str(svc.get("serviceArn", "")).rsplit("/", 1)[-1])
            revisions = svc.get("currentServiceRevisions") or []
            if revisions:
                current.extend((cluster, name, r) for r in revisions if r.get("arn"))
            elif int(svc.get("runningCount", 0) or 0) > 0:
                fallback.add((cluster, name))
        read, failed = self._revisions(ecs, current)
        fallback |= failed
        out = []
        for cluster, service, summary, rev in read:
            arn = str(rev.get("taskDefinition", ""))
            try:
                family, number = parse_td_arn(arn)
            except ValueError:
                listing.errors.append(f"service {service}: unreadable taskDefinition {arn!r}")
                continue
            tasks = int(summary.get("runningTaskCount", 0) or 0)
            if tasks <= 0 or not family_selected(family, selection.include, selection.exclude):
                continue
            images = (
                ContainerImage(
                    name=str(c.get("containerName", "")),
                    image=str(c.get("image", "")),
                    digest=str(c["imageDigest"]) if c.get("imageDigest") else None,
                )
                for c in rev.get("containerImages", [])
            )
            containers = tuple(sorted(images, key=lambda c: (c.name, c.image, c.digest or "")))
            out.append(
                TaskDefinitionImages(
                    arn=arn,
                    family=family,
                    revision=number,
                    containers=containers,
                    region=region,
                    service=service,
                    launch_type=str(rev.get("launchType", "")),
                    tasks=tasks,
                    cluster=cluster.rsplit("/", 1)[-1],
                )
            )
        groups = RunningGroups(selection, region)
        for cluster, service in sorted(fallback):
            self._running_tasks(ecs, cluster, listing, groups, service=service)
        return out + groups.result()

    def _from_services(
        self, ecs: Any, selection: TaskDefinitionsSpec, region: str, cache: RevisionCache
    ) -> TaskDefinitionListing:
        listing = TaskDefinitionListing()
        clusters = self._clusters(ecs, selection)
        arns: set[str] = set()
        described: list[tuple[str, dict[str, Any]]] = []
        for cluster in clusters:
            services = [
                s
                for page in ecs.get_paginator("list_services").paginate(cluster=cluster, maxResults=PAGE)
                for s in page.get("serviceArns", [])
            ]
            for i in range(0, len(services), DESCRIBE_SERVICES_BATCH):
                out = ecs.describe_services(
                    cluster=cluster, services=services[i : i + DESCRIBE_SERVICES_BATCH]
                )
                for failure in out.get("failures", []):
                    listing.errors.append(f"service {failure.get('arn')}: {failure.get('reason')}")
                for svc in out.get("services", []):
                    described.append((cluster, svc))
                    # During a rollout both the old and the new revision run: both matter.
                    for dep in svc.get("deployments", []) or [{"taskDefinition": svc.get("taskDefinition")}]:
                        if dep.get("taskDefinition"):
                            arns.add(str(dep["taskDefinition"]))
        selected = sorted(
            a for a in arns if family_selected(parse_td_arn(a)[0], selection.include, selection.exclude)
        )
        listing.families_matched = len({parse_td_arn(a)[0] for a in selected})
        to_describe = []
        for arn in selected:
            td = cache.get(arn)
            if td is None:
                to_describe.append(arn)
            else:
                listing.task_definitions.append(td)
        self._describe_all(ecs, to_describe, region, listing, cache)
        # The running view: the digests the services' current revisions run (issue #12).
        listing.task_definitions.extend(
            self._service_running_view(ecs, described, selection, region, listing)
        )
        return listing
