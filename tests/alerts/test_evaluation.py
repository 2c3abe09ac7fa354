"""Rule evaluation against real stored series: lifecycle and `for`, flapping, events, outbox rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.models import Alert, AlertRule, AlertStateChange, Notification
from alerts.services import alert_event_emit
from alerts.services.evaluation import rule_evaluate, rules_evaluate_due
from monitoring.models import Target
from tests.alerts.conftest import make_channel, make_rule, write_value

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_samples")]


def _evaluate(rule, *, after: float = 0.0):
    now = timezone.now() + timedelta(seconds=after)
    rule_evaluate(rule=AlertRule.objects.get(pk=rule.pk), now=now)
    return Alert.objects.filter(rule=rule).first()


def test_the_lifecycle_goes_pending_firing_resolved_with_the_values_in_its_history(target):
    rule = make_rule(for_seconds=60)
    make_channel("http://127.0.0.1:9/hook", group_wait_seconds=600)  # due later: the outbox row is the subject
    write_value(target, "postgres_connections_used_percent", 85.0)

    alert = _evaluate(rule)
    assert (alert.state, alert.severity, alert.value, alert.threshold) == ("pending", "warning", 85.0, 80.0)
    assert alert.labels == {"alertname": rule.name, "target": "db1", "metric": "postgres_connections_used_percent"}
    assert not Notification.objects.exists()

    alert = _evaluate(rule, after=30)
    assert alert.state == "pending"
    alert = _evaluate(rule, after=61)
    assert alert.state == "firing"
    notification = Notification.objects.get()
    assert [(i.alert_id, i.state, i.value) for i in notification.items.all()] == [(alert.id, "firing", 85.0)]

    write_value(target, "postgres_connections_used_percent", 20.0, at=timezone.now() + timedelta(seconds=62))
    alert = _evaluate(rule, after=63)
    assert alert.state == "resolved"
    history = list(AlertStateChange.objects.filter(alert=alert).order_by("at").values_list("to_state", "value"))
    assert history == [("pending", 85.0), ("firing", 85.0), ("resolved", 20.0)]
    resolved = Notification.objects.exclude(pk=notification.pk).get()
    assert resolved.group_key.endswith("|resolved") and resolved.items.get().state == "resolved"


def test_one_fingerprint_per_label_set_keeps_one_alert_across_episodes(target):
    rule = make_rule()
    write_value(target, "postgres_connections_used_percent", 99.0)
    first = _evaluate(rule)
    write_value(target, "postgres_connections_used_percent", 10.0, at=timezone.now() + timedelta(seconds=5))
    _evaluate(rule, after=6)
    write_value(target, "postgres_connections_used_percent", 99.0, at=timezone.now() + timedelta(seconds=10))
    again = _evaluate(rule, after=11)
    assert again.pk == first.pk and again.state == "firing" and again.severity == "critical"
    assert Alert.objects.count() == 1


def test_flapping_values_with_keep_firing_for_notify_once(target):
    rule = make_rule(keep_firing_for_seconds=120)
    make_channel("http://127.0.0.1:9/hook", group_wait_seconds=600)
    for step, value in enumerate([90, 10, 90, 10, 90, 10]):
        write_value(
            target, "postgres_connections_used_percent", value, at=timezone.now() + timedelta(seconds=step * 10)
        )
        alert = _evaluate(rule, after=step * 10 + 1)
        assert alert.state == "firing"
    assert Notification.objects.count() == 1
    assert AlertStateChange.objects.filter(to_state="resolved").count() == 0


def test_absence_fires_when_a_series_stops_reporting(target):
    write_value(target, "postgres_connections_used_percent", 10.0, at=timezone.now() - timedelta(seconds=600))
    rule = make_rule(
        name="No data", kind="absence", window_seconds=120, warning_threshold=None, critical_threshold=None
    )
    alert = _evaluate(rule)
    assert alert.state == "firing" and alert.severity == "critical" and alert.value is None


def test_target_down_comes_from_monitoring_target_health(target):
    rule = make_rule(name="Down", kind="target_down", metric="", warning_threshold=None, critical_threshold=None)
    assert _evaluate(rule) is None  # up (unknown) targets leave nothing behind
    Target.objects.filter(pk=target.pk).update(status="down", last_error="connection refused", consecutive_failures=3)
    alert = _evaluate(rule)
    assert (alert.state, alert.value, alert.message) == ("firing", 3.0, "connection refused")
    Target.objects.filter(pk=target.pk).update(status="up", last_error="", consecutive_failures=0)
    assert _evaluate(rule).state == "resolved"


def test_a_tuner_failure_event_fires_and_resolves_after_its_window(target):
    rule = make_rule(name="Tuner failed", kind="tuner_failure", metric="", warning_threshold=None,
                     critical_threshold=None, window_seconds=60, severity="warning")  # fmt: skip
    (alert,) = alert_event_emit(kind="tuner_failure", target=target, labels={"tuner": "vacuum"}, message="boom")
    alert.refresh_from_db()
    assert (alert.state, alert.severity, alert.labels["tuner"], alert.message) == (
        "firing",
        "warning",
        "vacuum",
        "boom",
    )
    assert _evaluate(rule, after=30).state == "firing"
    assert _evaluate(rule, after=61).state == "resolved"


def test_rate_of_change_compares_the_change_per_second(target):
    start = timezone.now() - timedelta(seconds=100)
    write_value(target, "postgres_database_size_bytes", 1000.0, at=start)
    write_value(target, "postgres_database_size_bytes", 11000.0, at=start + timedelta(seconds=100))
    rule = make_rule(name="Growing", kind="rate_of_change", metric="postgres_database_size_bytes",
                     warning_threshold=50.0, critical_threshold=500.0, window_seconds=300)  # fmt: skip
    alert = _evaluate(rule)
    assert alert.state == "firing" and alert.severity == "warning" and alert.value == pytest.approx(100.0)


def test_a_rule_that_fails_is_recorded_and_the_others_still_run(target, monkeypatch):
    good = make_rule()
    bad = make_rule(name="Broken", kind="forecast", forecast_limit=100.0, warning_threshold=7, critical_threshold=2)
    write_value(target, "postgres_connections_used_percent", 99.0)
    import monitoring.selectors.forecasts as forecasts

    def explode(**kwargs):
        raise RuntimeError("forecast store unavailable")

    monkeypatch.setattr(forecasts, "forecast_series", explode)
    summary = rules_evaluate_due()
    assert summary.errors == {"Broken": "RuntimeError: forecast store unavailable"}
    assert AlertRule.objects.get(pk=bad.pk).last_error == "RuntimeError: forecast store unavailable"
    assert Alert.objects.get(rule=good).state == "firing"


def test_a_forecast_rule_warns_when_the_limit_is_near_on_the_current_trend(target):
    from monitoring import storage

    (series_id,) = storage.series_resolve(target_id=target.id, specs=[storage.SeriesSpec("host_disk_used_percent", {})])
    now = timezone.now()
    # 10 % a week ago, +2 % a day: 24 % now, so 40 % is 8 days away.
    storage.samples_write(
        [(series_id, now - timedelta(days=7) + timedelta(minutes=m), 10.0 + 2.0 * m / 1440) for m in range(7 * 1440)]
    )
    rule = make_rule(name="Disk soon", kind="forecast", metric="host_disk_used_percent", forecast_limit=40.0,
                     warning_threshold=10.0, critical_threshold=3.0)  # fmt: skip
    alert = _evaluate(rule)
    assert (alert.state, alert.severity, alert.threshold) == ("firing", "warning", 10.0)
    assert alert.value == pytest.approx(8.0, abs=0.1)
