"""The control plane's own events as series: counters that count each event once (pruned rows and rows
still being written included), gauges of the current state, and their exposition on /metrics."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.models import Alert, AlertRule
from monitoring.collectors import collector_for
from monitoring.collectors.perfpilot import COUNT_LAG
from monitoring.models import Series, Target
from monitoring.services.collection import collect_target
from monitoring.services.targets import targets_register_builtin
from optimizer.models import OptimizationRun, Recommendation
from scaling.models import ScaledService, ScalingDecision, ScalingRule
from scaling.services.evaluation import decisions_prune
from tests.monitoring.conftest import measurements_by_metric, stored_samples

pytestmark = pytest.mark.usefixtures("clean_samples")


def _own() -> Target:
    return Target.objects.create(name="perfpilot", kind=Target.Kind.PERFPILOT)


def _values(result, metric: str) -> dict[tuple, float]:
    return {tuple(sorted(m.labels.items())): m.value for m in measurements_by_metric(result).get(metric, [])}


def _decision(service: ScaledService, *, ago: timedelta, result: str = "scaled", desired: int = 3) -> ScalingDecision:
    return ScalingDecision.objects.create(
        service=service, created_at=timezone.now() - ago, result=result, current_replicas=2, desired_replicas=desired
    )


def _time_passes(monkeypatch, by: timedelta) -> None:
    later = timezone.now() + by
    monkeypatch.setattr(timezone, "now", lambda: later)


def test_each_event_is_counted_once_and_a_pruned_one_stays_counted(monkeypatch):
    service = ScaledService.objects.create(name="web", executor_kind="webhook", observed_replicas=2)
    for _ in range(3):
        _decision(service, ago=timedelta(days=40))
    collector = collector_for(_own())
    first = _values(collector.collect(), "perfpilot_scaling_decisions_total")
    assert first == {(("result", "scaled"), ("service", "web")): 3.0}

    _decision(service, ago=timedelta(0), result="failed")
    assert decisions_prune(days=30) == 3  # the old decisions leave the database, not the count
    _time_passes(monkeypatch, COUNT_LAG)
    second = _values(collector.collect(), "perfpilot_scaling_decisions_total")
    assert second == {(("result", "scaled"), ("service", "web")): 3.0, (("result", "failed"), ("service", "web")): 1.0}
    assert _values(collector.collect(), "perfpilot_scaling_decisions_total") == second  # nothing new, nothing added


def test_an_event_younger_than_the_lag_is_counted_once_the_lag_has_passed(monkeypatch):
    service = ScaledService.objects.create(name="web", executor_kind="webhook")
    _decision(service, ago=COUNT_LAG / 3)  # its writer may still be committing others stamped before it
    collector = collector_for(_own())
    assert _values(collector.collect(), "perfpilot_scaling_decisions_total") == {}
    _time_passes(monkeypatch, COUNT_LAG)
    assert _values(collector.collect(), "perfpilot_scaling_decisions_total") == {
        (("result", "scaled"), ("service", "web")): 1.0
    }


def test_ended_runs_are_counted_by_tuner_action_target_and_status_and_live_ones_wait():
    target = Target.objects.create(name="shop-db", kind=Target.Kind.POSTGRES)
    finished = timezone.now() - timedelta(minutes=5)
    for status in ("succeeded", "succeeded", "failed", "running"):
        OptimizationRun.objects.create(
            tuner="vacuum",
            target=target,
            target_name="shop-db",
            trigger="schedule",
            status=status,
            finished_at=finished,
        )
    counted = _values(collector_for(_own()).collect(), "perfpilot_optimizer_runs_total")
    assert {dict(labels)["status"]: n for labels, n in counted.items()} == {"succeeded": 2.0, "failed": 1.0}
    assert {(dict(labels)["tuner"], dict(labels)["action"], dict(labels)["target"]) for labels in counted} == {
        ("vacuum", "run", "shop-db")
    }


def test_counters_are_stored_as_cumulative_counters_for_rate_and_increase(monkeypatch):
    service = ScaledService.objects.create(name="web", executor_kind="webhook")
    _decision(service, ago=timedelta(minutes=5))
    own = _own()
    assert collect_target(target=own).ok
    _decision(service, ago=timedelta(0))
    _time_passes(monkeypatch, COUNT_LAG)
    assert collect_target(target=own).ok
    series = Series.objects.get(target=own, metric="perfpilot_scaling_decisions_total")
    assert series.kind == Series.Kind.COUNTER
    assert [value for _, _, value in stored_samples(own.id, "perfpilot_scaling_decisions_total")] == [1.0, 2.0]


def test_recommendations_show_every_status_so_a_count_that_drops_reads_zero():
    target = Target.objects.create(name="shop-db", kind=Target.Kind.POSTGRES)
    for status in ("open", "open", "applied"):
        Recommendation.objects.create(
            target=target, tuner="indexes", fingerprint=f"f{Recommendation.objects.count()}", category="missing_index",
            title="Create index", status=status,
        )  # fmt: skip
    values = _values(collector_for(_own()).collect(), "perfpilot_recommendations")
    labels = (("category", "missing_index"), ("target", "shop-db"))
    assert {dict(k)["status"]: v for k, v in values.items()} == {
        "open": 2.0, "applying": 0.0, "applied": 1.0, "dismissed": 0.0, "obsolete": 0.0
    }  # fmt: skip
    assert all(k[:1] == labels[:1] for k in values)


def test_alerts_firing_by_rule_and_severity_with_zeros():
    rule = AlertRule.objects.create(
        name="Disk full", kind=AlertRule.Kind.THRESHOLD_ABOVE, metric="host_disk_used_percent"
    )
    Alert.objects.create(rule=rule, fingerprint="a", labels={}, state="firing", severity="critical")
    Alert.objects.create(rule=rule, fingerprint="b", labels={}, state="resolved", severity="warning")
    values = _values(collector_for(_own()).collect(), "perfpilot_alerts_firing")
    assert values == {
        (("rule", "Disk full"), ("severity", "info")): 0.0,
        (("rule", "Disk full"), ("severity", "warning")): 0.0,
        (("rule", "Disk full"), ("severity", "critical")): 1.0,
    }


def test_each_service_shows_its_replicas_and_its_rules_metric_against_their_target():
    service = ScaledService.objects.create(name="web", executor_kind="webhook", min_replicas=2, max_replicas=8)
    ScalingRule.objects.create(service=service, name="cpu", source="cpu", target_value=70)
    decision = _decision(service, ago=timedelta(minutes=1), desired=5)
    decision.observed_replicas = 3
    decision.inputs = {"rules": {"cpu": {"value": 91.5}}}
    decision.save()
    _decision(service, ago=timedelta(minutes=9), desired=9)  # an older decision: not the current one
    result = collector_for(_own()).collect()
    web = (("service", "web"),)
    assert _values(result, "perfpilot_scaling_current_replicas") == {web: 3.0}
    assert _values(result, "perfpilot_scaling_desired_replicas") == {web: 5.0}
    assert _values(result, "perfpilot_scaling_min_replicas") == {web: 2.0}
    assert _values(result, "perfpilot_scaling_max_replicas") == {web: 8.0}
    assert _values(result, "perfpilot_scaling_rule_value") == {(("rule", "cpu"), ("service", "web")): 91.5}
    assert _values(result, "perfpilot_scaling_rule_target") == {(("rule", "cpu"), ("service", "web")): 70.0}


def test_metrics_exposes_the_events_under_their_own_names_and_target_label(anonymous_client, viewer_auth):
    target = Target.objects.create(name="shop-db", kind=Target.Kind.POSTGRES)
    OptimizationRun.objects.create(
        tuner="vacuum", target=target, target_name="shop-db", trigger="schedule", status="succeeded",
        finished_at=timezone.now() - timedelta(minutes=5),
    )  # fmt: skip
    assert collect_target(target=_own()).ok
    text = anonymous_client.get("/metrics", **viewer_auth).content.decode()
    line = 'perfpilot_optimizer_runs_total{action="run",status="succeeded",target="shop-db",tuner="vacuum"} 1.0'
    assert line in text
    assert "perfpilot_perfpilot_" not in text


def test_the_builtin_target_of_its_own_events_has_a_page_and_charts_on_the_overview(viewer_client):
    targets_register_builtin()
    own = Target.objects.get(builtin=True, kind=Target.Kind.PERFPILOT)
    rule = AlertRule.objects.create(
        name="Disk full", kind=AlertRule.Kind.THRESHOLD_ABOVE, metric="host_disk_used_percent"
    )
    Alert.objects.create(rule=rule, fingerprint="a", labels={}, state="firing", severity="critical")
    assert collect_target(target=own).ok
    page = viewer_client.get(f"/monitoring/targets/{own.id}/")
    assert page.status_code == 200 and "Alerts firing" in page.content.decode()
    overview = viewer_client.get("/").content.decode()
    assert 'data-target="perfpilot"' in overview and "Alerts firing" in overview
