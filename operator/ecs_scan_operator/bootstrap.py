"""Wire the real adapters for one policy run (the composition root; tests build their own Ports)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecs_scan_operator.adapters.aws_config import ConfigImageSource
from ecs_scan_operator.adapters.aws_session import AwsClients
from ecs_scan_operator.adapters.ecr import EcrDigestResolver
from ecs_scan_operator.adapters.ecs import EcsImageSource
from ecs_scan_operator.adapters.inspector import InspectorVulnerabilities
from ecs_scan_operator.adapters.local_report import LocalReportSink
from ecs_scan_operator.adapters.organizations import OrganizationAccounts
from ecs_scan_operator.adapters.s3_report import S3ReportSink
from ecs_scan_operator.adapters.scanning import RegistryFindingsSource
from ecs_scan_operator.core.grants import AccountScope, role_session
from ecs_scan_operator.core.policy import PolicyRef, PolicySpec, TaskDefinitionSource, role_for_account
from ecs_scan_operator.core.tickets import TicketReport, TicketRequest
from ecs_scan_operator.errors import ScanError
from ecs_scan_operator.ports import FanOut, ImageSource, Ports, ReportSink, TicketSink
from ecs_scan_operator.settings import load_aws_settings

if TYPE_CHECKING:
    from pydantic import SecretStr

    from ecs_scan_operator.adapters.jira_credentials import JiraCredentials


def aws_clients(
    policy: PolicyRef,
    spec: PolicySpec,
    *,
    session_identity: bool = True,
    account_scope: AccountScope | None = None,
    hooks: list[Any] | None = None,
) -> AwsClients:
    """The run's AWS clients: the policy's roles, assumed as `ecsscan-<namespace>-<policy>`.

    `session_identity`: with session tags and SourceIdentity (the role's trust policy must allow
    sts:TagSession and sts:SetSourceIdentity); the session name is always set. `account_scope`:
    the accounts the allowing grant lets a multi-account policy use (None: open mode).
    """
    session = role_session(policy)
    # Multi-account: one client (the Inspector administrator's, the S3 sink's) can be called by
    # every pair at once; its connection pool is sized for the global cap.
    pool = min(load_aws_settings().max_concurrency, 128) if spec.aws.multi_account else 16
    return AwsClients(
        max_clients=client_cap(spec),
        pool=max(pool, 16),
        role_arn=spec.aws.role_arn,
        external_id=spec.aws.external_id,
        registry_role_arn=spec.aws.registry_role_arn,
        session_name=session.name,
        session_tags=session.tags if session_identity else None,
        source_identity=session.source_identity if session_identity else None,
        role_arn_pattern=spec.aws.role_arn_pattern,
        inspector_admin_role_arn=spec.aws.inspector_admin_role_arn,
        account_scope=account_scope,
        hooks=hooks,  # each new botocore client is passed to these (the demo's emulated Inspector)
    )


def client_cap(spec: PolicySpec) -> int | None:
    """How many AWS clients a run keeps (AwsClients' max_clients): multi-account runs keep those of
    the pairs being read and the registries being looked at; single-account runs hold a handful."""
    if not spec.aws.multi_account:
        return None
    aws = load_aws_settings()
    return 4 * FanOut(aws.workers_per_account_region, aws.max_concurrency).targets_at_once + 32


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
    notify_destinations: tuple[str, ...] | None = None,
    account_scope: AccountScope | None = None,
) -> Ports:
    """Real adapters: ECS, ECR, Inspector, S3 (or a local folder), Jira when configured.

    `enforce_jira_destination` False (the CLI) only warns when the Jira URL points at an
    address credentials are not sent to by default; the operator refuses it.
    """
    clients = clients or aws_clients(
        policy, spec, session_identity=session_identity, account_scope=account_scope
    )
    fanout = FanOut()
    multi = spec.aws.multi_account
    if multi:
        aws = load_aws_settings()
        fanout = FanOut(aws.workers_per_account_region, aws.max_concurrency)
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

        notifier = HttpNotifier(
            notify_secrets, allow_private=notify_allow_private, granted=notify_destinations
        )
    counter = clients.counter
    refusal = None
    if account_scope is not None and spec.aws.role_arn_pattern:
        scope, pattern = account_scope, spec.aws.role_arn_pattern

        def refusal(account: str) -> str | None:
            return scope.refusal(account, role_for_account(pattern, account))

    findings = RegistryFindingsSource(
        clients,
        registries_at_once=fanout.targets_at_once if multi else 1,
        workers_per_registry=fanout.workers_per_target if multi else None,
    )
    ecs = EcsImageSource(clients, concurrency=fanout.workers_per_target if multi else concurrency)
    return Ports(
        images=image_source(spec, clients, concurrency, ecs),
        td_tags=ecs,
        # ECR is per (account, region) too: the global cap bounds all its calls.
        digests=EcrDigestResolver(clients, workers=fanout.max_concurrency if multi else 8),
        findings=findings,
        coverage=findings,  # the same registry scan types: one lookup each
        accounts=OrganizationAccounts(clients) if spec.aws.organization is not None else None,
        account_refusal=refusal,
        fanout=fanout,
        reports=reports,
        tickets=tickets,
        aws_calls=counter.by_operation,
        aws_errors=counter.errors_by_operation,
        release_reads=clients.release_reads,
        state_key=state_key,
        notifier=notifier,
        vulnerabilities=InspectorVulnerabilities(clients),
    )


def image_source(
    spec: PolicySpec, clients: AwsClients, concurrency: int = 8, ecs: EcsImageSource | None = None
) -> ImageSource:
    """Where task definitions come from: an AWS Config aggregator (source: awsConfig), else ECS."""
    selection = spec.task_definitions
    if selection.source is TaskDefinitionSource.AWS_CONFIG and selection.config_aggregator is not None:
        return ConfigImageSource(clients, selection.config_aggregator, spec.aws.all_regions[0])
    return ecs or EcsImageSource(clients, concurrency=concurrency)


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
