"""Entry module for `kopf run`: importing it registers the ScanPolicy handlers.

    kopf run -m ecs_scan_operator.controller.main --all-namespaces --standalone \
        --liveness=http://0.0.0.0:8080/healthz

Namespaces, peering and the liveness endpoint then come from kopf's command line; everything
else from the ECS_SCAN_* settings. `ecs-scan-operator operator` needs no flags (all settings).
"""

from ecs_scan_operator.controller import handlers

__all__ = ["handlers"]
