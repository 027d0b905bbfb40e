# syntax=docker/dockerfile:1
# The ecs-scan-operator image: the package's wheel plus the exact runtime pins of
# requirements/runtime.lock, on a slim Python base, running as a non-root user.
#
#   docker build -t ecs-scan-operator:0.1.0 .
#
# Pin the base by digest in your own build (`--build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:...`);
# the tag is pinned here because no registry is reachable from where this file is tested.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Dependencies first: this layer is reused until runtime.lock changes.
# Binary wheels only, so the builder needs no compiler and the result matches the lock.
COPY requirements/runtime.lock requirements/runtime.lock
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --only-binary=:all: --require-virtualenv \
        -r requirements/runtime.lock

# Then the package itself, built into a wheel and installed without touching the pins. The build
# backend is pinned too (the versions of requirements/dev.lock), so the wheel is reproducible.
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip install --no-cache-dir 'build==1.6.1' 'setuptools==80.9.0' 'wheel==0.45.1' \
 && python -m build --wheel --no-isolation --outdir /dist . \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps /dist/*.whl \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/python -m pip uninstall --yes pip

# ---------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ecs-scan-operator" \
      org.opencontainers.image.description="Scans the container images of Amazon ECS task definitions with Amazon Inspector / ECR, reports to S3 and keeps Jira tickets in sync." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# 65532 is the conventional "nonroot" uid (distroless); the chart runs with the same ids.
RUN groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin nonroot

COPY --from=builder /opt/venv /opt/venv

# HOME and the temp dir point at /tmp: the chart mounts an emptyDir there and keeps the
# root filesystem read-only. Bytecode was compiled at install time, so nothing is written.
# MALLOC_ARENA_MAX=2: each run's threads (botocore's connection pools, parallel AWS calls) would
# otherwise get glibc arenas of their own that keep freed memory; the chart's memory limit is
# sized with it (bench/RESULTS.md, "Operator at scale").
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    HOME=/tmp \
    TMPDIR=/tmp

USER 65532:65532
WORKDIR /tmp

# 8080: kopf's liveness endpoint (/healthz); 9090: Prometheus metrics.
EXPOSE 8080 9090

ENTRYPOINT ["ecs-scan-operator", "operator"]
