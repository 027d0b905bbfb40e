"""The report tree of one run, rendered to bytes. Pure: the sinks only store what this returns.

Layout (DESIGN.md): `<run folder>/images/<repository>/<tag-or-digest>.json` for each affected
image, and `index.json`, `summary.csv`, `index.html`, `run.log.jsonl` in the run folder.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
import unicodedata
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2

from ecs_scan_operator.core.keys import image_key
from ecs_scan_operator.core.links import safe_url
from ecs_scan_operator.core.model import SEVERITY_ORDER, ImageResult, RefKind
from ecs_scan_operator.core.policy import PolicyRef, Suppression
from ecs_scan_operator.core.priority import counts_by_priority
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


def _image_summary(img: ImageResult, new_ids: Sequence[str]) -> dict[str, Any]:
    return {
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
    img: ImageResult, run_id: str, policy: PolicyRef, new_ids: Sequence[str]
) -> dict[str, Any]:
    """The per-image JSON: summary plus every actionable and suppressed finding."""
    doc = _image_summary(img, new_ids)
    doc.update(
        {
            # Which container of which revision: in the per-image object only (a shared sidecar is
            # used by thousands of revisions; the index keeps the family names).
            "uses": [
                {"family": u.family, "revision": u.revision, "container": u.container, "region": u.region}
                | (
                    {"service": u.service, "launchType": u.launch_type, "runningTasks": u.tasks}
                    if u.tasks
                    else {}
                )
                for u in sorted(img.uses)
            ],
            "runId": run_id,
            "policy": policy.key,
            "findings": [dict(f.to_dict(), new=f.vulnerability_id in new_ids) for f in img.findings],
            "suppressedFindings": [dict(f.to_dict(), suppressionReason=why) for f, why in img.suppressed],
        }
    )
    return doc


def render_csv(images: Sequence[ImageResult]) -> str:
    """summary.csv: one row per image; every cell quoted and neutralised (see `csv_cell`)."""
    buf = io.StringIO()
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
            # issue #13, after the older columns so readers by position keep working
            *[p.lower() for p in PRIORITIES],
            "kev",
            "exploit_available",
            "overdue",
            "next_due",
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
                *[by_priority[p] for p in PRIORITIES],
                sum(1 for f in img.findings if f.signals.kev is True),
                sum(1 for f in img.findings if f.signals.exploit_available is True),
                sum(1 for f in img.findings if f.assessment.overdue),
                min(dues).isoformat() if dues else "",
            ]
        )
    return buf.getvalue()


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
def _template() -> jinja2.Template:
    """The packaged index.html template, loaded once (autoescaping on: the data is outside data)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ecs_scan_operator", "report"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default=True),
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the render instead of printing ""
        keep_trailing_newline=True,
    )
    return env.get_template("index.html.j2")


# A per-image report, relative to the run folder, as `image_key` builds it: segments of its safe
# characters that never start with a dot (so no `..`, no `%2e%2e`, no backslash, no scheme).
_OWN_REPORT = re.compile(r"images(?:/[A-Za-z0-9_=+~-][A-Za-z0-9._=+~-]*)+\.json")


def _href(link: str | None) -> str | None:
    """A link the page may hold: an http(s) URL (`safe_url`), or one of the run's own image reports."""
    if link is None:
        return None
    if safe_url(link) or _OWN_REPORT.fullmatch(link):
        return link
    return None


def render_html(
    images: Sequence[ImageResult], result: RunResult, links: dict[str, str], expired: Sequence[Suppression]
) -> str:
    """index.html: a self-contained sortable table (no external resources), from the packaged template."""
    rows = []
    for img in images:
        counts = img.counts()
        rows.append(
            {
                "href": _href(links.get(img.ref.raw)),
                "raw": img.ref.raw,
                "label": img.ref.display if img.ref.kind is RefKind.ECR else img.ref.raw,
                "digest": img.digest[:19] if img.digest else "",
                "status": img.status.value,
                "counts": [
                    (_SEVERITY_CLASS.get(s.value, "n") if counts[s.value] else "n", counts[s.value])
                    for s in SEVERITY_ORDER
                ],
                "suppressed": len(img.suppressed),
                "families": ", ".join(img.families),
                "reason": img.reason,
            }
        )
    return _template().render(
        policy=result.policy,
        run_id=result.run_id,
        started=result.started.isoformat(),
        outcome=result.outcome.value,
        dry_run=result.dry_run,
        images_total=result.images_total,
        images_by_status=list(result.images_by_status.items()),
        findings_by_severity=list(result.findings_by_severity.items()),
        expired=[
            {"id": s.vulnerability_id, "expires": s.expires.isoformat(), "reason": s.reason} for s in expired
        ],
        heads=[
            "Image",
            "Status",
            *[s.value.title() for s in SEVERITY_ORDER],
            "Suppressed",
            "Families",
            "Reason",
        ],
        rows=rows,
    )


_SEVERITY_CLASS = {"CRITICAL": "n crit", "HIGH": "n high"}


def render_images(
    folder: str, policy: PolicyRef, images: Sequence[ImageResult], run_id: str, new_ids: dict[str, list[str]]
) -> Iterator[ReportObject]:
    """One JSON object per affected image, rendered as it is asked for (memory stays flat)."""
    for img in images:
        if img.affected:
            doc = image_document(img, run_id, policy, new_ids.get(img.ref.display, []))
            yield ReportObject(
                image_report_key(folder, img), json.dumps(doc, indent=2).encode(), "application/json"
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
) -> bytes:
    """index.json, the run folder's commit record (docs/run-protocol.md).

    Written last: it carries the final outcome, lists the run-level `objects` stored before it
    (relative names), and links an image's report only when that object (`written`) is stored.
    """
    index = {
        "runId": result.run_id,
        "policy": policy.key,
        "result": result.to_dict(),
        "objects": list(objects),
        "expiredSuppressions": [
            {"vulnerabilityId": s.vulnerability_id, "expires": s.expires.isoformat(), "reason": s.reason}
            for s in expired
        ],
        "images": [
            dict(
                _image_summary(img, new_ids.get(img.ref.display, [])),
                report=_relative(folder, img, written),
            )
            for img in images
        ],
    }
    # Compact: index.json is for programs (index.html and summary.csv are for people).
    return json.dumps(index, separators=(",", ":")).encode()


def _relative(folder: str, img: ImageResult, written: Collection[str]) -> str | None:
    key = image_report_key(folder, img)
    return key[len(folder) + 1 :] if img.affected and key in written else None


def render_log(lines: Sequence[dict[str, Any]]) -> bytes:
    """run.log.jsonl: one JSON object per line."""
    return "".join(json.dumps(line, sort_keys=True, default=str) + "\n" for line in lines).encode()
