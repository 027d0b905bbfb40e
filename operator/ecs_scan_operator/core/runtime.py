"""The running view of an image and when only a redeploy fixes it (issue #12). Pure.

Rules:
- An image row of the running view is one digest that tasks run (`ImageRef` pinned to it): its
  RuntimeContext lists the clusters and services of those tasks, their count, the digest, and the
  digest its tag points at now (`tag_digest`, ECR DescribeImages). `drift`: the tag moved on.
- A declared row (the task definition's `repo:tag`, resolved to the tag's current digest) takes in
  the running rows of the same tag that run that very digest; its `running_digests` are every
  digest running under the tag, so "nothing runs the tag's current digest" shows as drift too.
- `redeploy_needed` (`decide_redeploy`): tasks still run this digest, the tag points at another
  digest whose findings are known (a complete scan), this digest has actionable findings and the
  tag's digest has none of them. Unknown findings of the tag's digest never say "redeploy".
- First and last seen running are kept per digest in the state object (`track_running`), bounded
  by age (RUNNING_KEEP after it was last seen) and count (RUNNING_LIMIT, most recently seen kept).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from ecs_scan_operator.core.model import ImageRef, ImageResult, ImageUse, RuntimeContext

RUNNING_KEEP = timedelta(days=30)  # a digest not seen running for this long is forgotten
RUNNING_LIMIT = 20_000  # digests remembered at most (about 150 bytes each in the state)

Seen = tuple[datetime, datetime]  # first, last seen running


def running_key(ref: ImageRef, digest: str) -> str:
    """The state's key of one running digest: `registry/repository@digest` (the host names the account)."""
    return f"{ref.registry}/{ref.repository}@{digest}"


def track_running(previous: Mapping[str, Seen], running_now: Iterable[str], now: datetime) -> dict[str, Seen]:
    """First/last seen running per digest after this run: new ones start now, old ones age out."""
    out: dict[str, Seen] = {k: v for k, v in previous.items() if v[1] >= now - RUNNING_KEEP}
    for key in running_now:
        first = previous.get(key, (now, now))[0]
        out[key] = (min(first, now), now)
    if len(out) > RUNNING_LIMIT:
        kept = sorted(out.items(), key=lambda kv: (kv[1][1], kv[0]), reverse=True)[:RUNNING_LIMIT]
        out = dict(kept)
    return out


def runtime_context(
    uses: Sequence[ImageUse],
    *,
    running_digests: Collection[str],
    tag_digest: str | None,
    seen: Seen | None = None,
    in_use_count: int | None = None,
    last_in_use_at: datetime | None = None,
) -> RuntimeContext:
    """The RuntimeContext of one image row from its running uses (tasks > 0) and what else is known."""
    running = [u for u in uses if u.tasks > 0]
    return RuntimeContext(
        clusters=tuple(sorted({u.cluster for u in running if u.cluster})),
        services=tuple(sorted({u.service for u in running if u.service})),
        running_tasks=sum(u.tasks for u in running),
        running_digests=tuple(sorted(set(running_digests))),
        tag_digest=tag_digest,
        first_seen_running=seen[0] if seen else None,
        last_seen_running=seen[1] if seen else None,
        in_use_count=in_use_count,
        last_in_use_at=last_in_use_at,
    )


def decide_redeploy(
    *,
    digest: str | None,
    running_tasks: int,
    findings: Collection[str],
    tag_digest: str | None,
    tag_findings: Collection[str] | None,
) -> bool:
    """True when the tag already points at a digest without this digest's findings while tasks still run it.

    `findings` are the actionable finding ids of the running digest; `tag_findings` those of the
    tag's current digest, None when they are not known (not scanned, not covered, failed).
    """
    if running_tasks <= 0 or not findings or not digest:
        return False
    if not tag_digest or tag_digest == digest or tag_findings is None:
        return False
    return not set(findings) & set(tag_findings)


def fixed_by_redeploy(findings: Collection[str], tag_findings: Collection[str] | None) -> set[str]:
    """The finding ids a redeploy to the tag's digest would remove (none if its findings are unknown)."""
    if tag_findings is None:
        return set()
    return set(findings) - set(tag_findings)


def is_running_row(img: ImageResult) -> bool:
    """A row of the running view: a digest that tasks run (its uses carry a task count)."""
    return img.ref.digest is not None and any(u.tasks > 0 for u in img.uses)


def tag_key(ref: ImageRef) -> tuple[str, str, str]:
    """(registry, repository, tag): a declared row and the running rows of the same tag share it."""
    return (ref.registry, ref.repository, ref.tag or "")


def fold_running_rows(images: list[ImageResult]) -> list[ImageResult]:
    """Running rows that run the digest their declared row resolved to become part of that row.

    A declared row (`repo:tag`, no task count) keeps its place; a running row of the same tag and
    the same digest adds its uses (and task-definition tags) to it and goes. Running rows of another
    digest (the tag moved on: drift) stay rows of their own, as do those with no declared row.
    """
    declared = {
        tag_key(i.ref): i
        for i in images
        if i.ref.digest is None and i.digest and not any(u.tasks for u in i.uses)
    }
    out = []
    for img in images:
        target = declared.get(tag_key(img.ref)) if is_running_row(img) and img.ref.tag else None
        if target is not None and target.digest == img.ref.digest:
            target.uses.extend(img.uses)
            target.td_tags.update(img.td_tags)
            continue
        out.append(img)
    return out
