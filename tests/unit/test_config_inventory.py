"""source: awsConfig, the pure part: the advanced query, and AWS Config rows -> newest ACTIVE revisions.

Rows are built as Config returns them for the operator's query (JSON strings holding the selected
members only), with `bench.config_fake`'s projection of full configuration items, so the shape
under test is the one the emulation validated against the Config resource schema.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from bench.config_fake import SCHEMA_PROPERTIES, _project, configuration_item, parse_expression

from ecs_scan_operator.core.config_inventory import (
    MAX_EXPRESSION,
    SELECTED,
    LatestRevisions,
    select_expression,
)
from ecs_scan_operator.core.policy import TaskDefinitionsSpec

A, B = "111111111111", "222222222222"
EU, US = "eu-west-1", "us-east-1"
PATHS = [p.split(".") for p in SELECTED]


def row(account: str, region: str, family: str, revision: int, image: str = "", **kw: Any) -> str:
    """One result row as Config answers the operator's query."""
    item = configuration_item(
        account, region, family, revision, [("app", image or f"repo/{family}:{revision}")], **kw
    )
    return json.dumps(_project(item, PATHS))


def reduce(rows: list[str], region: str = EU, **selection: Any) -> tuple[list[Any], list[str], int]:
    r = LatestRevisions(TaskDefinitionsSpec(**selection), region)
    r.add(rows)
    tds, errors = r.finish()
    return tds, errors, r.families


# --- the query ---


def test_the_query_names_only_properties_of_the_config_schema() -> None:
    expression = select_expression(EU, ["payments-api", "orders-worker"])
    select, conditions = parse_expression(expression)  # the emulation refuses anything else
    assert set(select) <= SCHEMA_PROPERTIES
    assert ("awsRegion", frozenset({EU})) in conditions
    assert ("configuration.Status", frozenset({"ACTIVE"})) in conditions
    assert ("configuration.Family", frozenset({"payments-api", "orders-worker"})) in conditions


@pytest.mark.parametrize(
    "include",
    [
        [],  # every family
        ["prod-*"],  # a glob: applied to the rows, not in SQL
        ["payments-api", "prod-*"],  # one glob among names: no IN either
        ["svc.name"],  # a literal that cannot be a family name (ECS allows [A-Za-z0-9_-]) is not quoted
    ],
)
def test_globs_stay_out_of_the_sql(include: list[str]) -> None:
    _, conditions = parse_expression(select_expression(EU, include))
    assert all(p != "configuration.Family" for p, _ in conditions)


def test_a_long_list_of_names_falls_back_to_filtering_rows() -> None:
    names = [f"family-with-a-long-name-{i:04d}" for i in range(200)]
    expression = select_expression(EU, names)
    assert len(expression) <= MAX_EXPRESSION
    assert "configuration.Family IN" not in expression


@pytest.mark.parametrize("region", ["", "eu-west-1'; --", "EU-WEST-1", "eu-west-1 OR 1=1"])
def test_a_region_that_is_not_one_is_refused(region: str) -> None:
    with pytest.raises(ValueError, match="region"):
        select_expression(region)


# --- the reduction ---


def test_revisions_reduce_to_the_newest_active_per_account_region_and_family() -> None:
    rows = [
        row(A, EU, "web", 1),
        row(A, EU, "web", 3),
        row(A, EU, "web", 2),
        row(A, EU, "web", 4, status="INACTIVE"),  # deregistered: the newest ACTIVE is 3
        row(B, EU, "web", 7),  # another account: its own family
        row(A, US, "web", 9),  # another region: another query
        row(A, EU, "job", 5, item_status="ResourceDeleted"),  # deleted: gone
        row(A, EU, "job", 2),
    ]
    tds, errors, families = reduce(rows)
    assert errors == []
    assert [(t.account, t.family, t.revision) for t in tds] == [(A, "job", 2), (A, "web", 3), (B, "web", 7)]
    assert families == 3
    web = tds[1]
    assert web.arn == f"arn:aws:ecs:{EU}:{A}:task-definition/web:3"
    assert web.region == EU
    assert [(c.name, c.image) for c in web.containers] == [("app", "repo/web:3")]


def test_the_order_of_rows_does_not_matter() -> None:
    rows = [row(acct, EU, f"f{i % 7}", i // 7 + 1) for acct in (A, B) for i in range(60)]
    expected = reduce(rows)
    for seed in range(5):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        assert reduce(shuffled) == expected


def test_tags_come_with_the_revision() -> None:
    tds, _, _ = reduce([row(A, EU, "web", 1, tags={"team": "payments", "env": "prod"})])
    assert tds[0].tags == (("env", "prod"), ("team", "payments"))


@pytest.mark.parametrize(
    ("include", "exclude", "kept"),
    [
        ([], [], ["prod-api", "prod-api-canary", "staging-api"]),
        (["prod-*"], [], ["prod-api", "prod-api-canary"]),
        (["prod-*"], ["*-canary"], ["prod-api"]),
        (["staging-api"], [], ["staging-api"]),
        ([], ["*"], []),
    ],
)
def test_include_and_exclude_apply_to_the_family(
    include: list[str], exclude: list[str], kept: list[str]
) -> None:
    rows = [row(A, EU, f, 1) for f in ("prod-api", "prod-api-canary", "staging-api")]
    tds, errors, families = reduce(rows, include=include, exclude=exclude)
    assert [t.family for t in tds] == kept
    assert families == len(kept)
    assert errors == []


# --- malformed rows: reported, never fatal ---

GOOD = row(A, EU, "good", 1)


def _doc(**changes: Any) -> str:
    doc = json.loads(row(A, EU, "web", 2))
    for path, value in changes.items():
        target = doc
        *head, last = path.split("__")
        for part in head:
            target = target[part]
        if value is ...:
            del target[last]
        else:
            target[last] = value
    return json.dumps(doc)


UNIDENTIFIED = {
    "not JSON": "{not json",
    "empty": "",
    "a JSON array": "[]",
    "null": "null",
    "a string": '"arn:aws:ecs:eu-west-1:111111111111:task-definition/web:2"',
    "no accountId": _doc(accountId=...),
    "accountId not 12 digits": _doc(accountId="1234"),
    "accountId a number": _doc(accountId=111111111111),
    "no awsRegion": _doc(awsRegion=...),
    "no arn": _doc(arn=...),
    "arn of another resource": _doc(arn=f"arn:aws:ecs:{EU}:{A}:service/c/web"),
    "arn without a revision": _doc(arn=f"arn:aws:ecs:{EU}:{A}:task-definition/web"),
    "arn of another account": _doc(arn=f"arn:aws:ecs:{EU}:{B}:task-definition/web:2"),
    "arn of another region": _doc(arn=f"arn:aws:ecs:{US}:{A}:task-definition/web:2"),
    "Family differs from the arn": _doc(configuration__Family="other"),
    "configuration not an object": _doc(configuration="x"),
}
BROKEN_CONTENT = {
    "no ContainerDefinitions": _doc(configuration__ContainerDefinitions=...),
    "no containers": _doc(configuration__ContainerDefinitions=[]),
    "a container without Image": _doc(configuration__ContainerDefinitions=[{"Name": "app"}]),
    "an empty Image": _doc(configuration__ContainerDefinitions=[{"Name": "app", "Image": ""}]),
    "Image not a string": _doc(configuration__ContainerDefinitions=[{"Name": "app", "Image": 7}]),
    "a container without Name": _doc(configuration__ContainerDefinitions=[{"Image": "x:1"}]),
    "tags not a list": _doc(tags={"team": "x"}),
    "a tag without key": _doc(tags=[{"value": "x"}]),
}


@pytest.mark.parametrize("bad", list(UNIDENTIFIED.values()), ids=list(UNIDENTIFIED))
def test_a_row_without_a_usable_identity_is_reported_and_the_rest_kept(bad: str) -> None:
    tds, errors, _ = reduce([GOOD, bad, row(A, EU, "other", 4)])
    assert [t.family for t in tds] == ["good", "other"]
    assert len(errors) == 1
    assert "AWS Config row 2" in errors[0] or "task-definition/web:2" in errors[0]


@pytest.mark.parametrize("bad", list(BROKEN_CONTENT.values()), ids=list(BROKEN_CONTENT))
def test_a_broken_newest_revision_is_reported_and_nothing_older_scanned_instead(bad: str) -> None:
    # web:1 is fine, web:2 (the newest) is broken: scanning web:1 would report an image not deployed.
    tds, errors, families = reduce([GOOD, row(A, EU, "web", 1), bad])
    assert [t.family for t in tds] == ["good"]
    assert families == 2
    assert len(errors) == 1
    assert "task-definition/web:2" in errors[0]
    assert "family not scanned" in errors[0]


@pytest.mark.parametrize("bad", list(BROKEN_CONTENT.values()), ids=list(BROKEN_CONTENT))
def test_a_broken_older_revision_does_not_matter(bad: str) -> None:
    tds, errors, _ = reduce([bad, row(A, EU, "web", 3)])
    assert [(t.family, t.revision) for t in tds] == [("web", 3)]
    assert errors == []


def test_errors_are_bounded() -> None:
    rows = ["{broken"] * 500 + [GOOD]
    r = LatestRevisions(TaskDefinitionsSpec(), EU, max_errors=10)
    r.add(rows)
    tds, errors = r.finish()
    assert [t.family for t in tds] == ["good"]
    assert len(errors) == 11
    assert errors[-1] == "AWS Config: 490 more malformed row(s) not listed"
    assert r.finish() == (tds, errors)  # finishing twice says the same


def test_error_messages_do_not_echo_row_content() -> None:
    secret = "s3cr3t-value-in-an-image-field" * 10
    bad = _doc(configuration__ContainerDefinitions=[{"Name": "app", "Image": 7, "Other": secret}])
    _, errors, _ = reduce([bad, _doc(accountId=secret)])
    assert errors
    assert all(secret[:20] not in e for e in errors)
