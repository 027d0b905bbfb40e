"""The `ecs-scan-operator` command: validate a policy, run it once, or run the operator.

Exit codes: 0 success, 1 the run failed or was partial, 2 bad input.
"""

from __future__ import annotations

import argparse
import codecs
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import SecretStr

from ecs_scan_operator import __version__
from ecs_scan_operator.clock import SystemClock
from ecs_scan_operator.controller import NOISY_LOGGERS
from ecs_scan_operator.core.grants import Grant, Refused, check, parse_grant
from ecs_scan_operator.core.policy import PolicyRef, PolicySpec, clip_reason, clip_value, parse_document
from ecs_scan_operator.core.result import Outcome, RunResult
from ecs_scan_operator.errors import (
    AuthError,
    Cancelled,
    FieldError,
    InvalidPolicy,
    LeaseHeld,
    PermanentError,
    ScanError,
)
from ecs_scan_operator.settings import SettingsError, state_key_from_env

if TYPE_CHECKING:
    from ecs_scan_operator.adapters.jira_credentials import JiraCredentials

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT = 0, 1, 2
log = logging.getLogger("ecs_scan_operator")


MAX_POLICY_BYTES = 1024 * 1024  # a Kubernetes object is at most about 1 MiB (etcd's request limit)
MAX_YAML_DEPTH = 64  # nesting of mappings and sequences; a policy needs about 6
MAX_YAML_NODES = 100_000  # nodes after aliases are expanded ("billion laughs" stops here)
# Byte-order marks, longest first (the UTF-32 LE mark begins with the UTF-16 LE one).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _file_error(reason: str) -> InvalidPolicy:
    return InvalidPolicy([FieldError("(file)", reason)])


def read_policy_text(path: str) -> str:
    """The text of a policy file (or stdin for `-`), at most 1 MiB; InvalidPolicy with a one-line reason.

    UTF-8, or UTF-16/UTF-32 when the file starts with their byte-order mark (as YAML allows and as
    Windows editors save it); anything else, and binary data, is refused.
    """
    shown = clip_value(path)
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(MAX_POLICY_BYTES + 1)
        else:
            with Path(path).open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > MAX_POLICY_BYTES:
                    raise _file_error(
                        f"{shown} is {size} bytes, over the 1 MiB limit ({MAX_POLICY_BYTES} bytes)"
                    )
                raw = f.read(MAX_POLICY_BYTES + 1)  # a device or /proc file reports no size
    except IsADirectoryError:
        raise _file_error(f"cannot read {shown}: it is a directory") from None
    except OSError as exc:
        raise _file_error(f"cannot read {shown}: {exc.strerror or exc}") from None
    if len(raw) > MAX_POLICY_BYTES:
        raise _file_error(f"{shown} is over the 1 MiB limit ({MAX_POLICY_BYTES} bytes)")
    encoding = next((name for bom, name in _BOMS if raw.startswith(bom)), "utf-8")
    # No text file holds a NUL byte: an image, an archive, UTF-16 or UTF-32 without a BOM.
    if encoding == "utf-8" and b"\x00" in raw:
        raise _file_error(f"{shown} holds binary data (a NUL byte at offset {raw.index(0)}), not YAML text")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        name = encoding.removesuffix("-sig").upper()
        raise _file_error(
            f"{shown} is not {name} text: byte 0x{raw[exc.start]:02x} at offset {exc.start} "
            "(save it as UTF-8)"
        ) from None
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        raise _file_error(f"{shown} holds binary data (a NUL character at offset {text.index(chr(0))})")
    if not text.strip():
        raise _file_error(f"{shown} is empty")
    return text


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a nesting limit and a limit on what aliases expand to."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """A node, refused beyond MAX_YAML_DEPTH levels (deep nesting would exhaust the stack)."""
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.YAMLError(f"nested deeper than {MAX_YAML_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node | None:
        """A document, refused when its aliases expand to more than MAX_YAML_NODES nodes."""
        node = super().compose_document()
        if node is not None and _expanded_size(node, {}) > MAX_YAML_NODES:
            raise yaml.YAMLError(f"aliases expand to more than {MAX_YAML_NODES} nodes")
        return node


def _expanded_size(node: yaml.Node, seen: dict[int, int]) -> int:
    """Nodes in `node` with every alias expanded; shared nodes are counted once per use, computed once."""
    if id(node) in seen:
        return seen[id(node)]
    seen[id(node)] = MAX_YAML_NODES + 1  # a node reached again while being counted: a cycle
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, seen) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, seen) + _expanded_size(v, seen) for k, v in node.value)
    seen[id(node)] = min(size, MAX_YAML_NODES + 1)
    return seen[id(node)]


def _yaml_reason(exc: yaml.YAMLError) -> str:
    """PyYAML's message on one line: the problem and where (its multi-line snippet is left out)."""
    if isinstance(exc, yaml.reader.ReaderError):
        return f"unacceptable character #x{exc.character:04x} at offset {exc.position}"
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return clip_reason(f"{exc.problem}{where}")
    return clip_reason(" ".join(str(exc).split()))


def load_policy(path: str) -> tuple[PolicyRef, PolicySpec]:
    """Read a YAML file holding one ScanPolicy manifest or a bare spec; InvalidPolicy when wrong."""
    text = read_policy_text(path)
    loader = None
    try:
        loader = _BoundedLoader(text)  # its reader already refuses non-printable characters
        docs = []
        while loader.check_data():  # type: ignore[no-untyped-call]
            doc = loader.get_data()
            if doc is not None:
                docs.append(doc)
    except yaml.YAMLError as exc:
        raise _file_error(f"not valid YAML: {_yaml_reason(exc)}") from None
    except RecursionError:  # a belt to the depth limit's braces (e.g. deep flow collections)
        raise _file_error(f"not valid YAML: nested too deeply (more than {MAX_YAML_DEPTH} levels)") from None
    finally:
        if loader is not None:
            loader.dispose()
    if len(docs) != 1:
        raise _file_error(f"expected exactly one YAML document, found {len(docs)}")
    return parse_document(docs[0])


def prepare_output_dir(path: str | None) -> Path | None:
    """`--output-dir`, created and proven writable before the run; InvalidPolicy naming path and reason."""
    if path is None:
        return None
    shown = clip_value(path)

    def refuse(reason: str) -> InvalidPolicy:
        return InvalidPolicy([FieldError("(--output-dir)", f"{shown}: {reason}")])

    try:
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        # mkdir says nothing about writing inside (a read-only mount, /proc): write a probe.
        with tempfile.TemporaryFile(dir=root):
            pass
    except FileExistsError:
        raise refuse("exists and is not a directory") from None
    except NotADirectoryError:
        raise refuse("a part of the path is a file, not a directory") from None
    except OSError as exc:
        raise refuse(f"cannot write there: {exc.strerror or exc}") from None
    except ValueError as exc:  # an embedded NUL character
        raise refuse(f"not a valid path ({exc})") from None
    return root


def _print_errors(exc: InvalidPolicy) -> None:
    """One line per problem; a problem with the file or a setting is not called an invalid policy."""
    if len(exc.errors) == 1 and (isinstance(exc, SettingsError) or exc.errors[0].path.startswith("(")):
        err = exc.errors[0]
        print(f"error: {err.path}: {err.reason}", file=sys.stderr)
        return
    print("policy is invalid:", file=sys.stderr)
    for err in exc.errors:
        print(f"  {err.path}: {err.reason}", file=sys.stderr)


def load_grants(path: str) -> list[Grant]:
    """ScanAccessGrants from a YAML file (documents, or a List); InvalidPolicy naming each bad field."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except OSError as exc:
        raise InvalidPolicy([FieldError("(grants file)", f"cannot read {path}: {exc.strerror}")]) from None
    except yaml.YAMLError as exc:
        raise InvalidPolicy([FieldError("(grants file)", f"not valid YAML: {exc}")]) from None
    items: list[Any] = []
    for doc in docs:
        is_list = isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List")
        items.extend((doc.get("items") or []) if is_list else [doc])
    grants: list[Grant] = []
    problems: list[FieldError] = []
    for i, item in enumerate(items):
        try:
            grants.append(parse_grant(item))
        except InvalidPolicy as exc:
            problems.extend(FieldError(f"grants[{i}].{e.path}", e.reason) for e in exc.errors)
    if problems:
        raise InvalidPolicy(problems)
    return grants


def _labels(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        for part in filter(None, pair.split(",")):
            key, sep, value = part.partition("=")
            if not sep or not key:
                raise InvalidPolicy([FieldError("--namespace-labels", f"{part!r} is not key=value")])
            out[key.strip()] = value.strip()
    return out


def cmd_validate(args: argparse.Namespace) -> int:
    """`validate -f FILE [--grants FILE --namespace-labels k=v,...]`."""
    try:
        ref, spec = load_policy(args.file)
        grants = load_grants(args.grants) if args.grants else None
        labels = _labels(args.namespace_labels or [])
    except InvalidPolicy as exc:
        _print_errors(exc)
        return EXIT_BAD_INPUT
    acts = f"actOn {len(spec.act_on)} rule(s)" if spec.act_on else f"threshold {spec.threshold.value}"
    summary = f"schedule {spec.schedule!r} {spec.time_zone}, {acts}"
    if grants is None:
        print(f"{ref.key}: valid ({summary})")
        return EXIT_OK
    decision = check(ref, labels, spec, grants)
    if isinstance(decision, Refused):
        print(f"{ref.key}: access not granted: {decision.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"{ref.key}: valid and granted by ScanAccessGrant {decision.grant} ({summary})")
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
    if result.redeploy_needed:
        shown = ", ".join(result.redeploy_images) + (
            " ..." if result.redeploy_needed > len(result.redeploy_images) else ""
        )
        console.print(
            f"[bold red]redeploy needed ({result.redeploy_needed}):[/] {shown}: the tag already points at a "
            "digest without these findings, but running tasks still use this one"
        )
    if result.coverage_at_risk:
        console.print(
            f"[yellow]coverage at risk ({result.coverage_at_risk}):[/] running longer than Inspector "
            f"re-scans ({'; '.join(result.rescan_windows[:3])})"
        )
    if result.tickets:
        console.print("tickets: " + ", ".join(f"{k} {v}" for k, v in sorted(result.tickets.items())))
    if result.aws_calls:
        total = sum(result.aws_calls.values())
        console.print(f"AWS calls ({total}): " + ", ".join(f"{k} {v}" for k, v in result.aws_calls.items()))
    if result.error_causes:
        console.print(f"[yellow]error causes:[/] {result.causes_text()}")
    for err in result.errors:
        console.print(f"[yellow]error:[/] {err}")
    console.print(f"report: {result.report_uri}")
    if index_html:
        console.print(f"open in a browser: [bold]{index_html}[/]")
    if fleet_note:
        console.print(fleet_note)


def _jira_credentials(args: argparse.Namespace) -> JiraCredentials | None:
    """From --jira-credentials-dir (the Secret mounted in a Job) or the environment."""
    from ecs_scan_operator.adapters.jira_credentials import JiraCredentials

    if args.jira_credentials_dir:
        root = Path(args.jira_credentials_dir)
        data = {k: (root / k).read_bytes() for k in ("email", "apiToken", "token") if (root / k).is_file()}
        return JiraCredentials.from_mapping(data)
    return JiraCredentials.from_env()


def _secret_dir_reader(root: Path) -> Callable[[str], Mapping[str, SecretStr]]:
    """Secret <name> is the files of <root>/<name>/ (a Secret volume per notification destination)."""

    def read(secret: str) -> Mapping[str, SecretStr]:
        folder = root / secret
        if not folder.is_dir():
            raise PermanentError(f"Secret {secret} is not mounted at {folder}")
        out = {}
        for key in ("url", "signingKey"):
            if (folder / key).is_file():
                try:
                    out[key] = SecretStr((folder / key).read_text(encoding="utf-8").strip())
                except UnicodeDecodeError:
                    raise PermanentError(f"Secret {secret}: key {key} is not UTF-8") from None
        return out

    return read


def write_termination_log(path: str, result: RunResult) -> None:
    """The compact result (core.jobs.encode_result, at most 4 KiB) where the kubelet reads it."""
    from ecs_scan_operator.core.jobs import encode_result

    try:
        Path(path).write_text(encode_result(result), encoding="utf-8")
    except (OSError, ValueError) as exc:
        print(f"could not write the result to {path}: {exc}", file=sys.stderr)


class _Terminated:
    """SIGTERM (the Job deleted, its deadline, a node drain) cancels the run at its next checkpoint."""

    def __init__(self) -> None:
        self.cancel = threading.Event()

    def __enter__(self) -> threading.Event:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, lambda *_: self.cancel.set())
        return self.cancel

    def __exit__(self, *_: object) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous)


def _demo_fleet(stack: ExitStack, ref: PolicyRef, spec: PolicySpec) -> tuple[str, Any]:
    """The emulated fleet (moto) and the AWS clients that read it: a note for the table, clients."""
    from ecs_scan_operator.bootstrap import aws_clients
    from ecs_scan_operator.demo.fleet import seed_fleet, task_digest_hook
    from ecs_scan_operator.demo.server import moto_server

    endpoint = stack.enter_context(moto_server())
    regions = spec.aws.all_regions
    # A second region of the policy gets the ENHANCED (emulated Inspector) part.
    fleet = seed_fleet(
        endpoint, region=regions[0], running=True, enhanced_region=regions[1] if len(regions) > 1 else None
    )
    # moto's tasks carry no imageDigest: the demo adds the digests its tasks run (validated).
    clients = aws_clients(ref, spec, hooks=[task_digest_hook(fleet.running), *fleet.hooks])
    note = (
        f"demo fleet: {len(fleet.families)} families, {len(fleet.repositories)} ECR repositories, "
        f"{len(fleet.images)} images, emulated by moto at {endpoint}"
        + (
            f"; ENHANCED scanning in {regions[1]} with an emulated Amazon Inspector"
            if fleet.inspector is not None
            else ""
        )
    )
    return note, clients


def _run_ports(
    args: argparse.Namespace,
    ref: PolicyRef,
    spec: PolicySpec,
    output_dir: Path | None,
    state_key: SecretStr | None,
    jira_credentials: JiraCredentials | None,
    clients: Any = None,
) -> Any:
    """The run's adapters (raises ScanError when they cannot be wired, e.g. a role not assumed)."""
    from ecs_scan_operator.adapters.notify_http import secrets_from_env
    from ecs_scan_operator.bootstrap import build_ports
    from ecs_scan_operator.core.jobs import parse_grant_env

    # A run in a Job: the allowing grant's limits, set by the operator (core/jobs.py).
    try:
        notify_destinations, account_scope = parse_grant_env(os.environ)
    except ValueError as exc:
        raise PermanentError(f"the run's grant limits: {exc}") from None
    notify_secrets = (
        _secret_dir_reader(Path(args.notify_secrets_dir))
        if args.notify_secrets_dir
        else secrets_from_env(os.environ)
    )
    # The CLI runs at a person's request: a Jira URL on a private or loopback address is warned
    # about on stderr, not refused (the operator refuses it unless allowed, and so does a run in
    # a Job: --enforce-jira-destination).
    return build_ports(
        ref,
        spec,
        output_dir=output_dir,
        clients=clients,
        jira_credentials=jira_credentials,
        enforce_jira_destination=args.enforce_jira_destination,
        state_key=state_key,
        session_identity=not args.no_session_tags,
        notify_secrets=notify_secrets,
        notify_allow_private=os.environ.get("ECS_SCAN_NOTIFY_ALLOW_PRIVATE_DESTINATIONS", "").lower()
        in ("1", "true", "yes"),
        notify_destinations=notify_destinations,
        account_scope=account_scope,
    )


def cmd_run(args: argparse.Namespace) -> int:  # noqa: PLR0911 - one exit per way a run ends
    """`run -f FILE [--dry-run] [--output-dir DIR] [--format table|json] [--demo] [--run-id ID] ...`."""
    from ecs_scan_operator.core.status import failed_result
    from ecs_scan_operator.pipeline import run_policy

    clock = SystemClock()
    began = clock.now()
    ref = PolicyRef()

    def not_run(message: str, code: int, *, refused: bool = False, said: bool = False) -> int:
        # A run of the operator's (a Job) says why in its result too: the operator records it.
        if not said:
            print(message, file=sys.stderr)
        if args.termination_log and args.run_id:
            result = failed_result(args.run_id, ref.key, began, clock.now(), message)
            if refused:
                result.refused = message
            write_termination_log(args.termination_log, result)
        return code

    try:
        ref, spec = load_policy(args.file)
        output_dir = prepare_output_dir(args.output_dir or ("demo-report" if args.demo else None))
        state_key = state_key_from_env()
    except InvalidPolicy as exc:
        _print_errors(exc)
        return not_run("; ".join(f"{e.path}: {e.reason}" for e in exc.errors), EXIT_BAD_INPUT, said=True)
    if args.dry_run:
        spec = spec.model_copy(update={"dry_run": True})
    jira_credentials = None
    if spec.jira is not None:
        try:
            jira_credentials = _jira_credentials(args)
        except (AuthError, OSError) as exc:  # names the keys, never a value
            where = args.jira_credentials_dir or "environment JIRA_EMAIL + JIRA_API_TOKEN, or JIRA_PAT"
            return not_run(f"jira credentials: {exc} ({where})", EXIT_BAD_INPUT)
    with ExitStack() as stack:
        fleet_note, clients = _demo_fleet(stack, ref, spec) if args.demo else (None, None)
        try:
            ports = _run_ports(args, ref, spec, output_dir, state_key, jira_credentials, clients)
        except ScanError as exc:  # e.g. the role could not be assumed while wiring the adapters
            return not_run(f"run not started: {exc}", EXIT_RUN_FAILED)
        progress = _progress_callback(stack) if args.format == "table" and sys.stderr.isatty() else None
        try:
            with _Terminated() as cancel:
                result = run_policy(
                    ref, spec, ports, clock, run_id=args.run_id, cancel=cancel, progress=progress
                )
        except LeaseHeld as exc:
            return not_run(str(exc), EXIT_RUN_FAILED, refused=True)
        except Cancelled:
            return not_run("cancelled: the run was stopped (SIGTERM)", EXIT_RUN_FAILED)
        except ScanError as exc:  # the lease could not even be read: nothing was written
            return not_run(f"run not started: {exc}", EXIT_RUN_FAILED)
    if args.termination_log:
        write_termination_log(args.termination_log, result)
    _print_result(args.format, result, output_dir, fleet_note)
    return EXIT_OK if result.outcome is Outcome.SUCCEEDED else EXIT_RUN_FAILED


def _print_result(fmt: str, result: RunResult, output_dir: Path | None, fleet_note: str | None) -> None:
    if fmt == "json":
        json.dump(result.to_dict(), sys.stdout, indent=2)
        print()
        return
    index_html = None
    if output_dir is not None and result.report_uri.endswith("index.json"):
        index_html = result.report_uri[: -len("index.json")] + "index.html"
    _table(result, index_html, fleet_note)


def _progress_callback(stack: ExitStack) -> Any:
    from rich.progress import Progress

    bar = stack.enter_context(Progress(transient=True))
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=max(total, 1))
        bar.update(tasks[stage], completed=done, total=max(total, 1))

    return update


def cmd_lease(args: argparse.Namespace) -> int:
    """`lease show|break -f FILE [--output-dir DIR]`: look at or break a policy's run lease."""
    from ecs_scan_operator import leasing
    from ecs_scan_operator.bootstrap import build_ports
    from ecs_scan_operator.core.keys import lease_key
    from ecs_scan_operator.core.schedule import format_time

    try:
        ref, spec = load_policy(args.file)
    except InvalidPolicy as exc:
        _print_errors(exc)
        return EXIT_BAD_INPUT
    reports = build_ports(ref, spec, output_dir=Path(args.output_dir) if args.output_dir else None).reports
    key = lease_key(spec.report.s3.prefix, ref.namespace, ref.name)
    try:
        record, etag, raw = leasing.show(reports, key)
        if etag is None:
            print(f"{ref.key}: no run holds the lease ({reports.uri(key)})")
            return EXIT_OK
        if record is None:
            print(f"{ref.key}: {reports.uri(key)} is not a lease this version reads ({len(raw or b'')} B)")
        else:
            state = "expired" if SystemClock().now() >= record.expires else "held"
            print(
                f"{ref.key}: {state} by run {record.run_id} on {record.holder} since "
                f"{format_time(record.started)}, renewed {format_time(record.renewed)}, "
                f"expires {format_time(record.expires)} ({reports.uri(key)})"
            )
        if args.action == "break":
            # Only the lease just shown is deleted (If-Match): a newer one is left alone.
            leasing.break_lease(reports, key, etag)
            print(f"{ref.key}: lease broken; the run that held it stops at its next checkpoint")
    except ScanError as exc:
        print(f"lease {args.action} failed: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    return EXIT_OK


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
    p.add_argument(
        "--grants", help="also check the policy against these ScanAccessGrants (YAML, several documents)"
    )
    p.add_argument(
        "--namespace-labels",
        action="append",
        metavar="K=V[,K=V]",
        help="the labels of the policy's namespace, for grants that select by label (repeatable)",
    )
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("run", help="run a policy once")
    p.add_argument("-f", "--file", required=True, help="YAML file, or - for stdin")
    p.add_argument("--dry-run", action="store_true", help="plan Jira changes without writing them")
    p.add_argument("--output-dir", help="write the report tree here instead of the policy's S3 location")
    p.add_argument("--format", choices=["table", "json"], default="table", help="output on stdout")
    p.add_argument("--demo", action="store_true", help="run against an embedded emulated AWS fleet (moto)")
    p.add_argument("--run-id", help="the run's id (the operator's, for a run in a Job); default a new one")
    p.add_argument(
        "--termination-log",
        metavar="PATH",
        help="also write the compact JSON result (at most 4 KiB) here, e.g. /dev/termination-log",
    )
    p.add_argument(
        "--jira-credentials-dir",
        metavar="DIR",
        help="read the Jira credentials from files email + apiToken, or token, in DIR (a mounted Secret)",
    )
    p.add_argument(
        "--enforce-jira-destination",
        action="store_true",
        help="refuse a Jira URL on a private address not in ECS_SCAN_JIRA_ALLOWED_HOSTS (as the operator)",
    )
    p.add_argument(
        "--notify-secrets-dir",
        metavar="DIR",
        help="notification Secret <name> is the files url and signingKey in DIR/<name>/",
    )
    p.add_argument(
        "--no-session-tags",
        action="store_true",
        help="assume spec.aws.roleArn without session tags and SourceIdentity",
    )
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("lease", help="show or break a policy's run lease (docs/run-protocol.md)")
    p.add_argument("action", choices=["show", "break"], help="break deletes the lease shown, if unchanged")
    p.add_argument("-f", "--file", required=True, help="YAML file, or - for stdin")
    p.add_argument("--output-dir", help="the lease of runs that used this --output-dir")
    p.set_defaults(func=cmd_lease)
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
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
