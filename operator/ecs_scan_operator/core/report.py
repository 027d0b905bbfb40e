"""The report tree of one run, rendered to bytes. Pure: the sinks only store what this returns.

Layout (DESIGN.md): `<run folder>/images/<repository>/<tag-or-digest>.json` for each affected
image, and `index.json`, `summary.csv`, `index.html`, `run.log.jsonl` in the run folder.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ecs_scan_operator.core.keys import image_key
from ecs_scan_operator.core.model import SEVERITY_ORDER, ImageResult, RefKind
from ecs_scan_operator.core.policy import PolicyRef, Suppression
from ecs_scan_operator.core.result import RunResult


@dataclass(frozen=True)
class ReportObject:
    """One object to store."""

    key: str
    body: bytes
    content_type: str


def image_report_key(folder: str, img: ImageResult) -> str:
    """Where an affected image's JSON goes."""
    name = img.ref.tag or img.digest or img.ref.digest or "untagged"
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
    """summary.csv: one row per image."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "image",
            "status",
            "reason",
            "digest",
            *[s.value.lower() for s in SEVERITY_ORDER],
            "suppressed",
            "families",
        ]
    )
    for img in images:
        counts = img.counts()
        w.writerow(
            [
                _csv_safe(img.ref.raw),
                img.status.value,
                _csv_safe(img.reason),
                img.digest or "",
                *[counts[s.value] for s in SEVERITY_ORDER],
                len(img.suppressed),
                _csv_safe(" ".join(img.families)),
            ]
        )
    return buf.getvalue()


def _csv_safe(text: str) -> str:
    # A cell starting with = + - @ is a formula in spreadsheets; these strings come from task definitions.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


_HTML_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1b1f24}}
h1{{font-size:1.3rem}} .muted{{color:#57606a}}
table{{border-collapse:collapse;width:100%;margin-top:1rem}}
th,td{{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top}}
th{{cursor:pointer;background:#f6f8fa;position:sticky;top:0;user-select:none}}
th[aria-sort=ascending]::after{{content:" \\25B2"}} th[aria-sort=descending]::after{{content:" \\25BC"}}
td.n{{text-align:right;font-variant-numeric:tabular-nums}}
.s-scanned{{color:#1a7f37}} .s-failed{{color:#cf222e}} .s-not_found,.s-not_scanned{{color:#9a6700}}
.s-unscannable{{color:#57606a}} .crit{{color:#cf222e;font-weight:600}} .high{{color:#bc4c00;font-weight:600}}
.cards span{{display:inline-block;margin-right:1.2rem}}
</style></head><body>
"""

_HTML_SCRIPT = """<script>
// Sort by clicking a header; numbers sort numerically. No external resources: opens offline.
document.querySelectorAll("th").forEach(function (th, col) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0];
    var asc = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].textContent, y = b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
</script></body></html>
"""


def render_html(
    images: Sequence[ImageResult], result: RunResult, links: dict[str, str], expired: Sequence[Suppression]
) -> str:
    """index.html: a self-contained sortable table (no external resources)."""
    e = html.escape
    out = [_HTML_HEAD.format(title=e(f"ecs-scan report {result.policy} {result.run_id}"))]
    out.append(f"<h1>Image scan report: {e(result.policy)}</h1>")
    out.append(
        f'<p class="muted">Run {e(result.run_id)} &middot; started {e(result.started.isoformat())} &middot; '
        f"result {e(result.outcome.value)}{' &middot; dry run' if result.dry_run else ''}</p>"
    )
    cards = " ".join(f"<span>{e(k)}: <b>{v}</b></span>" for k, v in result.images_by_status.items())
    sev = " ".join(f"<span>{e(k)}: <b>{v}</b></span>" for k, v in result.findings_by_severity.items())
    out.append(
        f'<div class="cards"><p>Images ({result.images_total}): {cards}</p><p>Findings: {sev}</p></div>'
    )
    if expired:
        items = "".join(
            f"<li>{e(s.vulnerability_id)} (expired {e(s.expires.isoformat())}): {e(s.reason)}</li>"
            for s in expired
        )
        out.append(f"<p>Expired suppressions, no longer applied:</p><ul>{items}</ul>")
    heads = [
        "Image",
        "Status",
        *[s.value.title() for s in SEVERITY_ORDER],
        "Suppressed",
        "Families",
        "Reason",
    ]
    out.append("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr></thead><tbody>")
    for img in images:
        counts = img.counts()
        link = links.get(img.ref.raw)
        label = e(img.ref.display if img.ref.kind is RefKind.ECR else img.ref.raw)
        name = (
            f'<a href="{e(link)}" title="{e(img.ref.raw)}">{label}</a>'
            if link
            else f'<span title="{e(img.ref.raw)}">{label}</span>'
        )
        if img.digest:
            name += f'<br><small class="muted">{e(img.digest[:19])}…</small>'
        cells = [f"<td>{name}</td>", f'<td class="s-{img.status.value}">{e(img.status.value)}</td>']
        for s in SEVERITY_ORDER:
            cls = {"CRITICAL": "n crit", "HIGH": "n high"}.get(s.value, "n")
            n = counts[s.value]
            cells.append(f'<td class="{cls if n else "n"}">{n}</td>')
        cells.append(f'<td class="n">{len(img.suppressed)}</td>')
        cells.append(f"<td>{e(', '.join(img.families))}</td>")
        cells.append(f"<td>{e(img.reason)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    out.append(_HTML_SCRIPT)
    return "".join(out)


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
