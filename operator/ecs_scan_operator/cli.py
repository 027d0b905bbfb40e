"""The `ecs-scan-operator` command: validate a policy, run it once, or run the operator.

Exit codes: 0 success, 1 the run failed or was partial, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from ecs_scan_operator import __version__
from ecs_scan_operator.core.policy import PolicyRef, PolicySpec, parse_document
from ecs_scan_operator.core.result import Outcome, RunResult
from ecs_scan_operator.errors import FieldError, InvalidPolicy

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT = 0, 1, 2
log = logging.getLogger("ecs_scan_operator")


class SystemClock:
    """The real clock (UTC)."""

    def now(self) -> datetime:
        """Now, timezone-aware."""
        return datetime.now(UTC)


def load_policy(path: str) -> tuple[PolicyRef, PolicySpec]:
    """Read a YAML file holding one ScanPolicy manifest or a bare spec; InvalidPolicy when wrong."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidPolicy([FieldError("(file)", f"cannot read {path}: {exc.strerror}")]) from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise InvalidPolicy([FieldError("(file)", f"not valid YAML: {exc}")]) from None
    if len(docs) != 1:
        raise InvalidPolicy([FieldError("(file)", f"expected exactly one document, found {len(docs)}")])
    return parse_document(docs[0])


def jira_credentials_from_env() -> dict[str, SecretStr] | None:
    """JIRA_EMAIL + JIRA_API_TOKEN (Cloud) or JIRA_PAT (Data Center); None when unset."""
    if os.environ.get("JIRA_PAT"):
        return {"token": SecretStr(os.environ["JIRA_PAT"])}
    if os.environ.get("JIRA_EMAIL") and os.environ.get("JIRA_API_TOKEN"):
        return {
            "email": SecretStr(os.environ["JIRA_EMAIL"]),
            "apiToken": SecretStr(os.environ["JIRA_API_TOKEN"]),
        }
    return None


def _print_errors(errors: Sequence[FieldError]) -> None:
    print("policy is invalid:", file=sys.stderr)
    for err in errors:
        print(f"  {err.path}: {err.reason}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    """`validate -f FILE`."""
    try:
        ref, spec = load_policy(args.file)
    except InvalidPolicy as exc:
        _print_errors(exc.errors)
        return EXIT_BAD_INPUT
    print(f"{ref.key}: valid (schedule {spec.schedule!r} {spec.time_zone}, threshold {spec.threshold.value})")
    return EXIT_OK


def _table(result: RunResult, index_html: str | None, fleet_note: str | None) -> None:
    from rich.columns import Columns
    from rich.console import Console
    from rich.table import Table

    console = Console()
    images = Table(title=f"Images ({result.images_total})", show_edge=False)
    images.add_column("status")
    images.add_column("count", justify="right")
    for status, n in result.images_by_status.items():
        images.add_row(status, str(n))
    findings = Table(title=f"Findings at/above threshold ({result.findings_total})", show_edge=False)
    findings.add_column("severity")
    findings.add_column("count", justify="right")
    for sev, n in result.findings_by_severity.items():
        findings.add_row(sev, str(n))
    console.print(
        f"[bold]{result.policy}[/] run {result.run_id}: [bold]{result.outcome.value}[/]"
        + (" (dry run)" if result.dry_run else "")
    )
    console.print(
        f"families matched {result.families_matched}, task definitions {result.task_definitions}, "
        f"affected images {result.affected_images}, suppressed findings {result.suppressed_findings}, "
        f"expired suppressions {result.expired_suppressions}"
    )
    console.print(Columns([images, findings], padding=(0, 6)))
    if result.tickets:
        console.print("tickets: " + ", ".join(f"{k} {v}" for k, v in sorted(result.tickets.items())))
    if result.aws_calls:
        total = sum(result.aws_calls.values())
        console.print(f"AWS calls ({total}): " + ", ".join(f"{k} {v}" for k, v in result.aws_calls.items()))
    for err in result.errors:
        console.print(f"[yellow]error:[/] {err}")
    console.print(f"report: {result.report_uri}")
    if index_html:
        console.print(f"open in a browser: [bold]{index_html}[/]")
    if fleet_note:
        console.print(fleet_note)


def cmd_run(args: argparse.Namespace) -> int:
    """`run -f FILE [--dry-run] [--output-dir DIR] [--format table|json] [--demo]`."""
    from ecs_scan_operator.bootstrap import build_ports
    from ecs_scan_operator.pipeline import run_policy

    try:
        ref, spec = load_policy(args.file)
    except InvalidPolicy as exc:
        _print_errors(exc.errors)
        return EXIT_BAD_INPUT
    if args.dry_run:
        spec = spec.model_copy(update={"dry_run": True})
    output_dir = Path(args.output_dir) if args.output_dir else None
    if args.demo and output_dir is None:
        output_dir = Path("demo-report")
    with ExitStack() as stack:
        fleet_note = None
        if args.demo:
            from ecs_scan_operator.demo.fleet import seed_fleet
            from ecs_scan_operator.demo.server import moto_server

            endpoint = stack.enter_context(moto_server())
            fleet = seed_fleet(endpoint, region=spec.aws.all_regions[0])
            fleet_note = (
                f"demo fleet: {len(fleet.families)} families, {len(fleet.repositories)} ECR repositories, "
                f"{len(fleet.images)} images, emulated by moto at {endpoint}"
            )
        from ecs_scan_operator.adapters.notify_http import secrets_from_env

        ports = build_ports(
            ref,
            spec,
            output_dir=output_dir,
            jira_credentials=jira_credentials_from_env(),
            notify_secrets=secrets_from_env(os.environ),
            notify_allow_private=os.environ.get("ECS_SCAN_NOTIFY_ALLOW_PRIVATE_DESTINATIONS", "").lower()
            in ("1", "true", "yes"),
        )
        progress = _progress_callback(stack) if args.format == "table" and sys.stderr.isatty() else None
        result = run_policy(ref, spec, ports, SystemClock(), progress=progress)
    if args.format == "json":
        json.dump(result.to_dict(), sys.stdout, indent=2)
        print()
    else:
        index_html = None
        if output_dir is not None and result.report_uri.endswith("index.json"):
            index_html = result.report_uri[: -len("index.json")] + "index.html"
        _table(result, index_html, fleet_note)
    return EXIT_OK if result.outcome is Outcome.SUCCEEDED else EXIT_RUN_FAILED


def _progress_callback(stack: ExitStack) -> Any:
    from rich.progress import Progress

    bar = stack.enter_context(Progress(transient=True))
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=max(total, 1))
        bar.update(tasks[stage], completed=done, total=max(total, 1))

    return update


def cmd_operator(args: argparse.Namespace) -> int:
    """`operator`: run the kopf operator (settings from ECS_SCAN_* environment variables)."""
    from ecs_scan_operator import controller

    runner: Any = getattr(controller, "run", None)
    if runner is None:
        print("the operator is not available in this build", file=sys.stderr)
        return EXIT_BAD_INPUT
    result: int = runner()
    return result


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    parser = argparse.ArgumentParser(
        prog="ecs-scan-operator",
        description="Scan the images of ECS task definitions, report to S3, keep Jira tickets in sync.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="validate a ScanPolicy manifest or bare spec (exit 2 when invalid)")
    p.add_argument("-f", "--file", required=True, help="YAML file, or - for stdin")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("run", help="run a policy once")
    p.add_argument("-f", "--file", required=True, help="YAML file, or - for stdin")
    p.add_argument("--dry-run", action="store_true", help="plan Jira changes without writing them")
    p.add_argument("--output-dir", help="write the report tree here instead of the policy's S3 location")
    p.add_argument("--format", choices=["table", "json"], default="table", help="output on stdout")
    p.add_argument("--demo", action="store_true", help="run against an embedded emulated AWS fleet (moto)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("operator", help="run the Kubernetes operator (kopf)")
    p.set_defaults(func=cmd_operator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
