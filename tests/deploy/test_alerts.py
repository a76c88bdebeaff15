"""deploy/prometheus/alerts.yml, the alerting rules platform teams start from: each rule is
complete (a name, an expression, a severity, a summary), and every metric it names is
one a service exports, in the form Prometheus scrapes it (a counter's `_total`, a
histogram's `_bucket`), so a renamed metric cannot leave an alert that never fires."""

import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

import procure_notifier.sender
import procure_runtime.metrics  # noqa: F401

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def exported() -> set[str]:
    """The sample names the services' metrics are scraped as."""
    names = set()
    for family in REGISTRY.collect():
        for suffix in SUFFIXES.get(family.type, ()):
            names.add(family.name + suffix)
    return {n for n in names if n.startswith("procure_")}


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def test_every_rule_is_an_alert_with_a_severity_and_a_summary() -> None:
    found = rules()
    assert len(found) >= 5
    names = [rule["alert"] for rule in found]
    assert len(set(names)) == len(names), names
    for rule in found:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule
        assert rule["annotations"]["summary"].strip(), rule
        assert str(rule["expr"]).strip(), rule
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule


def test_every_metric_a_rule_names_is_exported() -> None:
    known = exported()
    assert "procure_consumer_last_poll_timestamp_seconds" in known
    assert "procure_events_dead_lettered_total" in known
    named = {
        metric for rule in rules() for metric in re.findall(r"\bprocure_[a-z_]+", str(rule["expr"]))
    }
    assert named, "no rule names a metric"
    assert named <= known, sorted(named - known)


def test_a_rule_reads_only_labels_its_metric_carries() -> None:
    """`$labels.x` in an annotation and `by (x)` in an expression name labels of the
    metric (`service`, `topic`, `reason`; `le` of a histogram's buckets), or Prometheus
    renders them empty and sums what should stay apart."""
    from procure_runtime import metrics

    objects = [getattr(metrics, n) for n in dir(metrics) if n.isupper()]
    objects.append(procure_notifier.sender.MAIL_DELAY)
    # prometheus_client keeps a metric's name and label names in these attributes only.
    labels = {m._name: set(m._labelnames) for m in objects}
    for rule in rules():
        expr = str(rule["expr"])
        [metric] = set(re.findall(r"\bprocure_[a-z_]+", expr))
        have = labels[re.sub(r"_(total|bucket)$", "", metric)]
        if metric.endswith("_bucket"):
            have = have | {"le"}
        used = set(re.findall(r"\$labels\.([a-z_]+)", str(rule["annotations"])))
        for group in re.findall(r"by \(([^)]*)\)", expr):
            used |= {g.strip() for g in group.split(",")}
        assert used <= have, (rule["alert"], sorted(used - have))
