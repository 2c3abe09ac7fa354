"""Alerts data: rules, alert states and their history, silences, channels, and the notification outbox.

Every notification is an outbox row (Notification + its NotificationItems) written in the same
transaction as the alert state change that caused it; the delivery task claims rows atomically and
logs every attempt as a DeliveryAttempt.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from core.conninfo import mask_webhook_url
from core.crypto import encrypted_url_property


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class AlertRule(models.Model):
    class Kind(models.TextChoices):
        THRESHOLD_ABOVE = "threshold_above", "Threshold: above"
        THRESHOLD_BELOW = "threshold_below", "Threshold: below"
        RATE_OF_CHANGE = "rate_of_change", "Rate of change (per second) above"
        ABSENCE = "absence", "Absence of data"
        FORECAST = "forecast", "Forecast: reaches the limit within N days"
        TARGET_DOWN = "target_down", "Event: target down"
        TUNER_FAILURE = "tuner_failure", "Event: tuner failure"
        SCALING_FAILURE = "scaling_failure", "Event: scaling failure"
        PLAN_REGRESSION = "plan_regression", "Event: plan regression"
        # One per alertname received through the Alertmanager API (alerts.services.external); its
        # metric is the alertname. Prometheus evaluates these; Perfpilot routes and delivers them.
        EXTERNAL = "external", "External: sent by Prometheus (Alertmanager API)"
        # Like a Prometheus alerting rule: every element of the expression's result is one alert.
        PROMQL = "promql", "PromQL expression"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    # Which series: a metric name, optionally one target and label values that must match exactly.
    metric = models.CharField(max_length=200, blank=True)
    target = models.ForeignKey(
        "monitoring.Target", on_delete=models.CASCADE, null=True, blank=True, related_name="alert_rules"
    )
    series_labels = models.JSONField(default=dict, blank=True, help_text="Series label values that must match.")
    # PromQL rules: the expression, read from Perfpilot's own store (no source) or an external server.
    # PROTECT: deleting a source in use would silently change what its rules read.
    expression = models.TextField(blank=True)
    promql_source = models.ForeignKey(
        "monitoring.PromQLSource", on_delete=models.PROTECT, null=True, blank=True, related_name="alert_rules"
    )
    # Thresholds; for forecasts they are days until the limit (fires when the forecast is sooner).
    warning_threshold = models.FloatField(null=True, blank=True)
    critical_threshold = models.FloatField(null=True, blank=True)
    forecast_limit = models.FloatField(null=True, blank=True, help_text="The limit a forecast rule watches.")
    # Absence and event kinds have no thresholds: they fire at this severity.
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.CRITICAL)
    # Absence: no sample for this long; rate: change over it; events: resolve after it without a
    # new event; thresholds: samples older than this are ignored.
    window_seconds = models.PositiveIntegerField(default=300)
    for_seconds = models.PositiveIntegerField(default=0)
    keep_firing_for_seconds = models.PositiveIntegerField(default=0)
    eval_interval_seconds = models.PositiveIntegerField(default=30)
    labels = models.JSONField(default=dict, blank=True)
    summary = models.CharField(max_length=300, blank=True)
    runbook = models.TextField(blank=True)
    builtin_key = models.CharField(max_length=50, null=True, blank=True, unique=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_event(self) -> bool:
        return self.kind in EVENT_KINDS

    @property
    def has_thresholds(self) -> bool:
        return self.kind in THRESHOLD_KINDS


EVENT_KINDS = {
    AlertRule.Kind.TARGET_DOWN,
    AlertRule.Kind.TUNER_FAILURE,
    AlertRule.Kind.SCALING_FAILURE,
    AlertRule.Kind.PLAN_REGRESSION,
}
THRESHOLD_KINDS = {
    AlertRule.Kind.THRESHOLD_ABOVE,
    AlertRule.Kind.THRESHOLD_BELOW,
    AlertRule.Kind.RATE_OF_CHANGE,
    AlertRule.Kind.FORECAST,
}
# Kinds whose thresholds are optional: without them every element of the result breaches at `severity`.
OPTIONAL_THRESHOLD_KINDS = {AlertRule.Kind.PROMQL}


class AlertState(models.TextChoices):
    INACTIVE = "inactive", "Inactive"
    PENDING = "pending", "Pending"
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


class Alert(models.Model):
    """One alert instance of a rule, identified by the fingerprint of its labels."""

    class Source(models.TextChoices):
        PERFPILOT = "perfpilot", "Perfpilot"
        EXTERNAL = "external", "External (Alertmanager API)"

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.PERFPILOT)
    fingerprint = models.CharField(max_length=64, unique=True)
    labels = models.JSONField(default=dict)
    target = models.ForeignKey(
        "monitoring.Target", on_delete=models.SET_NULL, null=True, blank=True, related_name="alerts"
    )
    metric = models.CharField(max_length=200, blank=True)
    state = models.CharField(max_length=10, choices=AlertState.choices, default=AlertState.INACTIVE)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.WARNING)
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    message = models.TextField(blank=True)
    since = models.DateTimeField(null=True, blank=True, help_text="When the current episode began (pending).")
    fired_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    last_breach_at = models.DateTimeField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    acked_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    acked_at = models.DateTimeField(null=True, blank=True)
    ack_comment = models.TextField(blank=True)
    # What an external alert came with (the Alertmanager API's postableAlert); empty for Perfpilot's own.
    annotations = models.JSONField(default=dict, blank=True)
    generator_url = models.TextField(blank=True)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True, help_text="An external alert resolves at this time.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["state", "severity"]), models.Index(fields=["target", "metric"])]

    def __str__(self) -> str:
        return f"{self.rule.name} {self.labels_text}"

    @property
    def labels_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items()) if k != "alertname" and v != "")

    @property
    def title(self) -> str:
        return self.annotations.get("summary") or self.rule.summary or self.rule.name

    @property
    def runbook_url(self) -> str:
        """An external alert's runbook_url annotation, if it is an http(s) link (pages link it)."""
        url = self.annotations.get("runbook_url", "")
        return url if url.startswith(("http://", "https://")) else ""

    @property
    def other_annotations(self) -> list[tuple[str, str]]:
        shown = ("summary", "description", "runbook_url")
        return sorted((k, v) for k, v in self.annotations.items() if k not in shown)


class AlertStateChange(models.Model):
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="changes")
    from_state = models.CharField(max_length=10, choices=AlertState.choices)
    to_state = models.CharField(max_length=10, choices=AlertState.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-id"]
        # monitoring/collectors/perfpilot.py counts the alerts that started firing since its last collection.
        indexes = [models.Index(fields=["at"], name="alerts_change_at")]

    def __str__(self) -> str:
        return f"{self.from_state} → {self.to_state}"


class Silence(models.Model):
    """Mutes notifications of matching alerts between starts_at and ends_at; states stay visible."""

    matchers = models.JSONField(default=list, help_text='[{"name": "target", "op": "=", "value": "db1"}]')
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    comment = models.TextField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_by_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-ends_at"]

    def __str__(self) -> str:
        return ", ".join(f"{m['name']}{m['op']}{m['value']}" for m in self.matchers)


class Channel(models.Model):
    class Kind(models.TextChoices):
        SLACK = "slack", "Slack incoming webhook"
        WEBHOOK = "webhook", "Generic JSON webhook"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    # The URL is a secret (anyone with it can post): stored encrypted, shown back only as its host.
    url_encrypted = models.TextField()
    url_display = models.CharField(max_length=300, blank=True)
    severities = models.JSONField(default=list, help_text="Severities routed here; empty = all.")
    matchers = models.JSONField(default=list, blank=True, help_text="Label matchers that alerts must match.")
    group_by = models.JSONField(default=list, blank=True, help_text="Labels that group alerts into one message.")
    group_wait_seconds = models.PositiveIntegerField(default=30)
    group_interval_seconds = models.PositiveIntegerField(default=300)
    repeat_interval_seconds = models.PositiveIntegerField(default=4 * 3600)
    send_resolved = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    url = encrypted_url_property(mask_webhook_url, doc="The webhook URL, decrypted. Never render it.")


class Notification(models.Model):
    """The outbox: one message to send to one channel, holding one group of alerts."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        MUTED = "muted", "Not sent: muted or emptied before sending"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="notifications")
    group_key = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    is_test = models.BooleanField(default=False)
    is_repeat = models.BooleanField(default=False)
    due_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "due_at"]),
            models.Index(fields=["channel", "group_key", "status"]),
        ]

    def __str__(self) -> str:
        return f"notification {self.id} to {self.channel_id}"


class NotificationItem(models.Model):
    """One alert inside a notification, as it was when the change happened."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="items")
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="notification_items")
    state = models.CharField(max_length=10, choices=AlertState.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["notification", "alert"], name="one_item_per_alert")]

    def __str__(self) -> str:
        return f"{self.alert_id} {self.state}"


class DeliveryAttempt(models.Model):
    class Outcome(models.TextChoices):
        SENT = "sent", "Sent"
        RETRY = "retry", "Will retry"
        FAILED = "failed", "Failed"
        DISABLED = "disabled", "Channel disabled"

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="delivery_attempts")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="delivery_attempts")
    attempt = models.PositiveIntegerField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    response_head = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    latency_ms = models.FloatField()
    retry_in_seconds = models.FloatField(null=True, blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-id"]
        # The second: monitoring/collectors/perfpilot.py counts the attempts since its last collection.
        indexes = [models.Index(fields=["channel", "-at"]), models.Index(fields=["at"], name="alerts_attempt_at")]

    def __str__(self) -> str:
        return f"attempt {self.attempt} of {self.notification_id}: {self.outcome}"
