"""Names vulture reports as unused that are used: by a framework, by name at runtime, or by tests on purpose.

`make lint` runs vulture over the package and this file (settings in pyproject.toml [tool.vulture]).
When vulture flags a new name: delete the code if it is dead; otherwise add the name here, in the
section of its kind, with the reason. Kopf handlers (@kopf.*) and pydantic validators
(@field_validator, @model_validator) and `model_config` are skipped in pyproject.toml already.
Not part of the package (only operator/ is packaged). Regenerate candidates with
`.venv/bin/vulture --make-whitelist`.
"""

# ruff: noqa
# mypy: ignore-errors

# Frameworks set or read these attributes by name.
ConnectionCls  # urllib3 pool classes (adapters/jira_transport.py): the connection class of a pool
_.pool_classes_by_scheme  # urllib3 PoolManager (adapters/jira_transport.py): pools by scheme
_.disabled  # kopf settings.peering (controller/handlers.py)
_.finalizer  # kopf settings.persistence (controller/handlers.py)
_.progress_storage  # kopf settings.persistence
_.diffbase_storage  # kopf settings.persistence
_.server_timeout  # kopf settings.watching
_.client_timeout  # kopf settings.watching
_.ignore_aliases  # PyYAML Dumper override (crd.py): no anchors in the generated CRD
_.trust_env  # requests.Session (adapters/notify_http.py): no proxies or .netrc from the environment

# Read by name at runtime.
routing  # core/tickets/decide.py Facts: rules match fields with getattr (fields(Facts))
labels_complete  # core/tickets/decide.py Facts: likewise

# Enum members that arrive as values from outside (parsed with Enum(value), never named in code).
IMAGE  # core/policy.py grouping "image"
OVERDUE  # core/policy.py notify event "overdue" (accepted in specs; its source comes with prioritisation)
REDEPLOY_NEEDED  # core/policy.py notify event "redeployNeeded" (likewise, with the running view)
DOES_NOT_EXIST  # core/grants.py label selector operator "DoesNotExist"
NEW  # core/tickets/model.py StatusCategory: Jira's statusCategory.key
INDETERMINATE  # core/tickets/model.py StatusCategory

# Protocol methods: the signature a callable must have, called through the protocol.
_.__call__  # controller/runs.py RunFn

# Data that is part of a value's identity or explains a decision; tests check it on purpose.
task_definition_arn  # core/model.py ImageUse: in its equality and order (two accounts, same family:revision)
by_allow_list  # core/destinations.py Allowed: which rule let the host through (tests tell the two apart)

# Used by tests and docs as the contract they check.
render_table  # core/tickets/decide.py: prints the decision tables docs/architecture.md shows (a test compares)
FILE_NAME  # crd.py: the generated CRD's file name (the "generated equals committed" test)
MAX_STATUS_BYTES  # core/status.py: the status budget tests hold every status to
status_bytes  # core/status.py: the size of a status as the API server stores it (tests)
find_condition  # core/status.py: reads one condition back (controller and status tests)
render_html  # core/report.py: index.html as text, the reference render_html_bytes (the pipeline's) is tested against
render_csv  # core/report.py: summary.csv as text, the reference render_csv_bytes (the pipeline's) is tested against
running_task_definitions  # adapters/ecs.py: RunningGroups over one list of tasks (the unit tables)

# Keys of the wire TypedDicts (core/status.py status, controller/leader.py Lease): the API's field names,
# written as dict literals and read by the API server, never as attributes.
acquireTime  # a key of a wire TypedDict
activeRun  # a key of a wire TypedDict
affectedImages  # a key of a wire TypedDict
apiVersion  # a key of a wire TypedDict
completionTime  # a key of a wire TypedDict
dryRun  # a key of a wire TypedDict
errorCauses  # a key of a wire TypedDict
redeployNeeded  # a key of a wire TypedDict (lastRun, the running view)
coverageAtRisk  # a key of a wire TypedDict (lastRun, the running view)
imagesByAccount  # a key of a wire TypedDict (lastRun, multi-account)
affectedByAccount  # a key of a wire TypedDict (lastRun, multi-account)
errorsTotal  # a key of a wire TypedDict
expiredSuppressions  # a key of a wire TypedDict
findingsBySeverity  # a key of a wire TypedDict
findingsByPriority  # a key of a wire TypedDict
overdueFindings  # a key of a wire TypedDict
kevFindings  # a key of a wire TypedDict
holderIdentity  # a key of a wire TypedDict
imagesByStatus  # a key of a wire TypedDict
lastRun  # a key of a wire TypedDict
lastRunNow  # a key of a wire TypedDict
lastScheduleTime  # a key of a wire TypedDict
lastSuccessfulTime  # a key of a wire TypedDict
lastTransitionTime  # a key of a wire TypedDict
leaseDurationSeconds  # a key of a wire TypedDict
leaseTransitions  # a key of a wire TypedDict
nextScheduleTime  # a key of a wire TypedDict
observedGeneration  # a key of a wire TypedDict
renewTime  # a key of a wire TypedDict
reportUri  # a key of a wire TypedDict
resourceVersion  # a key of a wire TypedDict
runNow  # a key of a wire TypedDict
scheduledTime  # a key of a wire TypedDict
stageFailures  # a key of a wire TypedDict
startTime  # a key of a wire TypedDict
suppressedFindings  # a key of a wire TypedDict

# The data contract of issues #12 (runtime) and #13 (prioritise), added to core/model.py before the
# stages that fill and read them are merged. TEMPORARY: remove each line as its reader lands.
_.running_tasks
_.first_seen_running
_.last_seen_running
_.in_use_count
_.last_in_use_at
_.coverage_at_risk
_.drift
_.runtime
_.redeploy_needed
# core/runtime.py: which findings a redeploy would remove, per finding; for the ticket lifecycle (w/rtlife, #12 item 6)
fixed_by_redeploy
