"""The Kubernetes operator (kopf): one controller for ScanPolicy.

`run()` is what `ecs-scan-operator operator` calls: it reads the settings (ECS_SCAN_*), sets up
logging and runs kopf with the handlers of `controller.handlers` until SIGTERM/SIGINT. For
`kopf run`, use the entry module: `kopf run -m ecs_scan_operator.controller.main -A --standalone`.
"""

from __future__ import annotations

import logging
import sys

# Libraries that log every request at INFO; the operator and the CLI quiet them to WARNING.
NOISY_LOGGERS = ("kubernetes.client.rest", "urllib3", "botocore", "boto3", "aiohttp.access", "werkzeug")


def configure_logging(log_format: str, level: str) -> None:
    """kopf's log format (text or JSON, with the policy as a field), at the given level."""
    import kopf

    # The operator owns the process's logging: one handler, kopf's (a caller's basicConfig would
    # print every line twice).
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    kopf.configure(
        verbose=level == "DEBUG",
        log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL,
        log_refkey="k8s" if log_format == "json" else None,
    )
    logging.getLogger().setLevel(level)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)


def run() -> int:
    """Run the operator until stopped; returns the process exit code."""
    from ecs_scan_operator.settings import SettingsError, get_settings

    try:
        settings = get_settings()
    except SettingsError as exc:
        for err in exc.errors:
            print(f"invalid setting {err.path}: {err.reason}", file=sys.stderr)
        return 2
    if settings.tracemalloc_file:
        from ecs_scan_operator.controller import memprof

        memprof.start(settings.tracemalloc_file)
    configure_logging(settings.log_format, settings.log_level)

    import kopf

    from ecs_scan_operator.controller import handlers  # registers the handlers

    kopf.run(
        registry=kopf.get_default_registry(),
        clusterwide=settings.clusterwide,
        namespaces=settings.watch_namespaces,
        # One replica acts at a time through the leader Lease, not kopf's peering objects.
        standalone=True,
        liveness_endpoint=settings.liveness_endpoint,
    )
    del handlers
    return 0
