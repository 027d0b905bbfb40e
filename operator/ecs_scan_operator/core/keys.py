"""Object keys of the report tree: built from sanitized parts, bounded in length. Pure."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]")
MAX_PART = 120


def safe_part(text: str, *, max_len: int = MAX_PART) -> str:
    """One path segment: no slashes, no control characters, never '.' or '..', bounded length."""
    cleaned = _UNSAFE.sub("_", text).strip(".")
    if not cleaned:
        cleaned = "_"
    if len(cleaned) > max_len:
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        cleaned = f"{cleaned[: max_len - 13]}~{digest}"
    return cleaned


def safe_path(text: str) -> str:
    """A repository path (may hold '/'): each segment made safe."""
    return "/".join(safe_part(p) for p in text.split("/") if p) or "_"


def run_folder(prefix: str, started: datetime, namespace: str, policy: str, run_id: str) -> str:
    """`<prefix>/<YYYY-MM-DD>/<namespace>/<policy>/<runId>`."""
    return "/".join(
        [
            prefix.strip("/"),
            started.strftime("%Y-%m-%d"),
            safe_part(namespace),
            safe_part(policy),
            safe_part(run_id),
        ]
    )


def image_key(folder: str, repository: str, tag_or_digest: str) -> str:
    """`<run folder>/images/<repository>/<tag-or-digest>.json`."""
    return f"{folder}/images/{safe_path(repository)}/{safe_part(tag_or_digest)}.json"


def state_key(prefix: str, namespace: str, policy: str) -> str:
    """`<prefix>/state/<namespace>/<policy>.json`: what the next run needs."""
    return f"{prefix.strip('/')}/state/{safe_part(namespace)}/{safe_part(policy)}.json"


def lease_key(prefix: str, namespace: str, policy: str) -> str:
    """`<prefix>/state/<namespace>/<policy>.lease`: the run lease (core/lease.py)."""
    return f"{prefix.strip('/')}/state/{safe_part(namespace)}/{safe_part(policy)}.lease"
