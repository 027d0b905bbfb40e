"""The report tree of one run, rendered to bytes. Pure: the sinks only store what this returns.

Layout (DESIGN.md): `<run folder>/images/<repository>/<tag-or-digest>.json` for each affected
image with its page for people next to it (`.html`), and `index.json`, `summary.csv`, `index.html`,
`run.log.jsonl` in the run folder.
"""

from __future__ import annotations

import base64
import csv
import functools
import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2

from ecs_scan_operator.core.keys import image_key
from ecs_scan_operator.core.links import safe_url
from ecs_scan_operator.core.model import SEVERITY_ORDER, Finding, ImageResult, RuntimeContext
from ecs_scan_operator.core.policy import PolicyRef, Suppression
from ecs_scan_operator.core.priority import counts_by_priority
from ecs_scan_operator.core.report_view import (
    count_text,
    day,
    finding_order,
    finding_row,
    image_accounts,
    image_plan,
    image_priority,
    image_signals,
    index_order,
    label,
    plan_document,
    plan_view,
    priority_rank,
    redeploy_text,
    runtime_view,
)
from ecs_scan_operator.core.result import PRIORITIES, RunResult


@dataclass(frozen=True)
class ReportObject:
    """One object to store."""

    key: str
    body: bytes
    content_type: str


def image_report_key(folder: str, img: ImageResult) -> str:
    """Where an affected image's JSON goes."""
    name = img.ref.tag or img.digest or img.ref.digest or "untagged"
    if img.ref.tag and img.ref.digest:
        # One tag, several digests running (source: running after the tag moved): one object each.
        name = f"{img.ref.tag}@{img.ref.digest}"
    return image_key(folder, img.ref.repository or "unknown", name)


def image_page_key(folder: str, img: ImageResult) -> str:
    """Where an affected image's page for people goes: next to its JSON."""
    return image_report_key(folder, img).removesuffix(".json") + ".html"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def runtime_document(rt: RuntimeContext) -> dict[str, Any]:
    """The running view of one image as JSON (docs/runtime.md names each member)."""
    return {
        "clusters": list(rt.clusters),
        "services": list(rt.services),
        "runningTasks": rt.running_tasks,
        "runningDigests": list(rt.running_digests),
        "tagDigest": rt.tag_digest,
        "drift": rt.drift,
        "firstSeenRunning": _iso(rt.first_seen_running),
        "lastSeenRunning": _iso(rt.last_seen_running),
        "inUseCount": rt.in_use_count,
        "lastInUseAt": _iso(rt.last_in_use_at),
        "coverageAtRisk": rt.coverage_at_risk,
    }


def account_label(account: str, names: Mapping[str, str]) -> str:
    """`123456789012 (payments-prod)`, or the ID alone when Organizations told no name."""
    name = names.get(account, "")
    return f"{account} ({name})" if name else account


def _accounts(img: ImageResult, names: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"id": a, "name": names.get(a, "")} for a in img.accounts]


def _image_summary(
    img: ImageResult, new_ids: Sequence[str], account_names: Mapping[str, str] | None = None
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if img.runtime is not None:  # only where the policy has a running view or Inspector counts uses
        extra = {"runtime": runtime_document(img.runtime), "redeployNeeded": img.redeploy_needed}
    if img.accounts:  # multi-account policies: the accounts whose task definitions use the image
        extra["accounts"] = _accounts(img, account_names or {})
    return extra | {
        "image": img.ref.raw,
        "registry": img.ref.registry,
        "repository": img.ref.repository,
        "tag": img.ref.tag,
        "digest": img.digest or img.ref.digest,
        "status": img.status.value,
        "reason": img.reason,
        "scanType": img.scan_type,
        "scannedAt": img.scanned_at.isoformat() if img.scanned_at else None,
        "counts": img.counts(),
        "countsByPriority": counts_by_priority(img.findings),
        "kev": sum(1 for f in img.findings if f.signals.kev is True),
        "overdue": sum(1 for f in img.findings if f.assessment.overdue),
        "suppressed": len(img.suppressed),
        "newSinceLastRun": len(new_ids),
        "families": img.families,
    }


def image_document(
    img: ImageResult,
    run_id: str,
    policy: PolicyRef,
    new_ids: Sequence[str],
    account_names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The per-image JSON: summary plus every actionable and suppressed finding."""
    doc = _image_summary(img, new_ids, account_names)
    doc.update(
        {
            # Which container of which revision: in the per-image object only (a shared sidecar is
            # used by thousands of revisions; the index keeps the family names).
            "uses": [
                {"family": u.family, "revision": u.revision, "container": u.container, "region": u.region}
                | ({"account": u.account} if u.account else {})
                | (
                    {"service": u.service, "launchType": u.launch_type, "runningTasks": u.tasks}
                    if u.tasks
                    else {}
                )
                for u in sorted(img.uses)
            ],
            "runId": run_id,
            "policy": policy.key,
            "findings": [
                dict(f.to_dict(), new=f.vulnerability_id in new_ids, **_finding_remediation(f))
                for f in img.findings
            ],
            "suppressedFindings": [dict(f.to_dict(), suppressionReason=why) for f, why in img.suppressed],
        }
    )
    doc.update(_image_remediation(img))
    return doc


# ---- issue #13, the remediation plan and priority columns (kept apart from the signal columns)


def _finding_remediation(f: Finding) -> dict[str, Any]:
    return {"packageManager": f.package_manager or None, "priority": f.assessment.priority or None}


def _image_remediation(img: ImageResult) -> dict[str, Any]:
    return {"priority": image_priority(img) or None, "remediation": plan_document(image_plan(img))}


REMEDIATION_CSV_HEADER = ("priority", "remediation_steps", "next_step", "no_fix_known")


def _remediation_csv(img: ImageResult) -> list[str | int]:
    p = image_plan(img)
    return [
        image_priority(img),
        len(p.steps),
        csv_cell(p.steps[0].text if p.steps else ""),
        len(p.unfixed),
    ]


def render_csv(images: Sequence[ImageResult], account_names: Mapping[str, str] | None = None) -> str:
    """summary.csv: one row per image; every cell quoted and neutralised (see `csv_cell`).

    Multi-account runs (an image used in some account) add a last column, accounts.
    """
    buf = io.StringIO()
    _write_csv(images, account_names, buf)
    return buf.getvalue()


def render_csv_bytes(images: Sequence[ImageResult], account_names: Mapping[str, str] | None = None) -> bytes:
    """`render_csv(...).encode()`, encoded as it is written: never the whole as text besides its bytes."""
    out = io.BytesIO()
    text = io.TextIOWrapper(out, encoding="utf-8", newline="")  # newline="": the rows' CRLF as they are
    _write_csv(images, account_names, text)
    text.flush()
    body = out.getvalue()
    text.detach()  # closing the wrapper would close the buffer; nothing is left to write
    return body


def _write_csv(
    images: Sequence[ImageResult], account_names: Mapping[str, str] | None, buf: io.TextIOBase
) -> None:
    names = account_names or {}
    multi = any(img.accounts for img in images)
    # QUOTE_ALL: a cell holding CR, LF or any other line break (VT, FF, U+2028...) is always inside
    # quotes, so no reader - csv, universal newlines, str.splitlines - can start a row inside it.
    w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    w.writerow(
        [
            "image",
            "status",
            "reason",
            "digest",
            *[s.value.lower() for s in SEVERITY_ORDER],
            "suppressed",
            "families",
            *RUNTIME_COLUMNS,
            *REMEDIATION_CSV_HEADER,
            # issue #13, after the older columns so readers by position keep working
            *[p.lower() for p in PRIORITIES],
            "kev",
            "exploit_available",
            "overdue",
            "next_due",
            *(["accounts"] if multi else []),
        ]
    )
    for img in images:
        counts = img.counts()
        by_priority = counts_by_priority(img.findings)
        dues = [f.assessment.due for f in img.findings if f.assessment.due is not None]
        w.writerow(
            [
                csv_cell(img.ref.raw),
                csv_cell(img.status.value),
                csv_cell(img.reason),
                csv_cell(img.digest or ""),
                *[counts[s.value] for s in SEVERITY_ORDER],
                len(img.suppressed),
                csv_cell(" ".join(img.families)),
                *_runtime_cells(img),
                *_remediation_csv(img),
                *[by_priority[p] for p in PRIORITIES],
                sum(1 for f in img.findings if f.signals.kev is True),
                sum(1 for f in img.findings if f.signals.exploit_available is True),
                sum(1 for f in img.findings if f.assessment.overdue),
                min(dues).isoformat() if dues else "",
                *([csv_cell(", ".join(account_label(a, names) for a in img.accounts))] if multi else []),
            ]
        )


#: summary.csv's running-view columns, after the older ones (whose order never changes); empty
#: cells where the policy has no running view. docs/runtime.md describes each.
RUNTIME_COLUMNS = (
    "clusters",
    "services",
    "running_tasks",
    "running_digests",
    "tag_digest",
    "drift",
    "redeploy_needed",
    "first_seen_running",
    "last_seen_running",
    "in_use_count",
    "last_in_use_at",
    "coverage_at_risk",
)


def _runtime_cells(img: ImageResult) -> list[str | int]:
    rt = img.runtime
    if rt is None:
        return [""] * len(RUNTIME_COLUMNS)
    return [
        csv_cell(" ".join(rt.clusters)),
        csv_cell(" ".join(rt.services)),
        rt.running_tasks,
        csv_cell(" ".join(rt.running_digests)),
        csv_cell(rt.tag_digest or ""),
        "yes" if rt.drift else "no",
        "yes" if img.redeploy_needed else "no",
        _iso(rt.first_seen_running) or "",
        _iso(rt.last_seen_running) or "",
        "" if rt.in_use_count is None else rt.in_use_count,
        _iso(rt.last_in_use_at) or "",
        "yes" if rt.coverage_at_risk else "no",
    ]


# What a spreadsheet evaluates when it leads a cell (OWASP CSV injection), with the full-width forms
# some spreadsheets normalise to them.
_FORMULA_TRIGGERS = frozenset("=+-@\uff1d\uff0b\uff0d\uff20")


def _ignorable(ch: str) -> bool:
    """Whitespace and control/format characters: spreadsheets skip them before a formula."""
    return ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp")


# Line breaks other than CR and LF that line-based readers (Python's str.splitlines, some
# importers) split on: inside a cell they would start a "new line" whose first character escapes
# the check below. They mean nothing in a summary cell, so they become spaces (the per-image JSON
# keeps the exact text). CR and LF stay: every cell is quoted.
UNSAFE_LINE_BREAKS = str.maketrans(dict.fromkeys("\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029", " "))


def csv_cell(text: str) -> str:
    """A cell of outside data made inert for spreadsheets: a leading `'` before a formula trigger.

    OWASP: a cell whose first character after leading whitespace and control characters is one of
    `= + - @` (or which starts with TAB or CR) is prefixed with a single quote; the text is kept,
    except that line breaks other than CR and LF become spaces (UNSAFE_LINE_BREAKS).
    """
    text = text.translate(UNSAFE_LINE_BREAKS)
    if text[:1] in ("\t", "\r"):
        return "'" + text
    for ch in text:
        if not _ignorable(ch):
            return "'" + text if ch in _FORMULA_TRIGGERS else text
    return text


@functools.cache
def _environment() -> jinja2.Environment:
    """The packaged templates (autoescaping on: the data is outside data)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("ecs_scan_operator", "report"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default=True),
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the render instead of printing ""
        keep_trailing_newline=True,
    )


def _template(name: str = "index.html.j2") -> jinja2.Template:
    return _environment().get_template(name)


@functools.cache
def _script() -> tuple[str, str]:
    """index.html's sorting and filtering script, and its CSP hash (the only script a page may run)."""
    loader = _environment().loader
    assert loader is not None
    text = loader.get_source(_environment(), "report.js")[0]
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return text, f"'sha256-{digest}'"


# A per-image report or page, relative to the run folder, as `image_key` builds it: segments of its
# safe characters that never start with a dot (so no `..`, no `%2e%2e`, no backslash, no scheme).
_OWN_REPORT = re.compile(r"images(?:/[A-Za-z0-9_=+~-][A-Za-z0-9._=+~-]*)+\.(?:json|html)")


def _href(link: str | None) -> str | None:
    """A link the page may hold: an http(s) URL (`safe_url`), or one of the run's own image reports."""
    if link is None:
        return None
    if safe_url(link) or _OWN_REPORT.fullmatch(link):
        return link
    return None


def _index_row(
    img: ImageResult, href: str | None, page: str | None, names: Mapping[str, str] | None = None
) -> dict[str, Any]:
    counts = img.counts()
    signals = image_signals(img)
    priority = image_priority(img)
    steps = image_plan(img).steps if img.affected else ()
    accounts = image_accounts(img)
    return {
        "href": _href(page) or _href(href),
        "json": _href(href) if page and _href(page) else None,
        "raw": img.ref.raw,
        "label": label(img),
        "digest": img.digest[:19] if img.digest else "",
        "status": img.status.value,
        "priority": priority or ("unknown" if img.affected else "-"),
        "priority_rank": priority_rank(priority) if img.affected else 99,
        "counts": [
            (_SEVERITY_CLASS.get(s.value, "n") if counts[s.value] else "n", counts[s.value])
            for s in SEVERITY_ORDER
        ],
        "signals": [
            (key, count_text(signals[key]) if img.affected else "-", signals[key] or 0)
            for key in ("kev", "exploit", "fix", "overdue")
        ],
        "redeploy": redeploy_text(img),
        "accounts": " ".join(accounts),  # bare IDs: what the account filter matches
        "account_labels": ", ".join(account_label(a, names or {}) for a in accounts),
        "next_step": steps[0].text if steps else "",
        "suppressed": len(img.suppressed),
        "families": ", ".join(img.families),
        "reason": img.reason,
    }


def render_html(
    images: Sequence[ImageResult],
    result: RunResult,
    links: dict[str, str],
    expired: Sequence[Suppression],
    account_names: Mapping[str, str] | None = None,
    *,
    pages: dict[str, str] | None = None,
) -> str:
    """index.html: a self-contained table, most urgent first, sortable and filterable with inline JS.

    `links` and `pages` map an image's raw reference to its JSON report and its page (relative).
    Without JavaScript the table stays in its static order (priority, then severity) unfiltered.
    """
    return _template().render(**_index_context(images, result, links, expired, account_names, pages or {}))


def render_html_bytes(
    images: Sequence[ImageResult],
    result: RunResult,
    links: dict[str, str],
    expired: Sequence[Suppression],
    account_names: Mapping[str, str] | None = None,
    *,
    pages: dict[str, str] | None = None,
) -> bytes:
    """`render_html(...).encode()`, built without the whole page as text or every row at once.

    On a large fleet the page is megabytes: `render` holds each of its hundreds of thousands of
    small pieces, then the text, then its bytes; here each row is made as the template reaches it
    and the pieces are encoded a batch at a time into the one buffer that is returned.
    """
    ctx = _index_context(images, result, links, expired, account_names, pages or {}, lazy_rows=True)
    return encode_stream(_template().generate(**ctx))


def encode_stream(pieces: Iterable[str], batch: int = 4096) -> bytes:
    """The UTF-8 bytes of `"".join(pieces)`, holding at most `batch` pieces as text at a time."""
    out = io.BytesIO()
    held: list[str] = []
    for piece in pieces:
        held.append(piece)
        if len(held) >= batch:
            out.write("".join(held).encode())
            held.clear()
    out.write("".join(held).encode())
    return out.getvalue()  # the buffer itself (trimmed), not a copy


def _index_context(
    images: Sequence[ImageResult],
    result: RunResult,
    links: Mapping[str, str],
    expired: Sequence[Suppression],
    account_names: Mapping[str, str] | None,
    pages: Mapping[str, str],
    *,
    lazy_rows: bool = False,
) -> dict[str, Any]:
    ordered = sorted(images, key=index_order)
    rows: Iterable[dict[str, Any]] = (
        _index_row(img, links.get(img.ref.raw), pages.get(img.ref.raw), account_names) for img in ordered
    )
    if not lazy_rows:
        rows = list(rows)
    script, script_hash = _script()
    return {
        "policy": result.policy,
        "run_id": result.run_id,
        "started": result.started.isoformat(),
        "outcome": result.outcome.value,
        "dry_run": result.dry_run,
        "images_total": result.images_total,
        "images_by_status": list(result.images_by_status.items()),
        "findings_by_severity": list(result.findings_by_severity.items()),
        "expired": [
            {"id": s.vulnerability_id, "expires": s.expires.isoformat(), "reason": s.reason} for s in expired
        ],
        "severities": [s.value.title() for s in SEVERITY_ORDER],
        "accounts": sorted({a for img in images for a in image_accounts(img)}),
        # The template walks the rows once (no `loop`, no length), so a generator serves as well.
        "rows": rows,
        "script": script,  # our packaged file, not data: the template marks it |safe
        "csp": f"default-src 'none'; style-src 'unsafe-inline'; script-src {script_hash}; "
        "base-uri 'none'; form-action 'none'",
    }


_SEVERITY_CLASS = {"CRITICAL": "n crit", "HIGH": "n high"}


def render_image_page(img: ImageResult, run_id: str, policy: PolicyRef, *, depth: int) -> str:
    """An affected image's page for people: findings with their signals, runtime context, the plan.

    `depth` is how many folders below the run folder the page is, for its relative links back.
    """
    up = "../" * depth
    findings = sorted(img.findings, key=finding_order)
    return _template("image.html.j2").render(
        policy=policy.key,
        run_id=run_id,
        label=label(img),
        raw=img.ref.raw,
        digest=img.digest or img.ref.digest or "",
        status=img.status.value,
        scan_type=img.scan_type or "unknown",
        scanned_at=day(img.scanned_at) or "unknown",
        priority=image_priority(img) or "unknown",
        accounts=", ".join(image_accounts(img)) or "unknown",
        redeploy=redeploy_text(img),
        redeploy_needed=img.redeploy_needed,
        uses=[
            {
                "family": u.family,
                "revision": u.revision,
                "container": u.container,
                "region": u.region,
                "account": u.account,
                "service": u.service,
                "tasks": u.tasks,
            }
            for u in sorted(img.uses)
        ],
        runtime=runtime_view(img),
        plan=plan_view(image_plan(img)),
        findings=[finding_row(f) for f in findings],
        suppressed=[dict(finding_row(f), why=why) for f, why in img.suppressed],
        index_href=f"{up}index.html",
        json_href=image_report_key("x", img).rsplit("/", 1)[-1],
        csp="default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
    )


def render_images(
    folder: str,
    policy: PolicyRef,
    images: Sequence[ImageResult],
    run_id: str,
    new_ids: dict[str, list[str]],
    account_names: Mapping[str, str] | None = None,
) -> Iterator[ReportObject]:
    """Per affected image its JSON object, then its page; rendered as asked for (memory stays flat)."""
    for img in images:
        if img.affected:
            doc = image_document(img, run_id, policy, new_ids.get(img.ref.display, []), account_names)
            key = image_report_key(folder, img)
            yield ReportObject(key, json.dumps(doc, indent=2).encode(), "application/json")
            depth = key[len(folder) + 1 :].count("/")
            yield ReportObject(
                image_page_key(folder, img),
                render_image_page(img, run_id, policy, depth=depth).encode(),
                "text/html; charset=utf-8",
            )


def render_index_json(
    folder: str,
    policy: PolicyRef,
    images: Sequence[ImageResult],
    result: RunResult,
    new_ids: dict[str, list[str]],
    expired: Sequence[Suppression],
    *,
    written: Collection[str],
    objects: Sequence[str],
    account_names: Mapping[str, str] | None = None,
) -> bytes:
    """index.json, the run folder's commit record (docs/run-protocol.md).

    Written last: it carries the final outcome, lists the run-level `objects` stored before it
    (relative names), and links an image's report only when that object (`written`) is stored.
    """
    head = {
        "runId": result.run_id,
        "policy": policy.key,
        "result": result.to_dict(),
        "objects": list(objects),
        "expiredSuppressions": [
            {"vulnerabilityId": s.vulnerability_id, "expires": s.expires.isoformat(), "reason": s.reason}
            for s in expired
        ],
    }
    # Compact: index.json is for programs (index.html and summary.csv are for people). Each image is
    # serialised on its own and written, encoded, to the one buffer returned ("images" is the last
    # member): a large fleet's per-image dicts, and the text of the whole, never exist at once; the
    # bytes are those of one json.dumps of the whole.
    compact = (",", ":")
    out = io.BytesIO()
    out.write(json.dumps(head, separators=compact)[:-1].encode())
    out.write(b',"images":[')
    for i, img in enumerate(images):
        row = dict(
            _image_summary(img, new_ids.get(img.ref.display, []), account_names),
            report=_relative(folder, img, written),
            page=_relative_page(folder, img, written),
            priority=image_priority(img) or None,
        )
        out.write((b"," if i else b"") + json.dumps(row, separators=compact).encode())
    out.write(b"]}")
    return out.getvalue()  # the buffer itself (trimmed), not a copy


def _relative(folder: str, img: ImageResult, written: Collection[str]) -> str | None:
    key = image_report_key(folder, img)
    return key[len(folder) + 1 :] if img.affected and key in written else None


def _relative_page(folder: str, img: ImageResult, written: Collection[str]) -> str | None:
    key = image_page_key(folder, img)
    return key[len(folder) + 1 :] if img.affected and key in written else None


def render_log(lines: Sequence[dict[str, Any]]) -> bytes:
    """run.log.jsonl: one JSON object per line."""
    return "".join(json.dumps(line, sort_keys=True, default=str) + "\n" for line in lines).encode()
