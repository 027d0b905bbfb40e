"""AWS Config `SelectAggregateResourceConfig`, emulated in the calling process (bench and tests).

moto 5.2.5 has no SelectAggregateResourceConfig (nor any advanced query), so source: awsConfig
cannot run against it. This emulation answers the call inside botocore, the way
`bench/inspector_fake.py` answers Inspector: a `before-call` handler registered last on config
clients returns the parsed response, so no HTTP request is made (the latency model and the call
counter, registered first, have already accounted the call). It is strict, so that what works here
would be accepted by AWS:

- the request body is checked with botocore's `ParamValidator` against the operation's input shape
  and against the maximums botocore leaves to the server (`Limit` at most 100, `Expression` at most
  4096 characters): a violation answers 400 ValidationException;
- the expression is parsed: `SELECT p[, ...] WHERE cond [AND cond ...]` with cond `p = 'v'` or
  `p IN ('v', ...)` - the subset of the documented grammar the operator uses; anything else, and any
  property that the Config resource schema does not list for AWS::ECS::TaskDefinition
  (`SCHEMA_PROPERTIES`, from awslabs/aws-config-resource-schema), answers 400
  InvalidExpressionException, so a query AWS would refuse cannot pass here;
- conditions on array members match when any element matches (Config's documented behaviour);
  selected members of an array come back as an array of objects holding the selected members;
- the aggregator must exist in the client's region (else NoSuchConfigurationAggregatorException);
  pages hold `Limit` rows (25 without one, as documented for non-aggregate queries), `NextToken` is
  opaque and bound to the query (a foreign one answers InvalidNextTokenException);
- every response is checked against the output shape before it is returned; each `Results` item
  is a JSON string, as Config sends it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from botocore.awsrequest import AWSResponse, HTTPHeaders

from bench.inspector_fake import strict_errors

#: Properties the Config resource schema lists for AWS::ECS::TaskDefinition that a query here may
#: name (a subset of config/properties/resource-types/AWS::ECS::TaskDefinition.properties.json).
SCHEMA_PROPERTIES = frozenset(
    {
        "accountId",
        "arn",
        "availabilityZone",
        "awsRegion",
        "configuration.ContainerDefinitions.Image",
        "configuration.ContainerDefinitions.Name",
        "configuration.Cpu",
        "configuration.ExecutionRoleArn",
        "configuration.Family",
        "configuration.Memory",
        "configuration.NetworkMode",
        "configuration.Status",
        "configuration.TaskDefinitionArn",
        "configuration.TaskRoleArn",
        "configurationItemCaptureTime",
        "configurationItemStatus",
        "resourceCreationTime",
        "resourceId",
        "resourceName",
        "resourceType",
        "tags.key",
        "tags.tag",
        "tags.value",
        "version",
    }
)
RESOURCE_TYPE = "AWS::ECS::TaskDefinition"
DEFAULT_PAGE = 25  # non-aggregate queries without Limit (API reference)
_PROP = r"[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z][A-Za-z0-9]*)*"
_VALUE = r"'(?:[^']|'')*'"
_QUERY_RE = re.compile(
    rf"^SELECT\s+(?P<select>{_PROP}(?:\s*,\s*{_PROP})*)\s+WHERE\s+(?P<where>.+)$", re.DOTALL
)
_COND_RE = re.compile(
    rf"^(?P<prop>{_PROP})\s*(?:=\s*(?P<eq>{_VALUE})|IN\s*\((?P<in>{_VALUE}(?:\s*,\s*{_VALUE})*)\))$"
)


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _unquote(text: str) -> str:
    return text.strip()[1:-1].replace("''", "'")


def parse_expression(expression: str) -> tuple[list[str], list[tuple[str, frozenset[str]]]]:
    """(selected properties, [(property, accepted values)]); raises _Refused as Config would."""
    m = _QUERY_RE.match(expression.strip())
    if m is None:
        raise _Refused("InvalidExpressionException", "expected SELECT <properties> WHERE <conditions>")
    select = [p.strip() for p in m["select"].split(",")]
    conditions = []
    for part in re.split(r"\s+AND\s+", m["where"].strip()):
        c = _COND_RE.match(part.strip())
        if c is None:
            raise _Refused("InvalidExpressionException", f"condition not understood: {part[:80]!r}")
        values = [c["eq"]] if c["eq"] is not None else re.findall(_VALUE, c["in"])
        conditions.append((c["prop"], frozenset(_unquote(v) for v in values)))
    for prop in select + [p for p, _ in conditions]:
        if prop not in SCHEMA_PROPERTIES:
            raise _Refused("InvalidExpressionException", f"{prop} is not a property of {RESOURCE_TYPE}")
    if ("resourceType", frozenset({RESOURCE_TYPE})) not in conditions:
        raise _Refused(
            "InvalidExpressionException", f"the emulation answers resourceType {RESOURCE_TYPE} only"
        )
    return select, conditions


def _values(doc: Any, path: list[str]) -> list[Any]:
    """Every value at `path`, looking into arrays (Config matches any element)."""
    if not path:
        return doc if isinstance(doc, list) else [doc]
    if isinstance(doc, list):
        return [v for item in doc for v in _values(item, path)]
    if isinstance(doc, dict) and path[0] in doc:
        return _values(doc[path[0]], path[1:])
    return []


def _project(doc: Any, paths: list[list[str]]) -> Any:
    """The selected members of `doc`, nested as in the document (arrays stay arrays)."""
    if isinstance(doc, list):
        return [_project(item, paths) for item in doc]
    if not isinstance(doc, dict):
        return doc
    out: dict[str, Any] = {}
    heads: dict[str, list[list[str]]] = {}
    for p in paths:
        heads.setdefault(p[0], []).append(p[1:])
    for head, rests in heads.items():
        if head not in doc:
            continue
        if any(not r for r in rests):
            out[head] = doc[head]
        else:
            out[head] = _project(doc[head], rests)
    return out


def _token(offset: int, query: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "q": query}).encode()).decode()


class ConfigAggregatorFake:
    """One aggregator's advanced query over configuration items given as documents; attach() it to clients.

    `items` are configuration items as Config stores them (accountId, awsRegion, arn, resourceType,
    configurationItemStatus, configuration{Family, Status, ContainerDefinitions[{Name, Image}]},
    tags[{key, value}]). `deny` answers AccessDeniedException to every call.
    """

    def __init__(
        self, items: Iterable[Mapping[str, Any]], *, name: str, region: str, deny: bool = False
    ) -> None:
        self.items = [dict(i) for i in items]
        self.name = name
        self.region = region
        self.deny = deny
        self.calls: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        self._lock = threading.Lock()
        self._matches: dict[str, list[str]] = {}  # query -> its rows, serialized once

    def attach(self, client: Any) -> None:
        """Answer config calls of this client (registered last: the call is accounted first)."""
        if client.meta.service_model.service_name == "config":
            region = client.meta.region_name
            client.meta.events.register_last(
                "before-call.config.*", lambda **kw: self._answer(region=region, **kw)
            )

    def _answer(
        self, model: Any, params: dict[str, Any], region: str, **_: Any
    ) -> tuple[AWSResponse, dict[str, Any]]:
        raw = params.get("body") or b"{}"
        body = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        with self._lock:
            self.calls[model.name] += 1
            self.requests.append(body)
        if model.name != "SelectAggregateResourceConfig":
            return self._error(region, "ValidationException", f"{model.name} is not emulated")
        errors = strict_errors(body, model.input_shape)
        if errors:
            with self._lock:
                self.rejected.append("; ".join(errors))
            return self._error(region, "ValidationException", "; ".join(errors))
        try:
            out = self._select(body, region)
        except _Refused as exc:
            with self._lock:
                self.rejected.append(f"{exc.code}: {exc}")
            return self._error(region, exc.code, str(exc))
        errors = strict_errors(out, model.output_shape)
        if errors:  # a bug in this emulation, not in the caller
            raise AssertionError(f"emulated answer breaks the model: {errors}")
        out["ResponseMetadata"] = {"HTTPStatusCode": 200, "HTTPHeaders": {}, "RetryAttempts": 0}
        return AWSResponse(f"https://config.{region}.amazonaws.com", 200, HTTPHeaders(), None), out

    @staticmethod
    def _error(region: str, code: str, message: str) -> tuple[AWSResponse, dict[str, Any]]:
        parsed = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": 400, "HTTPHeaders": {}, "RetryAttempts": 0},
        }
        return AWSResponse(f"https://config.{region}.amazonaws.com", 400, HTTPHeaders(), None), parsed

    def _select(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        if self.deny:
            raise _Refused("AccessDeniedException", "not authorized: config:SelectAggregateResourceConfig")
        if body["ConfigurationAggregatorName"] != self.name or region != self.region:
            raise _Refused(
                "NoSuchConfigurationAggregatorException",
                f"The configuration aggregator does not exist: {body['ConfigurationAggregatorName']}",
            )
        expression = body["Expression"]
        query = hashlib.sha256(f"{self.name}\n{expression}".encode()).hexdigest()[:16]
        rows = self._rows(query, expression)
        offset = 0
        if body.get("NextToken"):
            try:
                data = json.loads(base64.urlsafe_b64decode(body["NextToken"].encode()))
                if data["q"] != query:
                    raise ValueError("foreign token")
                offset = int(data["o"])
            except (ValueError, KeyError, TypeError):
                raise _Refused("InvalidNextTokenException", "The nextToken provided is invalid") from None
        limit = body.get("Limit") or body.get("MaxResults") or DEFAULT_PAGE
        page = rows[offset : offset + limit]
        out: dict[str, Any] = {
            "Results": page,
            "QueryInfo": {"SelectFields": [{"Name": p} for p in parse_expression(expression)[0]]},
        }
        if offset + limit < len(rows):
            out["NextToken"] = _token(offset + limit, query)
        return out

    def _rows(self, query: str, expression: str) -> list[str]:
        with self._lock:
            cached = self._matches.get(query)
        if cached is not None:
            return cached
        select, conditions = parse_expression(expression)
        split = [(p.split("."), values) for p, values in conditions]
        paths = [p.split(".") for p in select]
        rows = [
            json.dumps(_project(item, paths), separators=(",", ":"))
            for item in self.items
            if all(any(v in values for v in _values(item, path)) for path, values in split)
        ]
        with self._lock:
            self._matches[query] = rows
        return rows


def configuration_item(
    account: str,
    region: str,
    family: str,
    revision: int,
    containers: Iterable[tuple[str, str]],
    *,
    status: str = "ACTIVE",
    tags: Mapping[str, str] | None = None,
    item_status: str = "OK",
) -> dict[str, Any]:
    """A configuration item of one task-definition revision, as an aggregator holds it."""
    arn = f"arn:aws:ecs:{region}:{account}:task-definition/{family}:{revision}"
    return {
        "version": "1.3",
        "accountId": account,
        "awsRegion": region,
        "arn": arn,
        "resourceId": arn,
        "resourceType": "AWS::ECS::TaskDefinition",
        "configurationItemStatus": item_status,
        "configuration": {
            "Family": family,
            "Status": status,
            "TaskDefinitionArn": arn,
            "NetworkMode": "awsvpc",
            "ContainerDefinitions": [
                {"Name": n, "Image": i, "Essential": True, "Environment": [{"Name": "K", "Value": "v"}]}
                for n, i in containers
            ],
        },
        "tags": [{"key": k, "value": v, "tag": f"{k}={v}"} for k, v in sorted((tags or {}).items())],
    }
