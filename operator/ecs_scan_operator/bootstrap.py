"""Wire the real adapters for one policy run (the composition root; tests build their own Ports)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ecs_scan_operator.adapters.aws_session import AwsClients
from ecs_scan_operator.adapters.ecr import EcrDigestResolver
from ecs_scan_operator.adapters.ecs import EcsImageSource
from ecs_scan_operator.adapters.inspector import InspectorVulnerabilities
from ecs_scan_operator.adapters.local_report import LocalReportSink
from ecs_scan_operator.adapters.s3_report import S3ReportSink
from ecs_scan_operator.adapters.scanning import RegistryFindingsSource
from ecs_scan_operator.core.grants import role_session
from ecs_scan_operator.core.policy import PolicyRef, PolicySpec
from ecs_scan_operator.core.tickets import TicketReport, TicketRequest
from ecs_scan_operator.errors import ScanError
from ecs_scan_operator.ports import Ports, ReportSink, TicketSink

if TYPE_CHECKING:
    from pydantic import SecretStr

    from ecs_scan_operator.adapters.jira_credentials import JiraCredentials


def aws_clients(policy: PolicyRef, spec: PolicySpec, *, session_identity: bool = True) -> AwsClients:
    """The run's AWS clients: the policy's roles, assumed as `ecsscan-<namespace>-<policy>`.

    `session_identity`: with session tags and SourceIdentity (the role's trust policy must allow
    sts:TagSession and sts:SetSourceIdentity); the session name is always set.
    """
    session = role_session(policy)
    return AwsClients(
        role_arn=spec.aws.role_arn,
        external_id=spec.aws.external_id,
        registry_role_arn=spec.aws.registry_role_arn,
        session_name=session.name,
        session_tags=session.tags if session_identity else None,
        source_identity=session.source_identity if session_identity else None,
    )


def build_ports(
    policy: PolicyRef,
    spec: PolicySpec,
    *,
    output_dir: Path | None = None,
    jira_credentials: JiraCredentials | None = None,
    clients: AwsClients | None = None,
    concurrency: int = 8,
    enforce_jira_destination: bool = True,
    state_key: SecretStr | None = None,
    session_identity: bool = True,
    notify_secrets: Callable[[str], Mapping[str, SecretStr]] | None = None,
    notify_allow_private: bool = False,
) -> Ports:
    """Real adapters: ECS, ECR, Inspector, S3 (or a local folder), Jira when configured.

    `enforce_jira_destination` False (the CLI) only warns when the Jira URL points at an
    address credentials are not sent to by default; the operator refuses it.
    """
    clients = clients or aws_clients(policy, spec, session_identity=session_identity)
    reports: ReportSink
    if output_dir is not None:
        reports = LocalReportSink(output_dir)
    else:
        reports = S3ReportSink(
            clients, spec.report.s3.bucket, spec.aws.all_regions[0], kms_key_id=spec.report.s3.kms_key_id
        )
    tickets: TicketSink | None = None
    if spec.jira is not None:
        tickets = _jira_sink(spec, jira_credentials, enforce_jira_destination)
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
        state_key=state_key,
        notifier=notifier,
        vulnerabilities=InspectorVulnerabilities(clients),
    )


class UnavailableTicketSink:
    """Stands in when a policy asks for Jira but credentials are missing or invalid: the run says so."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def sync(self, request: TicketRequest) -> TicketReport:
        """Nothing is written; the reason becomes TicketsSynced=False on the policy."""
        return TicketReport(errors=[self.reason], synced=False, reason="JiraUnavailable")


def _jira_sink(spec: PolicySpec, credentials: JiraCredentials | None, enforce: bool) -> TicketSink:
    """The Jira adapter, imported lazily so an AWS-only run never loads it."""
    if credentials is None:
        return UnavailableTicketSink(
            "no Jira credentials (Secret spec.jira.credentialsSecret, or JIRA_* env)"
        )
    from ecs_scan_operator.adapters.jira import build_ticket_sink

    try:
        sink = build_ticket_sink(spec, credentials, enforce_destination=enforce)
    except (ValueError, ScanError) as exc:  # an invalid ECS_SCAN_JIRA_ALLOWED_HOSTS; names the entry
        return UnavailableTicketSink(f"invalid Jira settings: {exc}")
    return sink if sink is not None else UnavailableTicketSink("jira is not configured")
