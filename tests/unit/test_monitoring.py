"""The chart's alert rules and Grafana dashboard (monitoring.prometheusRule / monitoring.dashboard).

- Every metric a rule or a dashboard query reads is one the operator exports (its registry in
  controller/metrics.py, with the suffixes Prometheus adds: _total, _bucket, _sum, _count).
- The dashboard JSON: unique panel ids and refIds, the grid, the data source and the variables.
- promtool (built by `make promtool`): `check rules` on the rendered PrometheusRule, `test rules`
  with tests/monitoring/alerts_test.yaml, and each dashboard query parsed as a recording rule.

Tests that run helm or promtool are marked `tools`; they skip when the binary is missing, except
in CI, where that is a failure.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from ecs_scan_operator.controller.metrics import Metrics
from tests.unit.test_helm_chart import CHART, ROOT, _need, by_kind, render

PROMTOOL = ROOT / ".tools" / "bin" / "promtool"
DASHBOARD = CHART / "files" / "grafana-dashboard.json"
ALERT_TESTS = ROOT / "tests" / "monitoring" / "alerts_test.yaml"
MONITORING = (
    "--set",
    "monitoring.prometheusRule.enabled=true",
    "--set",
    "monitoring.dashboard.enabled=true",
)
#: Grafana's built-in interval variables, replaced by a duration so the PromQL parses.
GRAFANA_DURATIONS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1d"}
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


# --------------------------------------------------------------------------- metric names


def exported_names() -> set[str]:
    """The series names the operator's registry exposes (Prometheus's suffixes included)."""
    names = {"up"}  # Prometheus's own series of each scrape target
    for family in Metrics(CollectorRegistry()).registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        else:
            names.add(family.name)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (strings, matchers, ranges, groupings dropped)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)\b(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


def dashboard() -> dict[str, Any]:
    """The dashboard JSON shipped in the chart."""
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_queries(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and of every query variable's label_values()."""
    out = [(f"panel {p['id']} {t['refId']}", t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", var["query"]["query"])
            assert inner, f"variable {var['name']}: not a label_values() query"
            out.append((f"variable {var['name']}", inner.group(1)))
    return out


def promql(expr: str) -> str:
    """A Grafana query as plain PromQL (its interval variables become durations)."""
    for var, duration in GRAFANA_DURATIONS.items():
        expr = expr.replace(var, duration)
    return expr


def test_metric_names_are_found_in_every_position() -> None:
    """The extractor sees selectors anywhere and nothing else (functions, labels, keywords)."""
    expr = (
        'time() - max by (namespace, policy) (ecsscan_a{job="x",policy=~"$p"}) > 2 * '
        "max without (instance) (ecsscan_b) unless on (policy) ecsscan_c offset 5m or "
        "histogram_quantile(0.9, sum by (le) (rate(ecsscan_d_bucket[5m]))) == bool 1 and "
        'absent(up{x="by (y)"})'
    )
    assert metric_names(expr) == {"ecsscan_a", "ecsscan_b", "ecsscan_c", "ecsscan_d_bucket", "up"}


def test_the_registry_is_read_with_suffixes() -> None:
    names = exported_names()
    assert {
        "ecsscan_runs_total",
        "ecsscan_run_duration_seconds_bucket",
        "ecsscan_findings",
        "ecsscan_schedule_interval_seconds",
        "ecsscan_last_run_outcome",
    } <= names
    assert "ecsscan_runs" not in names  # a counter's series always has _total


def test_dashboard_queries_use_only_exported_metrics() -> None:
    """Every dashboard query selects at least one metric, and only exported ones."""
    exported = exported_names()
    for where, expr in dashboard_queries(dashboard()):
        used = metric_names(promql(expr))
        assert used, f"{where}: no metric in {expr!r}"
        assert used <= exported, f"{where}: not exported: {sorted(used - exported)}"


def test_a_misspelled_metric_is_caught() -> None:
    """The check is not a no-op: a typo in a name is reported."""
    assert metric_names("sum(ecsscan_runz_total)") - exported_names() == {"ecsscan_runz_total"}


def test_dashboard_is_well_formed() -> None:
    """Unique ids, a 24-column grid, every target on the data source variable, every variable defined."""
    dash = dashboard()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert dash["uid"] and dash["title"]
    defined = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "job", "namespace", "policy"} <= defined
    for panel in dash["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {v.strip("$") for v in GRAFANA_DURATIONS}
            assert used <= defined, f"{panel['title']}: undefined variables {used - defined}"


# --------------------------------------------------------------------------- rendered chart


def _rendered() -> tuple[dict[str, Any], dict[str, Any]]:
    objs = render(None, *MONITORING)
    (rule,) = by_kind(objs, "PrometheusRule")
    (configmap,) = [o for o in by_kind(objs, "ConfigMap") if "dashboard" in o["metadata"]["name"]]
    return rule, configmap


def _rule_exprs(rule: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r.get("alert") or r["record"], r["expr"]) for g in rule["spec"]["groups"] for r in g["rules"]]


@pytest.mark.tools
def test_monitoring_is_opt_in() -> None:
    """By default neither a PrometheusRule nor a dashboard is rendered."""
    objs = render()
    assert not by_kind(objs, "PrometheusRule")
    assert not [o for o in by_kind(objs, "ConfigMap") if "dashboard" in o["metadata"]["name"]]


@pytest.mark.tools
def test_rules_use_only_exported_metrics_and_this_release_job() -> None:
    """Each alert reads exported metrics, scoped to this release's metrics Service (its job)."""
    rule, _ = _rendered()
    exported = exported_names()
    alerts = _rule_exprs(rule)
    assert {a for a, _ in alerts} == {
        "EcsScanOperatorDown",
        "EcsScanNoSuccessfulRun",
        "EcsScanRunFailed",
        "EcsScanRunPartiallyFailed",
        "EcsScanJiraErrors",
        "EcsScanFindingsOverdue",
    }
    for alert, expr in alerts:
        used = metric_names(expr)
        assert used and used <= exported, f"{alert}: not exported: {sorted(used - exported)}"
        selectors = re.findall(r"\b(?:ecsscan_\w+|up)\{([^}]*)\}", expr)
        assert selectors and all('job="scan-ecs-scan-operator-metrics"' in s for s in selectors), alert


@pytest.mark.tools
def test_dashboard_configmap_has_the_sidecar_label() -> None:
    """The ConfigMap carries grafana_dashboard: "1" and the dashboard JSON unchanged."""
    _, configmap = _rendered()
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    (body,) = configmap["data"].values()
    assert json.loads(body) == dashboard()


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    _need(PROMTOOL, "run `make promtool`")
    return subprocess.run(
        [str(PROMTOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _write_rules(path: Path, groups: list[dict[str, Any]]) -> None:
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))


@pytest.mark.tools
def test_promtool_checks_and_unit_tests_the_alerts(tmp_path: Path) -> None:
    """`promtool check rules` passes and the alert unit tests (alerts_test.yaml) hold."""
    rule, _ = _rendered()
    _write_rules(tmp_path / "rules.yaml", rule["spec"]["groups"])
    shutil.copy(ALERT_TESTS, tmp_path / "alerts_test.yaml")
    check = _promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    test = _promtool("test", "rules", "alerts_test.yaml", cwd=tmp_path)
    assert test.returncode == 0, test.stdout + test.stderr
    assert "SUCCESS" in test.stdout + test.stderr


@pytest.mark.tools
def test_promtool_is_not_a_no_op(tmp_path: Path) -> None:
    """A broken expression fails `check rules`; a wrong expectation fails `test rules`."""
    rule, _ = _rendered()
    groups = rule["spec"]["groups"]
    broken = json.loads(json.dumps(groups))
    broken[0]["rules"][1]["expr"] = "time() - max by (namespace (ecsscan_last_success_timestamp_seconds)"
    _write_rules(tmp_path / "rules.yaml", broken)
    assert _promtool("check", "rules", "rules.yaml", cwd=tmp_path).returncode != 0
    _write_rules(tmp_path / "rules.yaml", groups)
    wrong = ALERT_TESTS.read_text().replace("severity: critical", "severity: page", 1)
    (tmp_path / "alerts_test.yaml").write_text(wrong)
    assert _promtool("test", "rules", "alerts_test.yaml", cwd=tmp_path).returncode != 0


@pytest.mark.tools
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Each dashboard query, as a recording rule, passes `promtool check rules`; a bad one fails."""
    _, configmap = _rendered()
    (body,) = configmap["data"].values()
    queries = dashboard_queries(json.loads(body))
    rules = [{"record": f"dashboard:query_{i}", "expr": promql(q)} for i, (_, q) in enumerate(queries)]
    _write_rules(tmp_path / "dashboard.yaml", [{"name": "dashboard", "rules": rules}])
    check = _promtool("check", "rules", "dashboard.yaml", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{len(rules)} rules found" in check.stdout
    rules.append({"record": "dashboard:bad", "expr": "sum(rate(ecsscan_runs_total[$__rate_interval]))"})
    _write_rules(tmp_path / "dashboard.yaml", [{"name": "dashboard", "rules": rules}])
    assert _promtool("check", "rules", "dashboard.yaml", cwd=tmp_path).returncode != 0
