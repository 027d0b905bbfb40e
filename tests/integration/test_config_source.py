"""source: awsConfig: the SelectAggregateResourceConfig adapter, and a whole run through it.

Where the answers are emulated, and why: moto 5.2.5 has no SelectAggregateResourceConfig (no AWS
Config advanced query at all). Two stand-ins, each checked against botocore's service model:

- botocore's Stubber (the first tests): every request the adapter sends is validated against the
  operation's input shape, and `expected_params` pins it (ConfigurationAggregatorName, Expression,
  Limit, NextToken); every stubbed answer is validated against the output shape. This proves the
  paging (moto could not: it has no such call), the client's region and the error mapping.
- `bench.config_fake.ConfigAggregatorFake` (the end-to-end tests): a before-call handler on config
  clients that validates each request with botocore's ParamValidator plus the server-side maximums,
  parses the SQL (refusing properties the Config resource schema does not list for
  AWS::ECS::TaskDefinition), pages as Config does and validates its answers against the output
  shape. Everything else in those runs (ECR images, BASIC scan findings, S3 reports) is moto's
  server over HTTP.
"""

from __future__ import annotations

import json
import math
from typing import Any

import boto3
import pytest
from bench.config_fake import ConfigAggregatorFake, _project, configuration_item
from botocore.stub import Stubber
from pydantic import SecretStr

from ecs_scan_operator.adapters.aws_config import ConfigImageSource
from ecs_scan_operator.adapters.aws_session import AwsClients
from ecs_scan_operator.bootstrap import build_ports
from ecs_scan_operator.core.config_inventory import SELECTED, select_expression
from ecs_scan_operator.core.policy import ConfigAggregatorSpec, PolicyRef, TaskDefinitionsSpec, parse_spec
from ecs_scan_operator.core.result import Outcome
from ecs_scan_operator.core.state import RevisionCache
from ecs_scan_operator.errors import AuthError, ErrorCause, NotFoundError, PermanentError, TransientError
from ecs_scan_operator.pipeline import run_policy
from tests.support.fakes import FixedClock

pytestmark = pytest.mark.integration
A, B = "123456789012", "210987654321"  # A: moto's default account, which holds the ECR registry
US, EU = "us-east-1", "eu-west-1"
ECR = f"{A}.dkr.ecr.{US}.amazonaws.com"
PATHS = [p.split(".") for p in SELECTED]


def row(account: str, region: str, family: str, revision: int, image: str) -> str:
    """A result row as Config answers the operator's query (the selected members only)."""
    return json.dumps(
        _project(configuration_item(account, region, family, revision, [("app", image)]), PATHS)
    )


class StubbedConfig:
    """AwsClients whose config clients are wrapped by an active Stubber."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for k, v in {
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": EU,
        }.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
        self.stubbers: list[Stubber] = []
        self.regions: list[str] = []
        self.clients = AwsClients(hooks=[self._hook])

    def _hook(self, client: Any) -> None:
        stub = Stubber(client)
        stub.activate()
        self.stubbers.append(stub)
        self.regions.append(client.meta.region_name)

    def source(self) -> ConfigImageSource:
        # The aggregator lives in us-east-1; the policy scans eu-west-1 (its first region).
        return ConfigImageSource(self.clients, ConfigAggregatorSpec(name="org", region=US), EU)


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> StubbedConfig:
    return StubbedConfig(monkeypatch)


def _stub_first_call(stubbed: StubbedConfig, source: ConfigImageSource) -> Stubber:
    source._clients.workload("config", US)  # created as the adapter will get it: same key, same client
    return stubbed.stubbers[0]


def test_pages_are_followed_100_rows_at_a_time_from_the_aggregators_region(stubbed: StubbedConfig) -> None:
    source = stubbed.source()
    stub = _stub_first_call(stubbed, source)
    selection = TaskDefinitionsSpec(include=["web*", "job"], exclude=["*-sandbox"])
    expression = select_expression(EU, selection.include)
    pages = [
        [row(A, EU, "web", 1, f"{ECR}/web:1"), row(A, EU, "web", 2, f"{ECR}/web:2"), "{broken"],
        [row(B, EU, "web", 5, f"{ECR}/web:5"), row(A, EU, "web-sandbox", 3, f"{ECR}/web:3")],
        [row(B, EU, "job", 1, f"{ECR}/job:1"), row(A, EU, "other", 1, f"{ECR}/other:1")],
    ]
    tokens = [None, "t1", "t2"]
    for i, results in enumerate(pages):
        answer: dict[str, Any] = {
            "Results": results,
            "QueryInfo": {"SelectFields": [{"Name": p} for p in SELECTED]},
        }
        if i + 1 < len(pages):
            answer["NextToken"] = tokens[i + 1]
        params = {"ConfigurationAggregatorName": "org", "Expression": expression, "Limit": 100}
        if tokens[i]:
            params["NextToken"] = tokens[i]
        stub.add_response("select_aggregate_resource_config", answer, params)

    listing = source.task_definitions(selection, EU, RevisionCache())

    stub.assert_no_pending_responses()  # every page was read, with the previous page's token
    assert stubbed.regions == [US]  # one client, in the aggregator's region
    assert [(t.account, t.family, t.revision) for t in listing.task_definitions] == [
        (A, "web", 2),
        (B, "job", 1),
        (B, "web", 5),
    ]
    assert listing.families_matched == 3
    assert listing.errors == ["AWS Config row 3: not a JSON document"]


def test_a_multi_account_policy_queries_each_region_once_and_gets_its_accounts_share(
    stubbed: StubbedConfig,
) -> None:
    # The fan-out asks per (account, region); the aggregator answers for every account at once.
    source = stubbed.source()
    stub = _stub_first_call(stubbed, source)
    selection = TaskDefinitionsSpec()
    answer = {
        "Results": [row(A, EU, "web", 2, f"{ECR}/web:2"), row(B, EU, "job", 1, f"{ECR}/job:1"), "{broken"],
        "QueryInfo": {"SelectFields": [{"Name": p} for p in SELECTED]},
    }
    params = {"ConfigurationAggregatorName": "org", "Expression": select_expression(EU, []), "Limit": 100}
    stub.add_response("select_aggregate_resource_config", answer, params)  # one answer: a second query fails

    mine = source.task_definitions(selection, EU, RevisionCache(), account=A)
    theirs = source.task_definitions(selection, EU, RevisionCache(), account=B)
    nobody = source.task_definitions(selection, EU, RevisionCache(), account="999999999999")

    stub.assert_no_pending_responses()
    assert [(t.account, t.family) for t in mine.task_definitions] == [(A, "web")]
    assert [(t.account, t.family) for t in theirs.task_definitions] == [(B, "job")]
    assert nobody.task_definitions == [] and nobody.families_matched == 0
    assert mine.errors == ["AWS Config row 3: not a JSON document"]  # told once, not per account
    assert theirs.errors == nobody.errors == []


ERRORS = [
    ("AccessDeniedException", 400, AuthError, "needs config:SelectAggregateResourceConfig on aggregator org"),
    ("NoSuchConfigurationAggregatorException", 400, NotFoundError, "spec.taskDefinitions.configAggregator"),
    ("InvalidExpressionException", 400, PermanentError, "was refused"),
    ("InvalidNextTokenException", 400, PermanentError, "InvalidNextTokenException"),
    ("ThrottlingException", 400, TransientError, "ThrottlingException"),
    ("InternalServerError", 500, TransientError, "InternalServerError"),
]


@pytest.mark.parametrize(("code", "status", "kind", "says"), ERRORS, ids=[e[0] for e in ERRORS])
@pytest.mark.parametrize("on_page", [1, 2])
def test_a_failed_page_fails_the_region_with_a_clear_error(
    stubbed: StubbedConfig, code: str, status: int, kind: type[Exception], says: str, on_page: int
) -> None:
    """First page or a later one: the region's listing fails whole (no half listing), with its cause."""
    source = stubbed.source()
    stub = _stub_first_call(stubbed, source)
    if on_page == 2:
        stub.add_response(
            "select_aggregate_resource_config",
            {"Results": [row(A, EU, "web", 1, f"{ECR}/web:1")], "NextToken": "t1"},
        )
    stub.add_client_error("select_aggregate_resource_config", code, "refused", http_status_code=status)
    with pytest.raises(kind) as info:
        source.task_definitions(TaskDefinitionsSpec(), EU, RevisionCache())
    err = info.value
    assert says in str(err)
    assert "config:SelectAggregateResourceConfig" in str(err)
    assert getattr(err, "cause", None) == ErrorCause("config", "SelectAggregateResourceConfig", code)
    stub.assert_no_pending_responses()


# --- whole runs: moto for ECR and S3, the Config emulation for the aggregator ---


def client(service: Any) -> Any:
    return boto3.client(service, region_name=US)


MANIFEST = json.dumps(
    {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}
)


def _estate() -> list[dict[str, Any]]:
    """Two accounts, two regions; 60 families of account A in us-east-1 with 3 revisions each (paged)."""
    items = []
    for i in range(60):
        for rev in (1, 2, 3):
            items.append(configuration_item(A, US, f"web-{i:02d}", rev, [("app", f"{ECR}/web:{rev}")]))
    items.append(configuration_item(A, US, "web-00", 4, [("app", f"{ECR}/web:9")], status="INACTIVE"))
    items.append(configuration_item(B, US, "job", 7, [("app", f"{ECR}/job:1"), ("log", "busybox:1.36")]))
    items.append(configuration_item(B, EU, "job", 2, [("app", f"{ECR}/job:1")], tags={"team": "data"}))
    items.append(configuration_item(A, EU, "web-sandbox", 1, [("app", f"{ECR}/web:1")]))
    items.append(configuration_item(A, "ap-south-1", "web-77", 1, [("app", f"{ECR}/web:7")]))  # not scanned
    return items


def _spec(bucket: str) -> Any:
    return parse_spec(
        {
            "schedule": "@daily",
            "aws": {"regions": [US, EU]},
            "taskDefinitions": {
                "source": "awsConfig",
                "configAggregator": {"name": "org-aggregator"},  # its region: the first of spec.aws
                "exclude": ["*-sandbox"],
            },
            "report": {"s3": {"bucket": bucket, "prefix": "scans"}},
        }
    )


def test_an_org_wide_run_reads_every_account_from_config_and_calls_no_ecs(aws: str) -> None:
    ecr = client("ecr")
    client("s3").create_bucket(Bucket="org-reports")
    for repo, tags in (("web", ("1", "2", "3")), ("job", ("1",))):
        ecr.create_repository(repositoryName=repo)
        for n, tag in enumerate(tags):
            ecr.put_image(
                repositoryName=repo,
                imageManifest=MANIFEST,
                imageTag=tag,
                imageDigest="sha256:" + f"{repo}{n}".ljust(64, "0"),
            )
    fake = ConfigAggregatorFake(_estate(), name="org-aggregator", region=US)
    spec = _spec("org-reports")
    ref = PolicyRef(namespace="sec", name="org")
    ports = build_ports(ref, spec, clients=AwsClients(hooks=[fake.attach]), state_key=SecretStr("s" * 32))
    result = run_policy(ref, spec, ports, FixedClock(), run_id="run-1")

    assert fake.rejected == []  # every request was one Config accepts
    assert result.outcome is Outcome.SUCCEEDED, result.errors
    # us-east-1: 180 ACTIVE rows of A + 1 of B = 2 pages; eu-west-1: 2 rows = 1 page. No ECS call at all.
    assert result.aws_calls["config:SelectAggregateResourceConfig"] == math.ceil(181 / 100) + 1
    assert not [op for op in result.aws_calls if op.startswith("ecs:")]
    assert result.families_matched == 62  # 60 web-* of A, job of B in each region
    assert result.task_definitions == 62

    folder = "scans/2026-11-28/sec/org/run-1"
    body = client("s3").get_object(Bucket="org-reports", Key=f"{folder}/index.json")["Body"].read()
    images = {i["image"]: i for i in json.loads(body)["images"]}
    # The newest ACTIVE revision of each family: web:3 (web-00's INACTIVE revision 4 uses web:9).
    assert set(images) == {f"{ECR}/web:3", f"{ECR}/job:1", "busybox:1.36"}
    job = images[f"{ECR}/job:1"]
    assert job["families"] == ["job"]
    assert job["report"]  # moto's canned BASIC finding makes it affected: it has its own object
    doc = json.loads(
        client("s3").get_object(Bucket="org-reports", Key=f"{folder}/{job['report']}")["Body"].read()
    )
    # The per-image object names the account that owns each use.
    assert {(u["account"], u["region"], u["revision"]) for u in doc["uses"]} == {(B, US, 7), (B, EU, 2)}


def test_an_aggregator_that_denies_fails_each_region_naming_the_cause(aws: str) -> None:
    client("s3").create_bucket(Bucket="org-reports")
    fake = ConfigAggregatorFake(_estate(), name="org-aggregator", region=US, deny=True)
    spec = _spec("org-reports")
    ref = PolicyRef(namespace="sec", name="org")
    ports = build_ports(ref, spec, clients=AwsClients(hooks=[fake.attach]), state_key=SecretStr("s" * 32))
    result = run_policy(ref, spec, ports, FixedClock(), run_id="run-2")

    assert result.outcome is not Outcome.SUCCEEDED
    text = json.dumps(result.to_dict())
    assert "taskDefinitions[us-east-1]" in text
    assert "taskDefinitions[eu-west-1]" in text
    assert "config:SelectAggregateResourceConfig AccessDeniedException" in text
    assert not [op for op in result.aws_calls if op.startswith("ecs:")]


# --- the emulation refuses what Config would refuse (so the tests above could fail) ---


@pytest.fixture
def config_client(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ConfigAggregatorFake]:
    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    fake = ConfigAggregatorFake(_estate(), name="org", region=US)
    c = boto3.client("config", region_name=US)
    fake.attach(c)
    return c, fake


TD = "resourceType = 'AWS::ECS::TaskDefinition'"
REFUSED = {
    # Config refuses these:
    "a property the schema does not list": (
        {"Expression": f"SELECT configuration.Revision WHERE {TD}"},
        "InvalidExpression",
    ),
    "Limit above 100": ({"Limit": 101}, "ValidationException"),
    "an expression over 4096 characters": (
        {"Expression": f"SELECT arn WHERE {TD}" + " " * 4096},
        "ValidationException",
    ),
    "a token it did not issue": ({"NextToken": "not-a-token"}, "InvalidNextTokenException"),
    "an unknown aggregator": (
        {"ConfigurationAggregatorName": "other"},
        "NoSuchConfigurationAggregatorException",
    ),
    # Config may accept these, the emulation does not (it parses only what the operator sends):
    "LIKE": (
        {"Expression": f"SELECT arn WHERE {TD} AND configuration.Family LIKE 'w%'"},
        "InvalidExpression",
    ),
    "an aggregate function": ({"Expression": f"SELECT arn, COUNT(*) WHERE {TD}"}, "InvalidExpression"),
    "another resource type": (
        {"Expression": "SELECT arn WHERE resourceType = 'AWS::ECS::Service'"},
        "InvalidExpression",
    ),
}


@pytest.mark.parametrize(("change", "code"), list(REFUSED.values()), ids=list(REFUSED))
def test_the_emulation_refuses_what_config_would_and_what_it_does_not_emulate(
    config_client: tuple[Any, ConfigAggregatorFake], change: dict[str, Any], code: str
) -> None:
    c, fake = config_client
    request = {
        "ConfigurationAggregatorName": "org",
        "Expression": select_expression(US),
        "Limit": 100,
    } | change
    with pytest.raises(c.exceptions.ClientError) as info:
        c.select_aggregate_resource_config(**request)
    assert code in info.value.response["Error"]["Code"]
    assert fake.rejected


def test_the_emulation_pages_and_binds_tokens_to_their_query(
    config_client: tuple[Any, ConfigAggregatorFake],
) -> None:
    c, _ = config_client
    first = c.select_aggregate_resource_config(
        ConfigurationAggregatorName="org", Expression=select_expression(US), Limit=100
    )
    assert len(first["Results"]) == 100
    assert first["QueryInfo"]["SelectFields"][0] == {"Name": "accountId"}
    other = select_expression(US, ["web-00"])
    with pytest.raises(c.exceptions.ClientError, match="InvalidNextToken"):
        c.select_aggregate_resource_config(
            ConfigurationAggregatorName="org", Expression=other, Limit=100, NextToken=first["NextToken"]
        )
    narrowed = c.select_aggregate_resource_config(ConfigurationAggregatorName="org", Expression=other)
    assert len(narrowed["Results"]) == 3  # web-00's three ACTIVE revisions (its INACTIVE one left out)
    assert "NextToken" not in narrowed
