"""Jira routing and grouping: which route takes an image, and which images share a ticket. Pure.

Routes are tried in order; the first whose `match` fits an image takes it, else the default
route made of the top-level `jira` values. A route's criteria are ANDed: a family glob must
match one of the families that use the image (an account or region glob: one of the accounts or
regions whose task definitions use it), every task-definition tag must be present (the
value is a glob) on the task definitions that use it, and every repository tag on its ECR
repository. Within a route, images are grouped per repository (`groupBy: repository`) or per
image reference (`groupBy: image`). Only private ECR images take part: nothing else is scanned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from ecs_scan_operator.core.model import ImageResult, ImageStatus, RefKind
from ecs_scan_operator.core.policy import GroupBy, JiraRoute, JiraSpec, RouteMatch

DEFAULT_ROUTE = "default"


@dataclass(frozen=True)
class Route:
    """A route with the top-level values filled in: where one group's ticket goes."""

    name: str
    project: str
    components: tuple[str, ...] = ()
    assignee: str | None = None
    labels: tuple[str, ...] = ()  # the top-level labels, then the route's own


@dataclass(frozen=True)
class Group:
    """The images that share one ticket."""

    route: Route
    group_id: str  # stable: `registry/repository` or `registry/repository:tag|@digest`
    title: str  # short, for people: `repository` or `repository:tag`
    images: tuple[ImageResult, ...]

    @property
    def known(self) -> tuple[ImageResult, ...]:
        """Images whose findings were read this run."""
        return tuple(i for i in self.images if i.status is ImageStatus.SCANNED)

    @property
    def unknown(self) -> tuple[ImageResult, ...]:
        """Images this run knows nothing about (not covered, not found, failed...)."""
        return tuple(i for i in self.images if i.status is not ImageStatus.SCANNED)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def resolve_routes(jira: JiraSpec) -> list[Route]:
    """The named routes in order, then the default route; unset values come from the top level."""
    out = [
        Route(
            name=r.name,
            project=r.project or jira.project,
            components=_unique(r.components),
            assignee=r.assignee,
            labels=_unique([*jira.labels, *r.labels]),
        )
        for r in jira.routes
    ]
    out.append(Route(name=DEFAULT_ROUTE, project=jira.project, labels=_unique(jira.labels)))
    return out


def _tags_match(wanted: Mapping[str, str], have: Mapping[str, str]) -> bool:
    return all(k in have and fnmatchcase(have[k], v) for k, v in wanted.items())


def route_matches(match: RouteMatch, image: ImageResult) -> bool:
    """True when every criterion of `match` fits the image (families: any family using it)."""
    if match.families and not any(fnmatchcase(f, g) for f in image.families for g in match.families):
        return False
    if match.accounts and not any(fnmatchcase(a, g) for a in image.accounts for g in match.accounts):
        return False
    if match.regions and not any(fnmatchcase(r, g) for r in image.regions for g in match.regions):
        return False
    if not _tags_match(match.task_definition_tags, image.td_tags):
        return False
    return _tags_match(match.repository_tags, image.repository_tags)


def route_for(image: ImageResult, jira: JiraSpec, routes: Sequence[Route] | None = None) -> Route:
    """The first route whose match fits the image, else the default route."""
    resolved = routes if routes is not None else resolve_routes(jira)
    by_name = {r.name: r for r in resolved}
    spec_route: JiraRoute
    for spec_route in jira.routes:
        if route_matches(spec_route.match, image):
            return by_name[spec_route.name]
    return by_name[DEFAULT_ROUTE]


def group_of(image: ImageResult, group_by: GroupBy) -> tuple[str, str]:
    """(group id, title) of one image under `groupBy`."""
    ref = image.ref
    base = f"{ref.registry}/{ref.repository}"
    if group_by is GroupBy.REPOSITORY:
        return base, ref.repository
    # Per image: the reference as the task definition writes it (a digest pins it, else the tag).
    # A running image (source: running) is `tag@digest` with the digest ECS recorded, not one the
    # task definition pinned: it groups under its tag, so the digest that replaces a vulnerable
    # one lands in the same ticket and closes it as fixed (rather than orphaning it as gone).
    pinned = ref.digest and not (ref.tag and _running(image))
    suffix = f"@{ref.digest}" if pinned else f":{ref.tag or 'latest'}"
    return base + suffix, ref.repository + suffix


def _running(image: ImageResult) -> bool:
    return any(u.tasks for u in image.uses)


def group_images(images: Iterable[ImageResult], jira: JiraSpec) -> list[Group]:
    """Route and group the run's private ECR images; sorted by (route, group id)."""
    routes = resolve_routes(jira)
    buckets: dict[tuple[str, str], tuple[Route, str, list[ImageResult]]] = {}
    for img in images:
        if img.ref.kind is not RefKind.ECR:
            continue
        route = route_for(img, jira, routes)
        gid, title = group_of(img, jira.group_by)
        buckets.setdefault((route.name, gid), (route, title, []))[2].append(img)
    order = {r.name: i for i, r in enumerate(routes)}
    out = [
        Group(route=route, group_id=gid, title=title, images=tuple(sorted(imgs, key=lambda i: i.ref.raw)))
        for (_, gid), (route, title, imgs) in buckets.items()
    ]
    out.sort(key=lambda g: (order[g.route.name], g.group_id))
    return out
