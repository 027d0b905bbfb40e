"""Wire the real adapters for one policy run (the composition root; tests build their own Ports)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import SecretStr

from ecs_scan_operator.adapters.aws_session import AwsClients
from ecs_scan_operator.adapters.ecr import EcrDigestResolver
from ecs_scan_operator.adapters.ecs import EcsImageSource
from ecs_scan_operator.adapters.local_report import LocalReportSink
from ecs_scan_operator.adapters.s3_report import S3ReportSink
from ecs_scan_operator.adapters.scanning import RegistryFindingsSource
from ecs_scan_operator.core.policy import PolicyRef, PolicySpec
from ecs_scan_operator.core.tickets import TicketReport, TicketRequest
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
    notify_secrets: Callable[[str], Mapping[str, SecretStr]] | None = None,
    notify_allow_private: bool = False,
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
    if spec.jira is not None:
        tickets = _jira_sink(spec, jira_credentials)
    notifier = None
    if spec.notify and notify_secrets is not None:
        from ecs_scan_operator.adapters.notify_http import HttpNotifier

        notifier = HttpNotifier(notify_secrets, allow_private=notify_allow_private)
    counter = clients.counter
    return Ports(
        images=EcsImageSource(clients, concurrency=concurrency),
        digests=EcrDigestResolver(clients),
        findings=RegistryFindingsSource(clients),
        reports=reports,
        tickets=tickets,
        aws_calls=counter.by_operation,
        aws_errors=counter.errors_by_operation,
        notifier=notifier,
    )


class UnavailableTicketSink:
    """Stands in when a policy asks for Jira but credentials are missing or invalid: the run says so."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def sync(self, request: TicketRequest) -> TicketReport:
        """Nothing is written; the reason becomes TicketsSynced=False on the policy."""
        return TicketReport(errors=[self.reason], synced=False, reason="JiraUnavailable")


def _jira_sink(spec: PolicySpec, credentials: Mapping[str, SecretStr] | None) -> TicketSink:
    """The Jira adapter, imported lazily so an AWS-only run never loads the jira client."""
    if credentials is None:
        return UnavailableTicketSink(
            "no Jira credentials (Secret spec.jira.credentialsSecret, or JIRA_* env)"
        )
    from ecs_scan_operator.adapters.jira import build_ticket_sink

    try:
        sink = build_ticket_sink(spec, credentials)
    except ValueError as exc:  # the message names the missing key, never a value
        return UnavailableTicketSink(f"invalid Jira credentials: {exc}")
    return sink if sink is not None else UnavailableTicketSink("jira is not configured")
