"""deploy/prometheus/alerts.yaml and deploy/grafana/flowguard.json name only metrics (and
labels) that flowguard defines (flowguard/metrics.py), as Prometheus exposes them: a renamed
metric fails here, not silently on a dashboard. promtool is not on these machines: the rule
file's shape is checked by hand (groups, rules with alert, expr, labels, annotations)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import Metric
from prometheus_client.metrics import MetricWrapperBase

from flowguard import metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
}
#: Labels Prometheus adds to every series it scrapes, and the histogram's bucket bound.
SCRAPE_LABELS = {"instance", "job", "le"}


def defined() -> dict[str, set[str]]:
    """Every series name flowguard exposes -> its label names."""
    names: dict[str, set[str]] = {}
    for wrapper in vars(metrics).values():
        if isinstance(wrapper, MetricWrapperBase):
            for suffix in SUFFIXES[str(wrapper._type)]:
                names[wrapper._name + suffix] = set(wrapper._labelnames)
    figures = {
        "cluster": "c", "received": 1, "published": 1, "invalid": 0, "dlq": 0,
        "dropped_by_kind": {"task": 1}, "commands": {"done": 1}, "buffered": 0,
        "capacity": 10, "celery_connected": True, "kafka_connected": True,
    }  # fmt: skip
    family: Metric
    for family in [*metrics.BridgeCollector(lambda: figures).collect(),
                   *metrics.GC_WATCH.collect()]:  # fmt: skip
        for sample in family.samples:
            names[sample.name] = set(sample.labels)
    return names


def expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every alert rule and dashboard target."""
    found = []
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            found.append((f"alert {rule['alert']}", rule["expr"]))
    dashboard = json.loads((DEPLOY / "grafana" / "flowguard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            found.append((f"panel {panel['title']!r}", target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append((f"variable {variable['name']}", variable["query"]))
    return found


def test_every_expression_names_metrics_and_labels_that_flowguard_defines() -> None:
    names, exprs = defined(), expressions()
    assert len(exprs) > 25
    for where, expr in exprs:
        used = re.findall(r"\bflowguard_[a-z0-9_]+", expr)
        assert used, f"{where}: names no flowguard metric: {expr}"
        for name in used:
            assert name in names, f"{where}: {name} is not a metric flowguard defines"
        for name, selector in re.findall(r"\b(flowguard_[a-z0-9_]+)\{([^}]*)\}", expr):
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector):
                assert label in names[name], f"{where}: {name} has no label {label}"
        for grouping in re.findall(r"\bby \(([^)]*)\)", expr):
            for label in (part.strip() for part in grouping.split(",")):
                owners = [names[name] | SCRAPE_LABELS for name in used]
                assert any(label in labels for labels in owners), f"{where}: by ({label})"


def test_the_alert_rules_have_the_shape_prometheus_loads() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in alerts} >= {
        "FlowguardBridgeSilent", "FlowguardConsumerLagGrowing", "FlowguardDLQGrowing",
        "FlowguardBreakerOpen", "FlowguardDeliveriesFailing",
    }  # fmt: skip
    for rule in alerts:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s")), rule["alert"]
        assert expr_balanced(rule["expr"]), rule["alert"]


def expr_balanced(expr: str) -> bool:
    depth = {"(": 0, "[": 0, "{": 0}
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in expr:
        if char in depth:
            depth[char] += 1
        elif char in pairs:
            depth[pairs[char]] -= 1
            if depth[pairs[char]] < 0:
                return False
    return not any(depth.values())
