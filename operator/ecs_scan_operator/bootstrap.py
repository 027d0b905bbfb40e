"""Wire the real adapters for one policy run (the composition root; tests build their own Ports)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from ecs_scan_operator.adapters.aws_session import AwsClients
from ecs_scan_operator.adapters.ecr import EcrDigestResolver
from ecs_scan_operator.adapters.ecs import EcsImageSource
from ecs_scan_operator.adapters.local_report import LocalReportSink
from ecs_scan_operator.adapters.s3_report import S3ReportSink
from ecs_scan_operator.adapters.scanning import RegistryFindingsSource
from ecs_scan_operator.core.policy import PolicyRef, PolicySpec
from ecs_scan_operator.pipeline import Ports
from ecs_scan_operator.ports import ReportSink, TicketSink


def build_ports(
    policy: PolicyRef,
    spec: PolicySpec,
    *,
    output_dir: Path | None = None,
    jira_credentials: Mapping[str, SecretStr] | None = None,
    clients: AwsClients | None = None,
    concurrency: int = 8,
) -> Ports:
    """Real adapters: ECS, ECR, Inspector, S3 (or a local folder), Jira when configured."""
    clients = clients or AwsClients(
        role_arn=spec.aws.role_arn,
        external_id=spec.aws.external_id,
        registry_role_arn=spec.aws.registry_role_arn,
        session_name=f"ecs-scan-{policy.namespace}-{policy.name}"[:64],
    )
    reports: ReportSink
    if output_dir is not None:
        reports = LocalReportSink(output_dir)
    else:
        reports = S3ReportSink(
            clients, spec.report.s3.bucket, spec.aws.all_regions[0], kms_key_id=spec.report.s3.kms_key_id
        )
    tickets: TicketSink | None = None
    if spec.jira is not None and jira_credentials is not None:
        tickets = _jira_sink(spec, jira_credentials)
    counter = clients.counter
    return Ports(
        images=EcsImageSource(clients, concurrency=concurrency),
        digests=EcrDigestResolver(clients),
        findings=RegistryFindingsSource(clients),
        reports=reports,
        tickets=tickets,
        aws_calls=counter.by_operation,
    )


def _jira_sink(spec: PolicySpec, credentials: Mapping[str, SecretStr]) -> TicketSink | None:
    """The Jira adapter, imported lazily so the AWS-only path never loads the jira client."""
    try:
        from ecs_scan_operator.adapters import jira as jira_adapter
    except ImportError:
        return None
    factory: Any = getattr(jira_adapter, "build_ticket_sink", None)
    if factory is None:
        return None
    sink: TicketSink = factory(spec, credentials)
    return sink
