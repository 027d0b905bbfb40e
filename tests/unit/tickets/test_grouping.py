"""Routing and grouping of images into Jira tickets (core/tickets/grouping.py)."""

from __future__ import annotations

from typing import Any

import pytest

from ecs_scan_operator.core.images import parse_image
from ecs_scan_operator.core.model import ImageResult, ImageStatus
from ecs_scan_operator.core.tickets.grouping import DEFAULT_ROUTE, group_images, resolve_routes, route_for
from tests.jira_server import fleet

ROUTES: list[dict[str, Any]] = [
    {"name": "payments", "match": {"families": ["pay-*"]}, "project": "OPS", "components": ["platform"]},
    {
        "name": "tagged",
        "match": {"taskDefinitionTags": {"team": "search-*"}},
        "assignee": "alice",
        "labels": ["x"],
    },
    {"name": "both", "match": {"families": ["ml-*"], "repositoryTags": {"owner": "ml"}}},
]


def _jira(**extra: Any) -> Any:
    spec = fleet.spec({"url": "https://jira.example.com", "labels": ["security"], "routes": ROUTES, **extra})
    assert spec.jira is not None
    return spec.jira


@pytest.mark.parametrize(
    ("families", "td_tags", "repo_tags", "route"),
    [
        ([("pay-api", "app")], {}, {}, "payments"),
        ([("web", "app"), ("pay-worker", "w")], {}, {}, "payments"),  # any family that uses it
        ([("web", "app")], {"team": "search-core"}, {}, "tagged"),  # tag value is a glob
        ([("web", "app")], {"team": "billing"}, {}, DEFAULT_ROUTE),
        ([("ml-train", "t")], {}, {"owner": "ml"}, "both"),
        ([("ml-train", "t")], {}, {}, DEFAULT_ROUTE),  # criteria are ANDed
        ([("ml-train", "t")], {}, {"owner": "data"}, DEFAULT_ROUTE),
        ([("pay-api", "app")], {"team": "search-core"}, {}, "payments"),  # first match wins
        ([("web", "app")], {}, {}, DEFAULT_ROUTE),
    ],
)
def test_route_for(
    families: list[tuple[str, str]], td_tags: dict[str, str], repo_tags: dict[str, str], route: str
) -> None:
    img = fleet.image("app/api", families=families, td_tags=td_tags, repository_tags=repo_tags)
    assert route_for(img, _jira()).name == route


def test_routes_fill_in_top_level_values() -> None:
    routes = {r.name: r for r in resolve_routes(_jira())}
    assert routes["payments"].project == "OPS"
    assert routes["payments"].components == ("platform",)
    assert routes["tagged"].project == "SEC"
    assert routes["tagged"].assignee == "alice"
    assert routes["tagged"].labels == ("security", "x")
    assert routes[DEFAULT_ROUTE].project == "SEC"
    assert routes[DEFAULT_ROUTE].labels == ("security",)
    assert list(routes)[-1] == DEFAULT_ROUTE


def test_group_per_repository_and_per_image() -> None:
    images = [
        fleet.image("app/api", "1.0"),
        fleet.image("app/api", "1.1"),
        fleet.image("app/web", "2.0"),
        fleet.image("app/api", "1.0", families=[("pay-api", "app")]),  # same repo, other route
    ]
    by_repo = group_images(images, _jira())
    assert [(g.route.name, g.title, len(g.images)) for g in by_repo] == [
        ("payments", "app/api", 1),
        (DEFAULT_ROUTE, "app/api", 2),
        (DEFAULT_ROUTE, "app/web", 1),
    ]
    by_image = group_images(images, _jira(groupBy="image"))
    assert [g.title for g in by_image] == ["app/api:1.0", "app/api:1.0", "app/api:1.1", "app/web:2.0"]
    assert by_image[0].group_id.endswith("/app/api:1.0")


def test_group_id_is_stable_and_pins_digests() -> None:
    digest = "sha256:" + "a" * 64
    ref = parse_image(f"{fleet.REGISTRY}/app/api@{digest}")
    img = ImageResult(ref=ref, status=ImageStatus.SCANNED)
    (group,) = group_images([img], _jira(groupBy="image"))
    assert group.group_id == f"{fleet.REGISTRY}/app/api@{digest}"


@pytest.mark.parametrize(
    "raw", ["public.ecr.aws/nginx/nginx:1", "docker.io/library/redis:7", "not a ref", "ghcr.io/a/b:1"]
)
def test_only_private_ecr_images_take_part(raw: str) -> None:
    img = ImageResult(ref=parse_image(raw), status=ImageStatus.UNSCANNABLE)
    assert group_images([img], _jira()) == []


def test_known_and_unknown_images() -> None:
    images = [fleet.image("app/api", "1.0"), fleet.image("app/api", "0.9", status=ImageStatus.NOT_SCANNED)]
    (group,) = group_images(images, _jira())
    assert [i.ref.tag for i in group.known] == ["1.0"]
    assert [i.ref.tag for i in group.unknown] == ["0.9"]
