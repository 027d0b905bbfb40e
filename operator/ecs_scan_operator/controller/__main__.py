"""`python -m ecs_scan_operator.controller`: run the operator (the same as `ecs-scan-operator operator`)."""

from ecs_scan_operator.controller import run

raise SystemExit(run())
