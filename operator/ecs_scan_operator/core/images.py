"""Parse the image references users put in ECS task definitions. Pure."""

from __future__ import annotations

import re

from ecs_scan_operator.core.model import ImageRef, RefKind

# Distribution reference grammar, simplified to what registries accept.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_ECR_HOST_RE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)\.amazonaws\.com(?:\.cn)?$"
)
_DOCKER_HUB_HOSTS = {"docker.io", "index.docker.io", "registry-1.docker.io"}
_MAX_REF = 1024


def _malformed(raw: str, reason: str) -> ImageRef:
    return ImageRef(raw=raw, kind=RefKind.MALFORMED, reason=reason)


def parse_image(raw: str) -> ImageRef:  # noqa: PLR0911, PLR0912 - one branch per reference form (ECR, pull-through, public ECR, Docker Hub, other)
    """Parse one reference; never raises: a bad one comes back as kind MALFORMED with the reason."""
    text = raw.strip()
    if not text:
        return _malformed(raw, "empty image reference")
    if len(text) > _MAX_REF:
        return _malformed(raw, f"image reference longer than {_MAX_REF} characters")
    if any(c.isspace() or ord(c) < 32 for c in text):
        return _malformed(raw, "image reference contains whitespace or control characters")

    name, digest = text, None
    if "@" in text:
        name, digest = text.rsplit("@", 1)
        if not _DIGEST_RE.fullmatch(digest):
            return _malformed(raw, f"digest {digest!r} is not sha256:<64 hex>")

    host = ""
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host, name = first, rest

    tag = None
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            return _malformed(raw, f"tag {tag!r} is not a valid tag")
    if not _REPO_RE.fullmatch(name):
        return _malformed(
            raw, f"repository {name!r} is not a valid repository name (lowercase, digits, ._-/)"
        )
    if tag is None and digest is None:
        tag = "latest"

    ecr = _ECR_HOST_RE.fullmatch(host) if host else None
    if ecr:
        return ImageRef(
            raw=raw,
            kind=RefKind.ECR,
            registry=host,
            repository=name,
            tag=tag,
            digest=digest,
            account=ecr["account"],
            region=ecr["region"],
        )
    if host == "public.ecr.aws":
        return ImageRef(
            raw=raw,
            kind=RefKind.ECR_PUBLIC,
            registry=host,
            repository=name,
            tag=tag,
            digest=digest,
            reason="public ECR images are not scanned by Amazon Inspector; use an ECR pull-through cache",
        )
    if not host or host in _DOCKER_HUB_HOSTS:
        repo = name if "/" in name else f"library/{name}"
        return ImageRef(
            raw=raw,
            kind=RefKind.DOCKER_HUB,
            registry="docker.io",
            repository=repo,
            tag=tag,
            digest=digest,
            reason="Docker Hub images are not scanned by Amazon Inspector; use an ECR pull-through cache",
        )
    return ImageRef(
        raw=raw,
        kind=RefKind.OTHER,
        registry=host,
        repository=name,
        tag=tag,
        digest=digest,
        reason=f"registry {host} is not a private ECR registry, so Amazon Inspector does not scan it",
    )


def running_image(image: str, digest: str | None) -> str:
    """The reference a running container runs: its image pinned to the digest ECS recorded for it.

    A reference already pinned by digest stays as written (ECS ran exactly that); without a digest
    (the container is still PENDING) the image is returned unchanged. A reference without a tag
    names `:latest` (what ECS pulled), so the running row keeps its tag and drift can be seen.
    """
    if not digest or "@" in image:
        return image
    ref = parse_image(image)
    if ref.kind is not RefKind.MALFORMED and ref.tag and not image.endswith(f":{ref.tag}"):
        image = f"{image}:{ref.tag}"
    return f"{image}@{digest}"
